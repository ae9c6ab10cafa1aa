"""Random per-machine secrets for the lab, kept in the git-ignored lab folder."""

from __future__ import annotations

import secrets
from pathlib import Path

from ccbridge.lab.sites import default_lab_dir

LAB_SECRETS = ("ami", "api-token")


def ensure_lab_secrets(lab_dir: Path | None = None) -> Path:
    """Create .lab/secrets/{ami,api-token} once; the lab config reads them as files."""
    d = (lab_dir or default_lab_dir()) / "secrets"
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    for name in LAB_SECRETS:
        p = d / name
        if not p.exists() or not p.read_text().strip():
            p.write_text(secrets.token_hex(16) + "\n")
            p.chmod(0o600)
    return d
