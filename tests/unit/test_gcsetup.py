"""``ccbridge run``'s garbage-collector thresholds (ccbridge/gcsetup.py): set before the
deployment file is read, in a fresh interpreter running the real command."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from ccbridge import gcsetup

# ``ccbridge run`` on a file that is not there: it stops at reading the configuration,
# after the process-wide settings; the thresholds it left are printed.
RUN = textwrap.dedent(
    """
    import gc, sys
    from ccbridge.cli import main
    before = gc.get_threshold()
    try:
        code = main(["run", sys.argv[1]])
    except SystemExit as stopped:
        code = stopped.code
    print(before, gc.get_threshold(), code)
    """
)


def test_ccbridge_run_makes_full_collections_rare_before_reading_its_configuration(
    tmp_path: Path,
) -> None:
    missing = f"{tmp_path}/no-such-deployment.yaml"
    done = subprocess.run(
        [sys.executable, "-c", RUN, missing], capture_output=True, text=True, timeout=60
    )
    line = done.stdout.strip()
    assert line.startswith("(700, 10, 10) "), (line, done.stderr)  # Python's defaults
    after, _, code = line.partition(") ")[2].rpartition(" ")
    assert after == str(gcsetup.THRESHOLDS), line
    young, middle, full = gcsetup.THRESHOLDS
    # Full collections a hundred times rarer than Python's (700 x 10 x 10 allocations),
    # and a young collection bounded: it walks at most ~20,000 objects.
    assert young * middle * full >= 100 * 700 * 10 * 10
    assert 700 <= young <= 20_000 and middle == 10
    assert code != "0" and "no-such-deployment.yaml" in done.stdout + done.stderr
