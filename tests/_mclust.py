"""Reference numbers from R's mclust, read from ``tests/fixtures/mclust`` (no R needed).

The fixtures are written by ``benchmarks/mclust/make_reference.R``; see
``tests/fixtures/mclust/README.md`` for the file layout and how to regenerate them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures" / "mclust"

#: Data sets with a CSV file and a BIC table in ``reference.json``, in the R script's order.
DATASETS: tuple[str, ...] = (
    "faithful",
    "iris",
    "galaxies",
    "acidity",
    "diabetes",
    "banknote",
    "thyroid",
    "wreath",
    "chevron",
    "GvHD.pos",
)


@cache
def reference() -> dict[str, Any]:
    """``reference.json``: mclust/R versions, per-data-set BIC tables, best model, timing, and
    the ``n_params`` grid. Cached: do not mutate the result."""
    with open(FIXTURES / "reference.json", encoding="utf-8") as f:
        return json.load(f)


@cache
def _dataset(name: str) -> np.ndarray:
    if name not in DATASETS:
        raise KeyError(f"unknown mclust data set {name!r}; known: {', '.join(DATASETS)}")
    X = np.loadtxt(FIXTURES / reference()["datasets"][name]["file"], delimiter=",",
                   skiprows=1, dtype=np.float64, ndmin=2)
    X.setflags(write=False)
    return X


def load_dataset(name: str) -> np.ndarray:
    """The data exactly as mclust fitted it, shape ``(n, d)``, float64 (a fresh copy)."""
    return _dataset(name).copy()


def dataset_columns(name: str) -> list[str]:
    """The CSV header: column names as in R."""
    path = FIXTURES / reference()["datasets"][name]["file"]
    with open(path, encoding="utf-8") as f:
        return f.readline().strip().split(",")


@cache
def _fitted_params() -> tuple[dict[str, Any], ...]:
    with open(FIXTURES / "params.json", encoding="utf-8") as f:
        return tuple(json.load(f))


def fitted_params() -> list[dict[str, Any]]:
    """``params.json``: one dict per single mclust fit with keys ``dataset``, ``model``, ``K``,
    ``loglik`` (mclust's ``$loglik``, one EM step behind the parameters), ``loglik_at_params``
    (mclust's E-step log-likelihood at the parameters) and arrays ``pro`` (K,), ``mean``
    (K, d), ``sigma`` (K, d, d) as float64."""
    out = []
    for entry in _fitted_params():
        e = dict(entry)
        for key in ("pro", "mean", "sigma"):
            e[key] = np.asarray(e[key], dtype=np.float64)
        out.append(e)
    return out
