"""Lab secrets: a lab moved by CCBRIDGE_LAB_DIR still gives the lab config its secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ccbridge.config import load_config
from ccbridge.lab.secrets import LAB_SECRETS, ensure_lab_secrets

REPO = Path(__file__).resolve().parents[2]


def test_a_lab_dir_elsewhere_still_gives_the_lab_config_its_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in LAB_SECRETS.values():
        # set first, so monkeypatch restores what was there (or nothing) after the test:
        # ensure_lab_secrets sets these, and a delenv of an unset one records nothing
        monkeypatch.setenv(variable, "")
        monkeypatch.delenv(variable)
    shared = tmp_path / "shared-lab"
    monkeypatch.setenv("CCBRIDGE_LAB_DIR", str(shared))
    checkout = tmp_path / "checkout" / "examples"  # a second checkout: no .lab of its own
    checkout.mkdir(parents=True)
    (checkout / "lab.yaml").write_text((REPO / "examples" / "lab.yaml").read_text())

    folder = ensure_lab_secrets()
    config = load_config(checkout / "lab.yaml")
    assert folder == shared / "secrets"
    ami = (folder / "ami").read_text().strip()
    assert config.site("dhaka").ami.secret.reveal() == ami
    assert config.bridge.api_token is not None
    assert config.bridge.api_token.reveal() == (folder / "api-token").read_text().strip()
    again = ensure_lab_secrets()  # idempotent: the same secrets, not new ones
    assert (again / "ami").read_text().strip() == ami


def test_export_puts_the_secrets_in_the_variables_unless_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CCBRIDGE_LAB_DIR", raising=False)
    ami, token = LAB_SECRETS["ami"], LAB_SECRETS["api-token"]
    monkeypatch.setenv(ami, "")
    monkeypatch.delenv(ami)
    monkeypatch.setenv(token, "already-set")
    folder = ensure_lab_secrets(tmp_path / "lab")
    assert ami not in os.environ  # without export nor CCBRIDGE_LAB_DIR: files only
    ensure_lab_secrets(tmp_path / "lab", export=True)
    assert os.environ[ami] == (folder / "ami").read_text().strip()
    assert os.environ[token] == "already-set"
