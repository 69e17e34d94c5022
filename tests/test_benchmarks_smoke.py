"""The benchmark scripts must keep running: ``benchmarks/run.py --quick`` end to end, and
``benchmarks/bench_mclust.py --quick --no-r`` on a tiny subset, ``bench_squarem.py --quick``.

Only that they run and print every section is checked -- speed and fit quality are
reported by the benchmarks themselves, never asserted in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
MCLUST_SCRIPT = SCRIPT.with_name("bench_mclust.py")


def _run(script: Path, *args: str, timeout: int = 600) -> str:
    """Run a benchmark script; its stdout, after checking it exited cleanly."""
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_benchmark_quick_mode_runs():
    out = _run(SCRIPT, "--quick")
    for section in (
        "1. Machine floor",
        "2. Per EM iteration",
        "3. gmmkit float32 against float64",
        "4. Inference",
        "5. End-to-end fit",
        "6. Peak RSS",
        "7. Scaling",
        "8. N=",
        "9a. Inference on a few rows",
        "9b. Default fits of small data sets",
    ):
        assert section in out, f"missing section {section!r}:\n{out[-3000:]}"
    # the identical-init comparison must show equal log-likelihoods (rel |dLL| column)
    table = out.split("2. Per EM iteration")[1].split("3. gmmkit")[0]
    rows = [line.split() for line in table.splitlines() if line[:1].isalpha() and "x" in line]
    rel_values = [float(tok) for row in rows for tok in row if "e-" in tok or tok == "0.0e+00"]
    assert rel_values and max(rel_values) < 1e-9, table


def test_mclust_benchmark_quick_subset_runs(tmp_path):
    """Two models x K = 1, 2 on faithful (2-D) and galaxies (1-D), no R: a few seconds."""
    cases_path = tmp_path / "cases.json"
    out = _run(MCLUST_SCRIPT, "--quick", "--no-r", "--datasets", "faithful,galaxies",
               "--models", "EII,VVV,E,V", "--ks", "1-2", "--json", str(cases_path),
               timeout=300)
    for line in (
        "== Part 1. Fit quality",
        "SUMMARY fit quality: ",
        "Cases worse than mclust by more than 0.5",
        "mclust could not fit",
        "== Part 2. Model selection",
        "SUMMARY model selection: ",
        "== Part 3. Speed",
        "stored mclust_seconds",
        "SUMMARY speed: ",
    ):
        assert line in out, f"missing {line!r}:\n{out[-3000:]}"
    assert "/8 cases (" in out, out[-3000:]  # 2 data sets x 2 models x 2 Ks
    payload = json.loads(cases_path.read_text(encoding="utf-8"))
    cases = payload["fit_quality"]["cases"]
    assert {(c["dataset"], c["model"], c["K"]) for c in cases} == {
        (name, model, k)
        for name, models in (("faithful", ("EII", "VVV")), ("galaxies", ("E", "V")))
        for model in models
        for k in (1, 2)
    }
    for case in cases:
        assert case["status"] in ("equal", "better", "worse", "error", "mclust_na")
        assert case["error"] is not None or case["loglik"] is not None
    assert [s["dataset"] for s in payload["model_selection"]["datasets"]] == [
        "faithful", "galaxies"]


def test_mclust_benchmark_times_mclust_in_the_same_run_where_r_runs(monkeypatch, capsys):
    """With R available, part 2 times every data set's ``Mclust(X)`` in the same run and
    part 3 reuses that time instead of running R again (R itself replaced here: CI has
    none)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_mclust_under_test", MCLUST_SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    calls = []

    def fake_mclust(path, models, ks):
        calls.append((Path(path).name, models, ks))
        return {"seconds": 1000.0, "model": "EII", "K": 1, "bic": -1.0,
                "call": "Mclust(X)", "mclust_version": "6.0.0", "R_version": "R fake"}

    monkeypatch.setattr(bench, "r_available", lambda: (True, ""))
    monkeypatch.setattr(bench, "time_mclust_in_r", fake_mclust)
    assert bench.main(["--quick", "--datasets", "faithful,galaxies", "--models",
                       "EII,VVV,E,V", "--ks", "1-2"]) == 0
    out = capsys.readouterr().out
    assert [name for name, _, _ in calls] == ["faithful.csv", "galaxies.csv"]  # once each
    assert all(ks == [1, 2] for _, _, ks in calls)  # the restricted grid, as select()'s
    assert "timed inside R (system.time) in this run" in out
    assert "vs this run's Mclust(X) total 2000.0 s; select() faster on 2/2" in out
    assert "(Mclust(X) timed in part 2)" in out
    assert "R mclust (this run, system.time)" in out


def test_squarem_benchmark_quick_mode_runs():
    out = _run(SCRIPT.with_name("bench_squarem.py"), "--quick")
    assert "SQUAREM passes" in out
    assert "SUMMARY SQUAREM:" in out


@pytest.mark.slow
def test_convergence_benchmark_quick_subset_runs():
    """bench_convergence.py on the two smallest quick workloads: the table prints every
    column, with a ratio and a share of the floor for each row."""
    out = _run(SCRIPT.with_name("bench_convergence.py"), "--quick", "--only", "exam,diag",
               "--sklearn-iters", "2", timeout=300)
    table = out.split("Fits to convergence")[1]
    for column in ("early/iter", "late/iter", "sklearn late", "ratio late", "of floor late"):
        assert column in table, out[-3000:]
    rows = [line for line in table.splitlines() if line.startswith(("1-D", "diag"))]
    assert len(rows) == 4, table  # two workloads x float64, float32
    assert all(line.count("x ") >= 2 and "%" in line for line in rows), table


@pytest.mark.slow
def test_online_benchmark_quick_mode_runs():
    out = _run(SCRIPT.with_name("bench_online.py"), "--quick")
    rows = [line for line in out.splitlines() if "%" in line and "|" in line]
    assert len(rows) == 2, out[-3000:]


@pytest.mark.slow
def test_peers_benchmark_quick_subset_runs():
    """peers.py on the quick exam scores: both tables print, scikit-learn has a ratio in
    every per-iteration cell and an end-to-end cell, and a peer that is not importable
    (pycave always; pomegranate and gmmx where they are not installed) is reported as
    such instead of stopping the script."""
    out = _run(SCRIPT.with_name("peers.py"), "--quick", "--only", "exam", "--iters", "2",
               timeout=300)
    assert "pycave        NOT AVAILABLE" in out, out[-3000:]
    per_iter = out.split("Per EM iteration (")[1].split("\n\n")[0]  # the table
    rows = [line for line in per_iter.splitlines() if line.startswith("1-D exam")]
    assert [row.split()[4] for row in rows] == ["float64", "float32"], per_iter
    assert all(row.count("x / ") >= 1 and "not installed" in row for row in rows), per_iter
    e2e = out.split("End to end:")[1]
    row = next(line for line in e2e.splitlines() if line.startswith("1-D exam"))
    assert "dLL" in row and "not installed" in row, e2e


def test_start_battery_smoke_run_and_compare(tmp_path):
    """bench_start_battery.py on two small data sets, then --compare of two runs: one
    JSON line per fit, and the comparison names the fits and the ratios."""
    script = SCRIPT.with_name("bench_start_battery.py")
    out = _run(script, "--scale", "0.01", "--only", "moons,uniform", "--cov", "full,diag",
               timeout=300)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(r["data"], r["cov"]) for r in lines] == [
        ("moons", "full"), ("moons", "diag"), ("uniform cube d=4", "full"),
        ("uniform cube d=4", "diag")]
    assert all(np.isfinite(r["ll"]) and r["t"] > 0 for r in lines)
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text(out)
    shifted = [dict(r, ll=r["ll"] + (0.5 if r["cov"] == "full" else 0.0)) for r in lines]
    new.write_text("\n".join(json.dumps(r) for r in shifted) + "\n")
    report = _run(script, "--compare", str(old), str(new))
    assert "4 fits" in report and "2 of 4 final log-likelihoods moved" in report, report
    assert "higher moons full: +0.50000" in report, report


def test_outofcore_benchmark_child_runs_on_float32_data(tmp_path):
    """bench_outofcore.py's in-memory and memmap measurements on a tiny float32 file:
    each prints one JSON line (a float32 fit's lower bound once broke it)."""
    script = SCRIPT.with_name("bench_outofcore.py")
    path = tmp_path / "X.npy"
    sys.path.insert(0, str(script.parent))
    try:
        import bench_outofcore
    finally:
        sys.path.pop(0)
    bench_outofcore.write_data(path, 3000)
    for child in ("memory", "stream"):
        out = _run(script, "--child", child, "--path", str(path), "--rows", "3000",
                   "--ref-rows", "3000", "--iters", "2", timeout=300)
        result = json.loads(out.strip().splitlines()[-1])
        assert np.isfinite(result["lower_bound"]) and len(result["seconds_per_iteration"]) == 2
