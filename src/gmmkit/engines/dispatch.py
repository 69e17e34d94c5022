"""Choose the engine for an input: memory maps, chunked sources and dask collections.

Ordinary arrays are left to the estimator's own validation (scikit-learn's
``validate_data``) and :class:`~gmmkit.engines.memory.MemoryEngine`.  Everything else is
validated as it streams: shape and dtype up front, NaN and infinity chunk by chunk on
the first pass, never by materialising the data.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from gmmkit.core.weights import WeightSummary
from gmmkit.engines.base import Engine
from gmmkit.engines.dask_engine import DaskEngine, is_dask_collection
from gmmkit.engines.memory import default_chunk_rows
from gmmkit.engines.sources import ArraySource, ChunkSource, IterableSource
from gmmkit.engines.streaming import StreamingEngine

#: Rows per slice when checking a memory-mapped weight vector.
_CHECK_ROWS = 1 << 20


def is_out_of_core(X: Any) -> bool:
    """True for inputs that must not be loaded whole: memory maps, chunked sources,
    chunk factories and dask collections."""
    return (
        isinstance(X, np.memmap | ChunkSource)
        or is_dask_collection(X)
        or (callable(X) and not hasattr(X, "shape"))
    )


def is_torch_tensor(X: Any) -> bool:
    """True for a ``torch.Tensor`` (without importing torch: a tensor exists only once
    torch is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(X, torch.Tensor)


def _torch_engine(
    X: Any,
    sample_weight: Any,
    labels: Any,
    *,
    device: Any,
    n_components: int | None,
    covariance_type: str,
    chunk_rows: int | None,
    min_samples: int,
) -> Engine:
    """A :class:`~gmmkit.engines.torch_engine.TorchEngine` on a checked tensor."""
    from gmmkit.engines.torch_engine import TorchEngine, checked_tensor

    X = checked_tensor(X, min_samples)
    n_rows = int(X.shape[0])
    weight = None
    nonzero = n_rows
    if sample_weight is not None:
        if is_torch_tensor(sample_weight):
            sample_weight = sample_weight.detach().cpu().numpy()
        weight, nonzero, scale = _checked_stream_weight(sample_weight, n_rows)
        weight = np.asarray(weight, dtype=np.float64) * scale
    if n_components is not None and nonzero < n_components:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {n_components}, "
            f"n_samples = {nonzero}"
        )
    if is_torch_tensor(labels):
        labels = labels.detach().cpu().numpy()
    return TorchEngine(
        X,
        weight,
        None if labels is None else np.asarray(labels),
        device=device,
        chunk_rows=chunk_rows,
        n_components=n_components or 1,
        covariance_type=covariance_type,
    )


def _print_line(line: str) -> None:
    print(line, flush=True)


def _checked_stream_weight(weight: Any, n_rows: int | None) -> tuple[Any, int, float]:
    """Sample weights as float64 (a memory map stays mapped), validated slice by slice;
    returns them, the number of rows with non-zero weight and the power of two that
    brings them to a common scale (:mod:`gmmkit.core.weights`)."""
    if not isinstance(weight, np.memmap):
        weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 1:
        raise ValueError(f"sample_weight must be 1D, got shape {weight.shape}")
    if n_rows is not None and len(weight) != n_rows:
        raise ValueError(f"sample_weight.shape == ({len(weight)},), expected ({n_rows},)!")
    nonzero = 0
    summary = WeightSummary()
    for start in range(0, len(weight), _CHECK_ROWS):
        part = np.asarray(weight[start : start + _CHECK_ROWS], dtype=np.float64)
        if not np.all(np.isfinite(part)):
            raise ValueError("sample_weight contains NaN or infinity")
        if np.any(part < 0):
            raise ValueError("Negative values in data passed to sample_weight")
        nonzero += int(np.count_nonzero(part))
        summary.add(part)
    if nonzero == 0:
        raise ValueError("sample_weight is zero for every sample")
    return weight, nonzero, summary.scale()


def _checked_dask_weight(engine: DaskEngine) -> int:
    import dask

    weight = engine.sample_weight
    non_finite, negative, nonzero, top = dask.compute(
        (~np.isfinite(weight)).any(), (weight < 0).any(), (weight != 0).sum(), weight.max()
    )
    if bool(non_finite):
        raise ValueError("sample_weight contains NaN or infinity")
    if bool(negative):
        raise ValueError("Negative values in data passed to sample_weight")
    if int(nonzero) == 0:
        raise ValueError("sample_weight is zero for every sample")
    relative_sum, smallest = dask.compute(
        (weight / top).sum(), weight[weight > 0].min()
    )
    summary = WeightSummary()
    summary.count, summary.top = len(weight), float(top)
    summary.relative_sum, summary.smallest_positive = float(relative_sum), float(smallest)
    scale = summary.scale()
    if scale != 1.0:  # a power of two: exact, and lazy like the weights themselves
        engine.sample_weight = weight * scale
    return int(nonzero)


def as_engine(
    X: Any,
    sample_weight: Any = None,
    labels: Any = None,
    *,
    n_components: int | None = None,
    chunk_rows: int | None = None,
    n_jobs: int | None = None,
    verbose: int = 0,
    min_samples: int = 1,
    device: Any = None,
    covariance_type: str = "full",
    allow_nan: bool = False,
) -> Engine | None:
    """An out-of-core or Dask engine for ``X``, or None for ordinary in-memory input.

    Parameters
    ----------
    X : numpy.memmap, ChunkSource, callable, dask array, dask DataFrame or torch.Tensor
        A memmap (``np.load(path, mmap_mode="r")``), a source from
        :func:`gmmkit.read_parquet` / :func:`gmmkit.read_csv`, a callable returning an
        iterator of (n_i, D) blocks, or a dask collection of shape (N, D).
    sample_weight : array-like of shape (N,), optional
        For dask input, a dask or NumPy vector; otherwise a NumPy vector or memmap.
    labels : array-like of shape (N,), optional
    n_components : int, optional
        When given, require at least this many rows with non-zero weight.
    chunk_rows : int, optional
        Rows per kernel call; cache-sized by default.
    n_jobs : int, optional
        Threads of the streaming engine.
    verbose : int
        When non-zero, print one line per pass over the data.
    min_samples : int
        Fewest rows accepted (2 for fitting, as scikit-learn).
    device : str or torch.device, optional
        For a ``torch.Tensor`` ``X``: the device to compute on (default: where it lies).
    covariance_type : str
        Sizes the chunks.
    allow_nan : bool
        Let NaN (missing values) through the blocks' checks (``missing="marginalize"``).

    Returns
    -------
    Engine or None
        A :class:`~gmmkit.engines.torch_engine.TorchEngine` for a ``torch.Tensor``.
    """
    if is_torch_tensor(X):
        return _torch_engine(
            X, sample_weight, labels, device=device, n_components=n_components,
            covariance_type=covariance_type, chunk_rows=chunk_rows, min_samples=min_samples,
        )
    if not is_out_of_core(X):
        return None
    progress: Callable[[str], None] | None = _print_line if verbose else None
    # chunks sized for the fused kernel only where it will evaluate them: not for
    # labelled rows, nor without the model's number of components
    fused = None if labels is None and n_components is not None else False
    engine: Engine
    n_rows: int | None
    if is_dask_collection(X):
        dask_engine = DaskEngine(X, sample_weight, labels, progress=progress)
        dask_engine.allow_nan = allow_nan
        rows = chunk_rows or default_chunk_rows(
            dask_engine.n_features, n_components or 1, dask_engine.dtype.itemsize,
            covariance_type, fused,
        )
        dask_engine.chunk_rows = int(rows)
        n_rows = dask_engine.n_samples
        nonzero = n_rows if sample_weight is None else _checked_dask_weight(dask_engine)
        engine = dask_engine
    else:
        if isinstance(X, ChunkSource):
            source = X
        elif isinstance(X, np.memmap):
            source = ArraySource(X)
        else:
            source = IterableSource(X)
        rows = chunk_rows or default_chunk_rows(
            source.n_features, n_components or 1, source.dtype.itemsize, covariance_type, fused
        )
        weight = None
        nonzero = -1
        weight_scale = 1.0
        if sample_weight is not None:
            weight, nonzero, weight_scale = _checked_stream_weight(sample_weight, source.n_rows)
        if labels is not None and not isinstance(labels, np.memmap):
            labels = np.asarray(labels)
        streaming = StreamingEngine(
            source,
            weight,
            labels,
            chunk_rows=rows,
            n_jobs=n_jobs,
            progress=progress,
            weight_scale=weight_scale,
        )
        streaming.allow_nan = allow_nan
        engine = streaming
        n_rows = source.n_rows
        if n_rows is None and (min_samples > 1 or n_components is not None or weight is not None):
            n_rows = streaming.n_samples  # a counting (and checking) pass
        if weight is not None and len(weight) != n_rows:
            raise ValueError(f"sample_weight.shape == ({len(weight)},), expected ({n_rows},)!")
        if nonzero < 0 and n_rows is not None:
            nonzero = n_rows
    if engine.n_features < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape=({n_rows}, 0)) while a minimum of 1 "
            "is required."
        )
    if n_rows is not None and n_rows < min_samples:
        raise ValueError(
            f"Found array with {n_rows} sample(s) (shape=({n_rows}, {engine.n_features})) "
            f"while a minimum of {min_samples} is required."
        )
    if n_components is not None and nonzero < n_components:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {n_components}, "
            f"n_samples = {nonzero}"
        )
    return engine


def check_engine_features(estimator: Any, engine: Engine, reset: bool) -> None:
    """Set (``reset``) or check ``n_features_in_`` and ``feature_names_in_`` from an
    engine, as scikit-learn's ``validate_data`` does for arrays."""
    names = getattr(engine, "feature_names", None)
    if reset:
        estimator.n_features_in_ = engine.n_features
        if names is not None:
            estimator.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
        return
    expected = estimator.n_features_in_
    if engine.n_features != expected:
        raise ValueError(
            f"X has {engine.n_features} features, but {type(estimator).__name__} is "
            f"expecting {expected} features as input."
        )
    fitted = getattr(estimator, "feature_names_in_", None)
    if names is not None and fitted is not None and list(names) != list(fitted):
        raise ValueError(
            "The feature names should match those that were passed during fit.\n"
            f"Fitted with: {list(fitted)}\nGiven: {list(names)}"
        )
