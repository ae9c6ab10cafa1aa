"""Alert and recording rules under promtool's rule unit tests, run from pytest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml


def check_rule_case(case: dict[str, Any], tmp_path: Path) -> None:
    """Run ``promtool test rules`` on ``case`` (a rule test file as a mapping); fail with
    promtool's output unless every test in it passes."""
    if shutil.which("promtool") is None:
        pytest.fail("promtool not installed: make test installs Debian's prometheus")
    path = tmp_path / "rules_test.yml"
    path.write_text(yaml.safe_dump(case), encoding="utf-8")
    out = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
