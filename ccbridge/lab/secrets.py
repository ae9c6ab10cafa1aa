"""Random per-machine secrets for the lab, kept in the git-ignored lab folder."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ccbridge.lab.sites import default_lab_dir

# Each lab secret file and the variable examples/lab.yaml reads before that file.
LAB_SECRETS = {"ami": "CCBRIDGE_AMI_SECRET", "api-token": "CCBRIDGE_API_TOKEN"}


def ensure_lab_secrets(lab_dir: Path | None = None, export: bool = False) -> Path:
    """Create .lab/secrets/{ami,api-token} once; the lab config reads them as files.

    examples/lab.yaml names the files relative to the checkout (../.lab/secrets); when
    CCBRIDGE_LAB_DIR puts the lab elsewhere (a second checkout sharing one lab), or with
    ``export`` (a copy of the config in another folder, as the lab tests make), the
    secrets are also put in the variables the config reads first, unless already set."""
    d = (lab_dir or default_lab_dir()) / "secrets"
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    for name, variable in LAB_SECRETS.items():
        p = d / name
        if not p.exists() or not p.read_text().strip():
            p.write_text(secrets.token_hex(16) + "\n")
            p.chmod(0o600)
        if (export or os.environ.get("CCBRIDGE_LAB_DIR")) and not os.environ.get(variable):
            os.environ[variable] = p.read_text().strip()
    return d
