"""The benchmark script must keep running: ``benchmarks/run.py --quick`` end to end.

Only that it runs and prints every section is checked -- speed is reported by the
benchmark itself, never asserted in tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.mark.slow
def test_benchmark_quick_mode_runs():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for section in (
        "1. Machine floor",
        "2. Per EM iteration",
        "3. gmmkit float32 against float64",
        "4. Inference",
        "5. End-to-end default fit",
        "6. Peak RSS",
        "7. Scaling",
        "8. N=",
    ):
        assert section in out, f"missing section {section!r}:\n{out[-3000:]}"
    # the identical-init comparison must show equal log-likelihoods (rel |dLL| column)
    table = out.split("2. Per EM iteration")[1].split("3. gmmkit")[0]
    rows = [line.split() for line in table.splitlines() if line[:1].isalpha() and "x" in line]
    rel_values = [float(tok) for row in rows for tok in row if "e-" in tok or tok == "0.0e+00"]
    assert rel_values and max(rel_values) < 1e-9, table
