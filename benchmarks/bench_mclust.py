"""Side-by-side benchmark of gmmkit against R's mclust on mclust's own example data.

Run ``make bench-mclust`` (or ``python benchmarks/bench_mclust.py``; ``--quick`` for a
smoke-test subset).  The mclust numbers come from ``tests/fixtures/mclust/reference.json``
(written by ``benchmarks/mclust/make_reference.R``), so parts 1 and 2 need no R.

Parts
-----
1. Fit quality: every data set, every covariance model of its mclust BIC table (14 models;
   ``E``/``V`` in 1-D) and K = 1..9.  ``GaussianMixture(K, covariance_type=M,
   random_state=0)`` with its defaults; the total log-likelihood at the returned
   parameters, ``score(X) * n``, against mclust's ``loglik``.  A case *reaches* mclust
   when ours >= mclust - 0.5 (the acceptance target is >= 95 % of the cases mclust could
   fit).  mclust's loglik lags its parameters by one EM step (~1e-5 relative), far below
   the 0.5 margin.
2. Model selection: ``gmmkit.select(X, random_state=0)`` against ``Mclust(X)``'s best
   model, K and BIC (mclust's sign, larger is better: ``2 log L - df log n``; gmmkit's
   ``bic`` is the negative), and select()'s wall time next to the stored mclust time.
3. Speed in the same run: ``Mclust(X)`` timed inside R (``system.time``, so R's start-up
   is excluded) against ``select(X)`` on GvHD.pos (9083 x 4), when ``Rscript`` with
   mclust is installed (``apt-get install -y r-base-core r-cran-mclust``); otherwise
   against the stored ``mclust_seconds``.

``--json PATH`` writes every per-case result for further analysis.  Timings on a shared
machine are noisy; the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import gmmkit

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 0.5  # log-likelihood units: "reaches mclust" means ours >= mclust - MARGIN
TARGET = 0.95  # acceptance target for the share of cases reaching mclust
BIC_RTOL = 1e-6  # gmmkit's best BIC is "as good" when >= mclust's best - BIC_RTOL * |best|
QUICK_DATASETS = ("faithful", "galaxies")
QUICK_MAX_K = 4
SPEED_DATASET = "GvHD.pos"


# ----------------------------------------------------------------------------- helpers
def fixtures() -> ModuleType:
    """``tests/_mclust.py``: the reference loader shared with the test suite."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import _mclust

    return _mclust


def parse_ks(text: str) -> list[int]:
    """``"1-9"``, ``"2,4,6"`` or ``"1-3,7"`` -> sorted distinct positive ints."""
    ks: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = (int(v) for v in part.split("-", 1))
            ks.update(range(lo, hi + 1))
        else:
            ks.add(int(part))
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"bad K list {text!r}: expected e.g. 1-9 or 1,2,5")
    return sorted(ks)


def parse_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def format_table(headers: list[str], rows: list[list[Any]], indent: str = "  ") -> str:
    """Plain-text table; text columns left-aligned, numeric columns right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or _looks_numeric(str(row[i])) for row in rows)
        if rows else False
        for i in range(len(headers))
    ]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(headers), indent + "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _looks_numeric(text: str) -> bool:
    text = text.strip().rstrip("%sx")
    if text in ("", "-", "NA"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def fmt(value: float | None, decimals: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "NA"
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def jsonable(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


# ----------------------------------------------------------------------------- part 1
def fit_quality(
    names: list[str], models_filter: list[str] | None, ks: list[int]
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Fit every (model, K) of the reference table; one record per case."""
    mc = fixtures()
    ref = mc.reference()["datasets"]
    cases: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for name in names:
        X = mc.load_dataset(name)
        n = X.shape[0]
        fits = ref[name]["fits"]
        models = [m for m in fits if models_filter is None or m in models_filter]
        total = 0.0
        for model in models:
            for k in ks:
                entry = fits[model].get(str(k))
                if entry is None:
                    continue
                mclust_ll = entry["loglik"]
                case: dict[str, Any] = {
                    "dataset": name, "model": model, "K": k, "n": n, "d": X.shape[1],
                    "mclust_loglik": mclust_ll, "mclust_bic": entry["bic"],
                    "df": entry["df"], "loglik": None, "diff": None, "n_iter": None,
                    "converged": None, "error": None,
                }
                estimator = gmmkit.GaussianMixture(k, covariance_type=model, random_state=0)
                start = time.perf_counter()
                try:
                    with warnings.catch_warnings(), np.errstate(all="ignore"):
                        warnings.simplefilter("ignore")
                        estimator.fit(X)
                        loglik = float(estimator.score(X)) * n
                except Exception as exc:  # counted and listed separately
                    case["error"] = f"{type(exc).__name__}: {exc}"
                else:
                    case.update(loglik=loglik, n_iter=int(estimator.n_iter_),
                                converged=bool(estimator.converged_))
                    if mclust_ll is not None:
                        case["diff"] = loglik - mclust_ll
                case["seconds"] = time.perf_counter() - start
                total += case["seconds"]
                case["status"] = classify(case)
                cases.append(case)
        seconds[name] = total
        print(f"  [part 1] {name}: {sum(c['dataset'] == name for c in cases)} fits in "
              f"{total:.1f} s", file=sys.stderr, flush=True)
    return cases, seconds


def classify(case: dict[str, Any]) -> str:
    if case["mclust_loglik"] is None:
        return "mclust_na"
    if case["error"] is not None:
        return "error"
    if case["diff"] > MARGIN:
        return "better"
    if case["diff"] < -MARGIN:
        return "worse"
    return "equal"


def report_fit_quality(cases: list[dict[str, Any]], seconds: dict[str, float]) -> dict[str, Any]:
    print("== Part 1. Fit quality: GaussianMixture(K, covariance_type=M, random_state=0), "
          "defaults")
    print(f"   log-likelihood score(X)*n against mclust's loglik; reach = ours >= mclust - "
          f"{MARGIN}")
    rows = []
    names = list(dict.fromkeys(c["dataset"] for c in cases))
    for name in names:
        mine = [c for c in cases if c["dataset"] == name]
        counts = _counts(mine)
        rows.append([
            name, f"{mine[0]['n']}x{mine[0]['d']}", counts["cases"], counts["reach"],
            counts["better"], counts["worse"], counts["error"], counts["mclust_na"],
            f"{counts['share'] * 100:.1f}%" if counts["cases"] else "NA",
            f"{seconds[name]:.1f}",
        ])
    total = _counts(cases)
    rows.append([
        "TOTAL", "", total["cases"], total["reach"], total["better"], total["worse"],
        total["error"], total["mclust_na"],
        f"{total['share'] * 100:.1f}%" if total["cases"] else "NA",
        f"{sum(seconds.values()):.1f}",
    ])
    print(format_table(
        ["dataset", "n x d", "cases", ">= mclust-0.5", "better >0.5", "worse >0.5",
         "fit errors", "mclust NA", "reached", "time s"],
        rows,
    ))
    print("   cases = (model, K) that mclust fitted; a gmmkit fit error counts as not "
          "reaching. 'mclust NA' cases are excluded.")
    verdict = "PASS" if total["cases"] and total["share"] >= TARGET else "FAIL"
    print(f"\nSUMMARY fit quality: {total['reach']}/{total['cases']} cases "
          f"({total['share'] * 100:.1f}%) reach mclust's loglik - {MARGIN} "
          f"(target >= {TARGET * 100:.0f}%: {verdict}); {total['better']} better by > "
          f"{MARGIN}, {total['worse']} worse by > {MARGIN}, {total['error']} fit errors, "
          f"{total['mclust_na']} mclust could not fit")

    worse = sorted((c for c in cases if c["status"] == "worse"), key=lambda c: c["diff"])
    print(f"\nCases worse than mclust by more than {MARGIN} ({len(worse)}):")
    if worse:
        print(format_table(
            ["dataset", "model", "K", "gmmkit loglik", "mclust loglik", "diff", "n_iter"],
            [[c["dataset"], c["model"], c["K"], fmt(c["loglik"], 3), fmt(c["mclust_loglik"], 3),
              fmt(c["diff"], 3), c["n_iter"]] for c in worse],
        ))
    else:
        print("  none")

    errors = [c for c in cases if c["error"] is not None]
    print(f"\ngmmkit fit errors ({len(errors)}):")
    for c in errors:
        note = " (mclust could not fit either)" if c["mclust_loglik"] is None else ""
        print(f"  {c['dataset']} {c['model']} K={c['K']}: {c['error']}{note}")
    if not errors:
        print("  none")

    na = [c for c in cases if c["status"] == "mclust_na"]
    print(f"\nmclust could not fit ({len(na)} cases, excluded from the share):")
    if na:
        print(format_table(
            ["dataset", "model", "K", "gmmkit loglik"],
            [[c["dataset"], c["model"], c["K"],
              fmt(c["loglik"], 3) if c["error"] is None else "fit error"] for c in na],
        ))
    else:
        print("  none")
    return total


def _counts(cases: list[dict[str, Any]]) -> dict[str, Any]:
    status = [c["status"] for c in cases]
    counted = [s for s in status if s != "mclust_na"]
    reach = sum(s in ("equal", "better") for s in counted)
    return {
        "cases": len(counted),
        "reach": reach,
        "better": status.count("better"),
        "worse": status.count("worse"),
        "error": status.count("error"),
        "mclust_na": status.count("mclust_na"),
        "share": reach / len(counted) if counted else float("nan"),
    }


# ----------------------------------------------------------------------------- part 2
def run_select(
    X: np.ndarray, table_models: list[str], ks: list[int], restricted: bool
) -> tuple[Any, float, str]:
    """``select(X, random_state=0)``: with its defaults unless the grid is restricted.

    Returns (result, seconds, how): when select()'s default candidates turn out not to be
    the reference table's models (an older default), it is run again with them explicitly.
    """

    def timed(**kwargs: Any) -> tuple[Any, float]:
        start = time.perf_counter()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = gmmkit.select(X, random_state=0, **kwargs)
        return result, time.perf_counter() - start

    if restricted:
        result, seconds = timed(n_components=ks, covariance_types=table_models)
        return result, seconds, "explicit grid (restricted by options)"
    result, seconds = timed()
    fitted = {str(row["covariance_type"]) for row in result.rows}
    ks_seen = {int(row["n_components"]) for row in result.rows}
    if fitted == set(table_models) and ks_seen == set(ks):
        return result, seconds, "defaults"
    result, seconds = timed(n_components=ks, covariance_types=table_models)
    return result, seconds, (
        f"explicit covariance_types (select's default was {sorted(fitted)}, K={sorted(ks_seen)})"
    )


def model_selection(
    names: list[str], models_filter: list[str] | None, ks: list[int], full_ks: bool,
    use_r: bool = False,
) -> list[dict[str, Any]]:
    """Part 2 for every data set; with ``use_r`` (and R with mclust installed) each
    ``Mclust(X)`` over the same grid is timed inside R in this run too, so that the
    times compare on one machine under one load."""
    mc = fixtures()
    ref = mc.reference()["datasets"]
    if use_r:
        use_r, why = r_available()
        if not use_r:
            print(f"(R not usable for part 2's times: {why}; the stored mclust_seconds "
                  "are shown)", file=sys.stderr)
    out = []
    for name in names:
        X = mc.load_dataset(name)
        n = X.shape[0]
        fits = ref[name]["fits"]
        table_models = [m for m in fits if models_filter is None or m in models_filter]
        restricted = not full_ks or len(table_models) < len(fits)
        result, seconds, how = run_select(X, table_models, ks, restricted)
        r_result = None
        if use_r:
            r_result = time_mclust_in_r(ROOT / "tests" / "fixtures" / "mclust" / ref[name]["file"],
                                        table_models if restricted else None,
                                        ks if restricted else None)
        if restricted:  # mclust's best over the same (restricted) grid
            grid = [(m, k, fits[m][str(k)]["bic"]) for m in table_models for k in ks
                    if str(k) in fits[m] and fits[m][str(k)]["bic"] is not None]
            m_model, m_k, m_bic = max(grid, key=lambda t: t[2])
        else:
            best = ref[name]["best"]
            m_model, m_k, m_bic = best["model"], int(best["K"]), float(best["bic"])
        row = result.best_row
        g_bic = -float(row["bic"])
        df_mismatch = [
            (str(r["covariance_type"]), int(r["n_components"]))
            for r in result.rows
            if str(r["covariance_type"]) in fits
            and str(int(r["n_components"])) in fits[str(r["covariance_type"])]
            and int(r["n_parameters"])
            != fits[str(r["covariance_type"])][str(int(r["n_components"]))]["df"]
        ]
        # gmmkit's BIC at mclust's choice, for context
        at_mclust = [r for r in result.rows
                     if str(r["covariance_type"]) == m_model and int(r["n_components"]) == m_k]
        g_at_mclust = -float(at_mclust[0]["bic"]) if at_mclust else float("nan")
        out.append({
            "dataset": name, "n": n, "d": X.shape[1], "how": how,
            "restricted": restricted, "candidates": len(result.rows),
            "mclust_model": m_model, "mclust_K": m_k, "mclust_bic": m_bic,
            "gmmkit_model": str(row["covariance_type"]), "gmmkit_K": int(row["n_components"]),
            "gmmkit_bic": g_bic, "gmmkit_bic_at_mclust_choice": g_at_mclust,
            "bic_diff": g_bic - m_bic,
            "as_good": bool(g_bic >= m_bic - BIC_RTOL * abs(m_bic)),
            "same_choice": bool(str(row["covariance_type"]) == m_model
                                and int(row["n_components"]) == m_k),
            "degenerate_candidates": sum(bool(r["degenerate"]) for r in result.rows),
            "df_mismatch": df_mismatch,
            "seconds": seconds,
            "mclust_seconds": (float(ref[name]["mclust_seconds"]) if r_result is None
                               else r_result["seconds"]),
            "mclust_timed_here": r_result,
            "rows": [dict(r) for r in result.rows],  # select()'s table, for --json
        })
        print(f"  [part 2] {name}: select {seconds:.1f} s ({how})"
              + ("" if r_result is None else f", Mclust {r_result['seconds']:.1f} s"),
              file=sys.stderr, flush=True)
    return out


def report_model_selection(results: list[dict[str, Any]]) -> dict[str, Any]:
    print("\n== Part 2. Model selection: gmmkit.select(X, random_state=0) against "
          "Mclust(X)")
    print("   BIC in mclust's sign (2 log L - df log n, larger is better); "
          f"'>=' means gmmkit >= mclust - {BIC_RTOL:g} x |mclust|")
    rows = []
    for r in results:
        rows.append([
            r["dataset"], r["candidates"], r["mclust_model"], r["mclust_K"],
            fmt(r["mclust_bic"], 3), r["gmmkit_model"], r["gmmkit_K"], fmt(r["gmmkit_bic"], 3),
            fmt(r["bic_diff"], 3), "yes" if r["as_good"] else "NO",
            "yes" if r["same_choice"] else "no", fmt(r["seconds"], 2),
            fmt(r["mclust_seconds"], 2), f"{r['seconds'] / r['mclust_seconds']:.2f}",
        ])
    print(format_table(
        ["dataset", "cands", "mclust", "K", "mclust BIC", "gmmkit", "K", "gmmkit BIC",
         "diff", ">=", "same", "select s", "mclust s*", "sel/mcl"],
        rows,
    ))
    if all(r["mclust_timed_here"] is not None for r in results):
        print("   * mclust s: Mclust(X) over the same grid timed inside R (system.time) in "
              "this run; sel/mcl = select s / mclust s (> 1: gmmkit slower)")
    else:
        print("   * mclust s: stored Mclust(X) time from reference.json (another run, a "
              "loaded 2-core machine); sel/mcl = select s / mclust s (> 1: gmmkit slower)")
    if any(r["restricted"] and r["mclust_timed_here"] is None for r in results):
        print("     (the stored time is for mclust's full grid, K = 1..9 and all models)")
    hows = sorted({r["how"] for r in results})
    print(f"   select() candidates: {'; '.join(hows)}")
    if any(r["restricted"] for r in results):
        print("   restricted grid: mclust's best is the best of its BIC table over the same "
              "models and K")
    for r in results:
        if r["df_mismatch"]:
            print(f"   WARNING {r['dataset']}: n_parameters differs from mclust's df for "
                  f"{r['df_mismatch']}")
        if not r["same_choice"]:
            print(f"   {r['dataset']}: gmmkit's BIC at mclust's choice ({r['mclust_model']}, "
                  f"K={r['mclust_K']}) is {fmt(r['gmmkit_bic_at_mclust_choice'], 3)}")
    good = sum(r["as_good"] for r in results)
    same = sum(r["same_choice"] for r in results)
    total_s = sum(r["seconds"] for r in results)
    total_m = sum(r["mclust_seconds"] for r in results)
    timed = "this run's" if all(r["mclust_timed_here"] is not None for r in results) else (
        "stored")
    faster = sum(r["seconds"] < r["mclust_seconds"] for r in results)
    print(f"\nSUMMARY model selection: gmmkit's best BIC >= mclust's on {good}/{len(results)} "
          f"data sets; same (model, K) on {same}/{len(results)}; select() total "
          f"{total_s:.1f} s vs {timed} Mclust(X) total {total_m:.1f} s; select() faster on "
          f"{faster}/{len(results)}")
    return {"as_good": good, "same_choice": same, "datasets": len(results),
            "seconds": total_s, "mclust_seconds": total_m}


# ----------------------------------------------------------------------------- part 3
def r_available() -> tuple[bool, str]:
    if shutil.which("Rscript") is None:
        return False, "Rscript not found"
    try:
        probe = subprocess.run(["Rscript", "-e", "library(mclust)"], capture_output=True,
                               text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"Rscript failed: {exc}"
    if probe.returncode != 0:
        return False, "R has no mclust package"
    return True, ""


def time_mclust_in_r(
    path: Path, models: list[str] | None, ks: list[int] | None
) -> dict[str, Any]:
    """``Mclust(X)`` (or over the given grid) timed inside R with ``system.time``."""
    args = ""
    if ks is not None:
        args += f", G = c({', '.join(str(k) for k in ks)})"
    if models is not None:
        args += f", modelNames = c({', '.join(json.dumps(m) for m in models)})"
    snippet = f"""
suppressPackageStartupMessages(library(mclust))
X <- as.matrix(utils::read.csv({json.dumps(str(path))}, check.names = FALSE,
                               colClasses = "numeric"))
set.seed(0)
elapsed <- system.time(fit <- Mclust(X{args}, verbose = FALSE))[["elapsed"]]
cat(sprintf("RESULT %.3f %s %d %.10f %s %s\\n", elapsed, fit$modelName, fit$G, fit$bic,
            as.character(packageVersion("mclust")), gsub(" ", "_", R.version.string)))
"""
    proc = subprocess.run(["Rscript", "-e", snippet], capture_output=True, text=True,
                          timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"Rscript failed ({proc.returncode}): {proc.stderr[-2000:]}")
    _, elapsed, model, k, bic, mclust_version, r_version = lines[-1].split()
    return {"seconds": float(elapsed), "model": model, "K": int(k), "bic": float(bic),
            "call": f"Mclust(X{args})", "mclust_version": mclust_version,
            "R_version": r_version.replace("_", " ")}


def speed(
    name: str, use_r: bool, models_filter: list[str] | None, ks: list[int], full_ks: bool,
    selections: list[dict[str, Any]],
) -> dict[str, Any]:
    mc = fixtures()
    ref = mc.reference()["datasets"][name]
    X = mc.load_dataset(name)
    table_models = [m for m in ref["fits"] if models_filter is None or m in models_filter]
    restricted = not full_ks or len(table_models) < len(ref["fits"])
    print(f"\n== Part 3. Speed: R's Mclust(X) against gmmkit.select(X) on {name} "
          f"({X.shape[0]}x{X.shape[1]}, {len(table_models) * len(ks)} candidates)")
    print(f"   load average {load_average()}")
    out: dict[str, Any] = {"dataset": name, "n": X.shape[0], "d": X.shape[1],
                           "restricted": restricted}
    previous = [s for s in selections if s["dataset"] == name]
    r_result = previous[0].get("mclust_timed_here") if previous else None
    if r_result is not None:
        print(f"   R: {r_result['R_version']}, mclust {r_result['mclust_version']} "
              "(Mclust(X) timed in part 2)")
    elif use_r:
        ok, why = r_available()
        if ok:
            r_result = time_mclust_in_r(ROOT / "tests" / "fixtures" / "mclust" / ref["file"],
                                        table_models if restricted else None,
                                        ks if restricted else None)
            print(f"   R: {r_result['R_version']}, mclust {r_result['mclust_version']}")
        else:
            print(f"   R not usable ({why}): comparing with the stored mclust_seconds "
                  "(install: apt-get install -y r-base-core r-cran-mclust)")
    else:
        print("   --no-r: comparing with the stored mclust_seconds")
    if previous:
        g_seconds = previous[0]["seconds"]
        g_model, g_k, g_bic = (previous[0]["gmmkit_model"], previous[0]["gmmkit_K"],
                               previous[0]["gmmkit_bic"])
        source = "select() time from part 2, same run"
    else:
        result, g_seconds, _ = run_select(X, table_models, ks, restricted)
        row = result.best_row
        g_model, g_k, g_bic = (str(row["covariance_type"]), int(row["n_components"]),
                               -float(row["bic"]))
        source = "select() timed here"
    rows = []
    if r_result is not None:
        m_seconds = r_result["seconds"]
        print(f"   R call: {r_result['call']}")
        rows.append(["R mclust (this run, system.time)", r_result["model"],
                     r_result["K"], fmt(r_result["bic"], 3), fmt(m_seconds, 2)])
        out["mclust"] = r_result
        out["mclust_source"] = "R, this run"
    else:
        m_seconds = float(ref["mclust_seconds"])
        rows.append(["mclust (stored Mclust(X), reference.json)", ref["best"]["model"],
                     ref["best"]["K"], fmt(ref["best"]["bic"], 3), fmt(m_seconds, 2)])
        out["mclust"] = {"seconds": m_seconds, "model": ref["best"]["model"],
                         "K": ref["best"]["K"], "bic": ref["best"]["bic"]}
        out["mclust_source"] = "stored mclust_seconds"
    rows.append([f"gmmkit select ({source})", g_model, g_k, fmt(g_bic, 3),
                 fmt(g_seconds, 2)])
    print(format_table(["run", "model", "K", "BIC", "seconds"], rows))
    ratio = g_seconds / m_seconds
    out.update(gmmkit={"seconds": g_seconds, "model": g_model, "K": g_k, "bic": g_bic,
                       "source": source}, ratio_gmmkit_over_mclust=ratio)
    if restricted and r_result is None:
        print("   note: the stored time is for the full Mclust(X) grid, gmmkit's for the "
              "restricted one")
    faster = "slower" if ratio > 1 else "faster"
    print(f"\nSUMMARY speed: on {name} mclust {m_seconds:.2f} s ({out['mclust_source']}), "
          f"gmmkit select {g_seconds:.2f} s: gmmkit/mclust time = {ratio:.2f} "
          f"(gmmkit {max(ratio, 1 / ratio):.2f}x {faster})")
    print(f"   load average {load_average()}")
    return out


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=parse_list,
                        help="comma-separated data sets (default: all ten)")
    parser.add_argument("--models", type=parse_list,
                        help="comma-separated covariance models, e.g. EII,VVV,E,V (default: "
                             "every model of each data set's mclust table)")
    parser.add_argument("--ks", type=parse_ks, default=list(range(1, 10)),
                        help="numbers of components, e.g. 1-9 or 1,2,5 (default: 1-9)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke-test subset: {' + '.join(QUICK_DATASETS)}, "
                             f"K <= {QUICK_MAX_K}, speed on {QUICK_DATASETS[0]}")
    parser.add_argument("--no-r", action="store_true",
                        help="do not run R; compare speed with the stored mclust_seconds")
    parser.add_argument("--speed-dataset",
                        help=f"data set of part 3 (default: {SPEED_DATASET}; "
                             f"{QUICK_DATASETS[0]} with --quick; 'none' skips part 3)")
    parser.add_argument("--skip-select", action="store_true", help="skip parts 2 and 3")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="write every per-case result to PATH")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # tables and stderr progress interleave

    mc = fixtures()
    known = list(mc.DATASETS)
    names = args.datasets or (list(QUICK_DATASETS) if args.quick else known)
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; known: {', '.join(known)}")
    ks = [k for k in args.ks if k <= QUICK_MAX_K] if args.quick else args.ks
    if not ks:
        parser.error("no K left")
    full_ks = ks == list(range(1, 10))
    ref = mc.reference()["datasets"]
    if args.models:
        all_models = {m for name in known for m in ref[name]["fits"]}
        bad = [m for m in args.models if m not in all_models]
        if bad:
            parser.error(f"unknown model(s) {bad}; known: {sorted(all_models)}")
        skipped = [n for n in names if not any(m in ref[n]["fits"] for m in args.models)]
        if skipped:
            print(f"(no requested model applies to {', '.join(skipped)}: skipped)")
        names = [n for n in names if n not in skipped]
    speed_name = args.speed_dataset or (QUICK_DATASETS[0] if args.quick else SPEED_DATASET)
    if speed_name != "none" and speed_name not in known:
        parser.error(f"unknown speed data set {speed_name!r}")
    if speed_name != "none" and args.models and not any(
        m in ref[speed_name]["fits"] for m in args.models
    ):
        speed_name = "none"

    defaults = gmmkit.GaussianMixture().get_params()
    shown = {k: defaults[k] for k in ("tol", "max_iter", "n_init", "init_params",
                                      "acceleration", "reg_covar") if k in defaults}
    meta = {
        "gmmkit_version": gmmkit.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "reference_mclust": mc.reference()["mclust_version"],
        "reference_R": mc.reference()["R_version"], "datasets": names, "ks": ks,
        "models": args.models, "quick": args.quick, "gaussian_mixture_defaults": shown,
        "margin": MARGIN, "target": TARGET,
    }
    print(f"gmmkit {gmmkit.__version__} vs mclust {meta['reference_mclust']} (reference "
          f"tables; {meta['reference_R']})")
    print(f"python {meta['python']}, numpy {np.__version__}, {os.cpu_count()} CPUs, load "
          f"average {load_average()}{'  [--quick]' if args.quick else ''}")
    print(f"GaussianMixture defaults: {shown}")
    print(f"data sets: {', '.join(names)}; K = {ks}; models: "
          f"{', '.join(args.models) if args.models else 'all of each table'}\n")

    start = time.perf_counter()
    cases, seconds = fit_quality(names, args.models, ks)
    fit_summary = report_fit_quality(cases, seconds)
    selections: list[dict[str, Any]] = []
    select_summary = None
    speed_result = None
    if not args.skip_select:
        selections = model_selection(names, args.models, ks, full_ks, use_r=not args.no_r)
        select_summary = report_model_selection(selections)
        if speed_name != "none":
            speed_result = speed(speed_name, not args.no_r, args.models, ks, full_ks,
                                 selections)
    elapsed = time.perf_counter() - start
    print(f"\ntotal benchmark time {elapsed:.1f} s; load average {load_average()}")

    if args.json:
        payload = {"meta": meta, "fit_quality": {"summary": fit_summary,
                                                 "seconds_per_dataset": seconds,
                                                 "cases": cases},
                   "model_selection": {"summary": select_summary, "datasets": selections},
                   "speed": speed_result, "seconds": elapsed}
        args.json.write_text(json.dumps(jsonable(payload), indent=1) + "\n", encoding="utf-8")
        print(f"per-case results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
