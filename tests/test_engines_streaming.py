"""Out-of-core fitting: memmaps, Parquet (several row groups), CSV and chunk factories.

The reference is the in-memory fit of the same rows from the same initial parameters
(itself checked against scikit-learn in test_core_parity.py); one test also compares a
streamed fit with scikit-learn directly.  Out-of-core chunks are cut exactly like the
in-memory engine's, so the two agree far below the 1e-10 required.
"""

from __future__ import annotations

import gc
import re
import sys
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

import gmmkit
from _helpers import (
    assert_same_fit,
    fit_from,
    initial_parameters,
    relative_error,
    three_blobs,
)
from gmmkit import GaussianMixture
from gmmkit.engines import ArraySource, IterableSource, StreamingEngine, as_engine

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
CHUNK = 512


def _data(n: int = 5003, seed: int = 0, dtype: Any = np.float64) -> np.ndarray:
    return three_blobs(n, seed, dtype)


def _fit(X: Any, covariance_type: str, init: dict[str, Any], **kw: Any) -> GaussianMixture:
    return fit_from(X, covariance_type, init, max_iter=40, chunk_rows=CHUNK, **kw)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    X = _data()
    root = tmp_path_factory.mktemp("outofcore")
    np.save(root / "x.npy", X)
    np.save(root / "x32.npy", X.astype(np.float32))
    table = pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "tag": np.arange(len(X))})
    pq.write_table(table, root / "x.parquet", row_group_size=700)
    np.savetxt(root / "x.csv", X, delimiter=",", fmt="%.17g", header="a,b,c", comments="")
    np.savetxt(root / "x_noheader.csv", X, delimiter=",", fmt="%.17g")
    return {
        "npy": root / "x.npy",
        "npy32": root / "x32.npy",
        "parquet": root / "x.parquet",
        "csv": root / "x.csv",
        "csv_noheader": root / "x_noheader.csv",
    }


def test_parquet_file_has_several_row_groups(files: dict[str, Path]) -> None:
    assert pq.ParquetFile(files["parquet"]).num_row_groups == 8


# ----------------------------------------------------------------------- equality
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_memmap_parquet_csv_factory_equal_in_memory(
    files: dict[str, Path], covariance_type: str
) -> None:
    X = np.load(files["npy"])
    init = initial_parameters(X, covariance_type)
    reference = _fit(X, covariance_type, init)
    assert reference.n_iter_ > 5

    def blocks() -> Any:  # uneven blocks, misaligned with the chunks
        for start in range(0, len(X), 777):
            yield X[start : start + 777]

    sources = {
        "memmap": np.load(files["npy"], mmap_mode="r"),
        "parquet": gmmkit.read_parquet(files["parquet"], columns=["a", "b", "c"]),
        "csv": gmmkit.read_csv(files["csv"]),
        "factory": blocks,
    }
    for name, source in sources.items():
        streamed = _fit(source, covariance_type, init)
        assert_same_fit(reference, streamed)
        assert streamed.n_features_in_ == 3, name


def test_float32_memmap_equals_float32_in_memory(files: dict[str, Path]) -> None:
    X = np.load(files["npy32"])
    init = initial_parameters(X.astype(np.float64), "full")
    reference = _fit(X, "full", init)
    streamed = _fit(np.load(files["npy32"], mmap_mode="r"), "full", init)
    assert_same_fit(reference, streamed)


def test_fit_from_random_state_equals_in_memory(files: dict[str, Path]) -> None:
    """Sampling for k-means draws the same rows, so the whole fit (init included) agrees."""
    X = np.load(files["npy"])
    for init_params in ("kmeans", "k-means++", "random_from_data"):
        kw = {"n_components": 3, "init_params": init_params, "random_state": 7,
              "chunk_rows": CHUNK, "n_init": 2}
        reference = GaussianMixture(**kw).fit(X)
        streamed = GaussianMixture(**kw).fit(gmmkit.read_parquet(files["parquet"], [0, 1, 2]))
        assert_same_fit(reference, streamed)


def test_weighted_memmap_fit_equals_in_memory(files: dict[str, Path], tmp_path: Path) -> None:
    X = np.load(files["npy"])
    weight = np.random.default_rng(5).integers(0, 4, size=len(X)).astype(np.float64)
    np.save(tmp_path / "w.npy", weight)
    init = initial_parameters(X, "diag")
    reference = GaussianMixture(3, covariance_type="diag", chunk_rows=CHUNK, max_iter=10,
                                tol=0.0, **init)
    streamed = GaussianMixture(**reference.get_params())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X, sample_weight=weight)
        streamed.fit(np.load(files["npy"], mmap_mode="r"),
                     sample_weight=np.load(tmp_path / "w.npy", mmap_mode="r"))
    assert_same_fit(reference, streamed)


def test_streamed_fit_matches_scikit_learn(files: dict[str, Path]) -> None:
    X = np.load(files["npy"])
    init = initial_parameters(X, "full")
    streamed = _fit(np.load(files["npy"], mmap_mode="r"), "full", init)
    sk = SklearnGaussianMixture(3, covariance_type="full", tol=1e-8, max_iter=40, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X)
    assert abs(sk.lower_bound_ - streamed.lower_bound_) <= 1e-9 * abs(sk.lower_bound_)
    assert relative_error(sk.means_, streamed.means_) <= 1e-7
    assert relative_error(sk.covariances_, streamed.covariances_) <= 1e-7


# ----------------------------------------------------------------------- inference
def test_predict_score_proba_on_memmap_and_sources(files: dict[str, Path]) -> None:
    X = np.load(files["npy"])
    gm = GaussianMixture(3, random_state=0).fit(X)
    mm = np.load(files["npy"], mmap_mode="r")
    parquet = gmmkit.read_parquet(files["parquet"], columns=["a", "b", "c"])
    for source in (mm, parquet):
        np.testing.assert_array_equal(gm.predict(source), gm.predict(X))
        np.testing.assert_allclose(gm.score_samples(source), gm.score_samples(X), rtol=1e-13)
        np.testing.assert_allclose(gm.predict_proba(source), gm.predict_proba(X), atol=1e-13)
    assert gm.score(mm) == pytest.approx(gm.score(X), rel=1e-13)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_feature_names_from_parquet_and_csv(files: dict[str, Path], tmp_path: Path) -> None:
    gm = GaussianMixture(2, random_state=0, max_iter=5).fit(
        gmmkit.read_parquet(files["parquet"], columns=["a", "c"])
    )
    assert list(gm.feature_names_in_) == ["a", "c"]
    with pytest.raises(ValueError, match="feature names should match"):
        gm.predict(gmmkit.read_parquet(files["parquet"], columns=["a", "b"]))
    with pytest.raises(ValueError, match="X has 3 features"):
        gm.predict(gmmkit.read_csv(files["csv"]))
    headerless = gmmkit.read_csv(files["csv_noheader"], columns=[0, 2])
    assert headerless.feature_names is None
    in_memory = np.load(files["npy"])[:, [0, 2]]
    np.testing.assert_array_equal(gm.predict(headerless), gm.predict(in_memory))


def test_csv_header_detection(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("x,y\n1,2\n3,4.5\n")
    with_header = gmmkit.read_csv(path)
    assert with_header.header and with_header.feature_names == ("x", "y")
    path2 = tmp_path / "n.csv"
    path2.write_text("1,2\n3,4.5\n-1e3,nan\n")
    assert not gmmkit.read_csv(path2).header
    engine = as_engine(gmmkit.read_csv(path))
    assert isinstance(engine, StreamingEngine)
    np.testing.assert_array_equal(engine.take(np.array([1, 0])), [[3.0, 4.5], [1.0, 2.0]])


# ----------------------------------------------------------------------- bad input
def test_nan_in_memmap_named_with_its_row(tmp_path: Path) -> None:
    X = _data(3000)
    X[2345, 1] = np.nan
    np.save(tmp_path / "bad.npy", X)
    gm = GaussianMixture(3, random_state=0)
    with pytest.raises(ValueError, match=r"contains NaN \(first at row 2345\)"):
        gm.fit(np.load(tmp_path / "bad.npy", mmap_mode="r"))
    assert not hasattr(gm, "means_")
    X[2345, 1] = np.inf
    np.save(tmp_path / "bad.npy", X)
    with pytest.raises(ValueError, match="contains infinity"):
        gm.fit(np.load(tmp_path / "bad.npy", mmap_mode="r"))


def test_missing_values_in_parquet_and_csv(tmp_path: Path) -> None:
    table = pa.table({"a": pa.array([1.0, 2.0, None, 4.0] * 10), "b": np.arange(40.0)})
    pq.write_table(table, tmp_path / "m.parquet", row_group_size=7)
    with pytest.raises(ValueError, match=r"NaN \(first at row 2\)"):
        GaussianMixture(2).fit(gmmkit.read_parquet(tmp_path / "m.parquet"))
    (tmp_path / "m.csv").write_text("a,b\n" + "1,2\n" * 20 + "3,\n" + "1,5\n" * 5)
    # text files follow read_table's rules: an empty field is an error naming its line
    with pytest.raises(ValueError, match=r"line 22, column 'b' is empty"):
        GaussianMixture(2).fit(gmmkit.read_csv(tmp_path / "m.csv"))
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,abc\n")
    with pytest.raises(ValueError, match="line 3, column 'b' has 'abc', not a number"):
        GaussianMixture(1).fit(gmmkit.read_csv(tmp_path / "t.csv"))


def test_bad_sources_rejected_up_front(files: dict[str, Path], tmp_path: Path) -> None:
    pq.write_table(pa.table({"s": ["x", "y"], "v": [1.0, 2.0]}), tmp_path / "s.parquet")
    with pytest.raises(TypeError, match=r"column 's'.*only numeric"):
        gmmkit.read_parquet(tmp_path / "s.parquet")
    assert gmmkit.read_parquet(tmp_path / "s.parquet", columns=["v"]).n_features == 1
    with pytest.raises(ValueError, match="column 'zz' not found"):
        gmmkit.read_parquet(files["parquet"], columns=["a", "zz"])
    with pytest.raises(FileNotFoundError):
        gmmkit.read_csv(tmp_path / "none.csv")
    (tmp_path / "few.csv").write_text("1,2\n3,4\n5,6\n")
    with pytest.raises(ValueError, match="n_components = 4, n_samples = 3"):
        GaussianMixture(4).fit(gmmkit.read_csv(tmp_path / "few.csv"))
    mm = np.load(files["npy"], mmap_mode="r")
    with pytest.raises(ValueError, match="sample_weight"):
        GaussianMixture(2).fit(mm, sample_weight=np.ones(10))
    with pytest.raises(ValueError, match="Negative"):
        GaussianMixture(2).fit(mm, sample_weight=-np.ones(len(mm)))
    with pytest.raises(ValueError, match="2D"):
        GaussianMixture(2).fit(np.load(files["npy"], mmap_mode="r")[:, 0])


def test_factory_that_changes_between_passes_is_an_error() -> None:
    X = _data(2000)
    calls = [0]

    def shrinking() -> Any:
        calls[0] += 1
        yield X[: len(X) - calls[0]]

    with pytest.raises(RuntimeError, match="same rows on every pass"):
        GaussianMixture(3, random_state=0).fit(shrinking)


# ----------------------------------------------------------------------- streaming internals
def test_reservoir_sample_is_uniform() -> None:
    """With the row count unknown the sample is a one-pass reservoir: every row is drawn
    with probability n / N whatever chunk it sits in (chi-square over 2000 draws)."""
    N, n, draws = 300, 30, 2000
    X = np.arange(N, dtype=np.float64)[:, None]

    def blocks() -> Any:
        yield from (X[a : a + 37] for a in range(0, N, 37))

    counts = np.zeros(N)
    rng = np.random.default_rng(0)
    for _ in range(draws):
        engine = StreamingEngine(IterableSource(blocks), chunk_rows=16, n_jobs=1)
        rows, _ = engine.sample(n, rng)
        assert len(rows) == n and np.all(np.diff(rows[:, 0]) > 0)  # distinct, in row order
        counts[rows[:, 0].astype(int)] += 1
    expected = draws * n / N
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert scipy_stats.chi2.sf(chi2, N - 1) > 1e-4
    assert engine.n_samples == N


def test_sample_of_known_size_matches_memory_engine(files: dict[str, Path]) -> None:
    from gmmkit.engines import MemoryEngine

    X = np.load(files["npy"])
    streaming = StreamingEngine(ArraySource(np.load(files["npy"], mmap_mode="r")), chunk_rows=100)
    rows, _ = streaming.sample(250, np.random.default_rng(3))
    expected, _ = MemoryEngine(X).sample(250, np.random.default_rng(3))
    np.testing.assert_array_equal(rows, expected)


def test_memory_independent_of_rows(tmp_path: Path) -> None:
    """Peak traced allocations of EM on a memmap do not grow with the number of rows
    (no N x D temporaries, only a few chunks in flight)."""
    peaks = []
    init = {"weights_init": np.full(3, 1 / 3), "means_init": np.eye(3),
            "precisions_init": np.stack([np.eye(3)] * 3)}
    for n in (100_000, 800_000):
        X = _data(n, dtype=np.float32)
        np.save(tmp_path / f"{n}.npy", X)
        del X
        gc.collect()
        mm = np.load(tmp_path / f"{n}.npy", mmap_mode="r")
        tracemalloc.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            GaussianMixture(3, max_iter=3, n_jobs=2, chunk_rows=4096, **init).fit(mm)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    data_bytes = 800_000 * 3 * 4
    assert peaks[1] < peaks[0] + 0.05 * data_bytes, peaks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_memmap_pages_are_released_after_a_pass(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(1_250_000, 8))
    X[:] = 1.0  # 80 MB
    X.flush()
    del X
    mm = np.load(path, mmap_mode="r")
    engine = StreamingEngine(ArraySource(mm), chunk_rows=4096, n_jobs=2)
    total = engine.map_reduce(lambda chunk: float(chunk.X.sum()))
    assert total == 1_250_000 * 8

    def mapped_kb() -> int:
        rss, inside = 0, False
        for line in Path("/proc/self/smaps").read_text().splitlines():
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                inside = str(path) in line
            elif inside and line.startswith("Rss:"):
                rss += int(line.split()[1])
        return rss

    assert mapped_kb() < 4096  # the whole 80 MB were read, at most ~4 MB stay resident


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_progress_line_per_pass(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    GaussianMixture(3, max_iter=2, tol=0.0, random_state=0, verbose=1).fit(
        gmmkit.read_csv(files["csv"])
    )
    out = capsys.readouterr().out
    passes = [line for line in out.splitlines() if line.startswith("[gmmkit] pass")]
    # counting scan, 2 sampling passes, Lloyd passes, init statistics, 2 EM iterations
    assert len(passes) >= 6
    assert "5003 rows" in passes[0] and "csv" in passes[0]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predict_on_csv_reads_it_once(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    gm = GaussianMixture(3, max_iter=2, random_state=0).fit(np.load(files["npy"]))
    gm.set_params(verbose=1)
    labels = gm.predict(gmmkit.read_csv(files["csv"]))
    passes = [l for l in capsys.readouterr().out.splitlines() if l.startswith("[gmmkit] pass")]
    assert len(passes) == 1 and len(labels) == 5003
