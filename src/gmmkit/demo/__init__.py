"""The demo report behind ``gmmkit demo`` / ``make demo``: an HTML page with PNG figures
showing what gmmkit does, on scikit-learn's bundled data and generated data.

Needs matplotlib (extra ``plot``); nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
import traceback
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gmmkit._atomic import write_text
from gmmkit.demo.html import Figure, Section, Table, render

__all__ = ["DemoError", "Figure", "Section", "Table", "build_report"]


class DemoError(RuntimeError):
    """Some sections of the report failed (the page is still written, showing which)."""


def _run(section_func: Callable[..., Section], ctx: object,
         log: Callable[[str], None] | None) -> Section:
    name = section_func.__name__.replace("_", " ")
    if log is not None:
        log(f"  {name} ...")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            section = section_func(ctx)
        except Exception as exc:
            section = Section(section_func.__name__.replace("_", "-"), name.capitalize())
            section.error = f"{type(exc).__name__}: {exc}"
            section.notes.append(traceback.format_exc(limit=3))
    seen = set()
    for warning in caught:
        text = f"{warning.category.__name__}: {warning.message}"
        if text not in seen and "gmmkit" in (warning.filename or "") + text:
            seen.add(text)
            section.notes.append(f"Warning raised: {text}")
    section.seconds = time.perf_counter() - start
    if log is not None:
        state = "FAILED: " + section.error if section.error else "done"
        log(f"  {name}: {state} ({section.seconds:.1f} s)")
    return section


def build_report(
    out_dir: str | Path,
    *,
    fast: bool = False,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run every demo section and write ``index.html`` and its figures into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed; existing report files are replaced, each atomically (a
        file is complete or keeps its old content).
    fast : bool, default=False
        Smaller data and ranges (same figures), for tests.
    seed : int, default=0
    log : callable, optional
        Receives one progress message per section.

    Returns
    -------
    Path
        The ``index.html`` written (``report.json`` beside it holds the same tables).

    Raises
    ------
    DemoError
        After writing the page, if any section failed.
    """
    from gmmkit.apps._common import import_optional

    import_optional("PIL.Image", "image")  # scikit-learn's sample photos need Pillow
    matplotlib = import_optional("matplotlib", "plot")
    matplotlib.use("Agg", force=True)

    from gmmkit import __version__
    from gmmkit.demo.sections import SECTIONS, Context

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(out_dir=out, fast=fast, seed=seed)
    start = time.perf_counter()
    if log is not None:
        log(f"building the demo report in {out}{' (fast mode)' if fast else ''}")
    sections = [_run(func, ctx, log) for func in SECTIONS]
    total = time.perf_counter() - start

    import os

    import numpy as np
    import sklearn

    meta = [
        f"gmmkit {__version__} · numpy {np.__version__} · scikit-learn {sklearn.__version__} · "
        f"Python {platform.python_version()} · {os.cpu_count()} CPUs",
        f"Built {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {total:.0f} s"
        + (" (fast mode: reduced data sizes)" if fast else "")
        + f", seed {seed}. Data: scikit-learn's bundled datasets and sample images, and "
        "generated data; nothing downloaded.",
    ]
    index = out / "index.html"
    write_text(index, render("gmmkit demo report", meta, sections))
    # the same content for machines (and the tests): titles, tables, figures, timings
    summary = {
        "meta": meta,
        "fast": fast,
        "seconds": total,
        "sections": [dataclasses.asdict(section) for section in sections],
    }
    write_text(out / "report.json", json.dumps(summary, indent=1))
    failed = [s.title for s in sections if s.error is not None]
    if failed:
        raise DemoError(f"report written to {index}, but sections failed: {', '.join(failed)}")
    return index
