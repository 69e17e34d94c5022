"""Safe model files: exact round trips, and every way a file can be bad."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import gmmkit
import gmmkit.modelfile
from _helpers import set_field
from gmmkit import GaussianMixture, ModelFileError
from gmmkit.core.covariance import COVARIANCE_TYPES, UNIVARIATE_MODEL_NAMES
from gmmkit.modelfile import FORMAT_NAME, FORMAT_VERSION, _sha256, read_metadata


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(7)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0], [-3.0, 5.0, 1.0]])
    return np.vstack([rng.normal(c, [1.0, 0.5, 2.0], size=(300, 3)) for c in centres])


def _data_for(data: np.ndarray, covariance_type: str) -> np.ndarray:
    """The data a model is fitted on: one column for the univariate models E and V."""
    return data[:, :1] if covariance_type in UNIVARIATE_MODEL_NAMES else data


@pytest.fixture(scope="module")
def models(data: np.ndarray) -> dict[str, GaussianMixture]:
    """One fit per covariance name: mclust's fourteen models, E/V, scikit-learn's four."""
    return {
        ct: GaussianMixture(3, covariance_type=ct, random_state=0).fit(_data_for(data, ct))
        for ct in COVARIANCE_TYPES
    }


@pytest.fixture
def model_file(tmp_path: Path, models: dict[str, GaussianMixture]) -> Path:
    path = tmp_path / "model.gmm"
    models["full"].save(path)
    return path


# ----------------------------------------------------------------------------- round trips
def _save_and_load(tmp_path: Path, estimator: Any, name: str) -> tuple[Path, Any]:
    """Save ``estimator`` to ``tmp_path / name`` and load it back: same class, same params."""
    path = tmp_path / name
    estimator.save(path)
    loaded = gmmkit.load(path)
    assert type(loaded) is type(estimator)
    assert loaded.get_params() == estimator.get_params()
    return path, loaded


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_is_bit_identical(
    tmp_path: Path, data: np.ndarray, models: dict[str, GaussianMixture], covariance_type: str
) -> None:
    model = models[covariance_type]
    data = _data_for(data, covariance_type)
    path, loaded = _save_and_load(tmp_path, model, "m.gmm")
    assert loaded.covariance_type == covariance_type
    assert read_metadata(path)["summary"]["covariance_type"] == covariance_type
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert np.array_equal(getattr(loaded, name), getattr(model, name)), name
        assert getattr(loaded, name).dtype == getattr(model, name).dtype, name
    assert loaded.converged_ == model.converged_
    assert loaded.n_iter_ == model.n_iter_
    assert loaded.lower_bounds_ == model.lower_bounds_
    assert loaded.n_features_in_ == data.shape[1]
    assert loaded.n_samples_fit_ == model.n_samples_fit_ == len(data)
    assert loaded.sample_weight_sum_ == model.sample_weight_sum_ == len(data)
    assert np.array_equal(loaded.score_samples(data), model.score_samples(data))
    assert np.array_equal(loaded.predict_proba(data), model.predict_proba(data))
    assert np.array_equal(loaded.predict(data), model.predict(data))
    assert loaded.bic(data) == model.bic(data)
    # Same integer seed: identical draws.
    assert np.array_equal(loaded.sample(50)[0], model.sample(50)[0])
    # A loaded model can be saved again, byte-identically.
    again = tmp_path / "again.gmm"
    loaded.save(again)
    assert again.read_bytes() == path.read_bytes()


def test_round_trip_float32_and_array_params(tmp_path: Path, data: np.ndarray) -> None:
    X = data.astype(np.float32)
    means_init = X[[0, 300, 600]].astype(np.float64)
    model = GaussianMixture(3, means_init=means_init, random_state=None, max_iter=5, tol=0)
    with pytest.warns(Warning):  # 5 iterations at tol 0 does not converge
        model.fit(X)
    path = tmp_path / "m32.gmm"
    model.save(path)
    loaded = gmmkit.load(path)
    assert np.array_equal(loaded.means_init, means_init)
    assert loaded.random_state is None
    assert np.array_equal(loaded.score_samples(X), model.score_samples(X))
    assert loaded.score_samples(X).dtype == model.score_samples(X).dtype


def test_feature_names_are_kept(tmp_path: Path, data: np.ndarray) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(data, columns=["height", "width", "depth"])
    model = GaussianMixture(2, random_state=0).fit(frame)
    path = tmp_path / "named.gmm"
    model.save(path)
    loaded = gmmkit.load(path)
    assert list(loaded.feature_names_in_) == ["height", "width", "depth"]
    assert read_metadata(path)["summary"]["feature_names"] == ["height", "width", "depth"]
    assert np.array_equal(loaded.predict(frame), model.predict(frame))


def test_metadata_summary(tmp_path: Path, models: dict[str, GaussianMixture]) -> None:
    path = tmp_path / "m.gmm"
    models["diag"].save(path, feature_names=["a", "b", "c"])
    meta = read_metadata(path)
    assert meta["format"] == FORMAT_NAME
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["gmmkit_version"] == gmmkit.__version__
    assert meta["estimator"]["class"] == "GaussianMixture"
    assert meta["summary"] == {
        "covariance_type": "diag",
        "n_components": 3,
        "n_features": 3,
        "dtype": "float64",
        "feature_names": ["a", "b", "c"],
    }
    with pytest.raises(ValueError, match="2 names"):
        models["diag"].save(path, feature_names=["a", "b"])


def test_file_is_an_npz_without_pickles(model_file: Path) -> None:
    with zipfile.ZipFile(model_file) as archive:
        assert "__gmmkit__.npy" in archive.namelist()
    with np.load(model_file, allow_pickle=False) as archive:
        for key in archive.files:
            assert archive[key].dtype.kind in "biuf"


def test_save_refuses_unfitted_and_foreign(tmp_path: Path, data: np.ndarray) -> None:
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    with pytest.raises(NotFittedError):
        GaussianMixture(2).save(tmp_path / "x.gmm")
    with pytest.raises(TypeError, match="only gmmkit estimators"):
        gmmkit.modelfile.save(SkGaussianMixture(2).fit(data), tmp_path / "x.gmm")
    assert not (tmp_path / "x.gmm").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


# ----------------------------------------------------------------------------- bad files
def _rewrite(src: Path, dst: Path, edit: Any, *, fix_checksums: bool = True) -> Path:
    """Copy a model file, letting ``edit(metadata, arrays)`` change it on the way."""
    with np.load(src, allow_pickle=False) as archive:
        members = {key: archive[key] for key in archive.files}
    metadata = json.loads(members.pop("__gmmkit__").tobytes())
    edit(metadata, members)
    if fix_checksums:
        metadata["arrays"] = {
            key: {"dtype": arr.dtype.str, "shape": list(arr.shape), "sha256": _sha256(arr)}
            for key, arr in members.items()
        }
    raw = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    with open(dst, "wb") as handle:
        np.savez(handle, __gmmkit__=raw, **members)
    return dst


def _key(name: str) -> str:
    return f"estimator.attributes.{name}"


def test_error_is_a_value_error() -> None:
    assert issubclass(ModelFileError, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        gmmkit.load(tmp_path / "nope.gmm")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="directory"):
        gmmkit.load(tmp_path)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path: Path, model_file: Path, fraction: float) -> None:
    content = model_file.read_bytes()
    bad = tmp_path / "truncated.gmm"
    bad.write_bytes(content[: int(len(content) * fraction)])
    with pytest.raises(ModelFileError):
        gmmkit.load(bad)


def test_flipped_byte_in_array(tmp_path: Path, model_file: Path, models: Any) -> None:
    content = bytearray(model_file.read_bytes())
    # Find the stored means and flip one bit inside their data.
    needle = models["full"].means_.tobytes()[:16]
    at = bytes(content).index(needle)
    content[at + 3] ^= 0x10
    bad = tmp_path / "flipped.gmm"
    bad.write_bytes(bytes(content))
    with pytest.raises(ModelFileError, match=r"corrupt|checksum"):
        gmmkit.load(bad)


def test_checksum_mismatch(tmp_path: Path, model_file: Path) -> None:
    def edit(meta: dict, arrays: dict) -> None:
        arrays[_key("means_")] = arrays[_key("means_")] + 1e-9

    bad = _rewrite(model_file, tmp_path / "sum.gmm", edit, fix_checksums=False)
    with pytest.raises(ModelFileError, match="checksum"):
        gmmkit.load(bad)


class _Exploit:
    """Unpickling this would create a file: proof that something ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_pickle_is_refused_and_never_executed(tmp_path: Path, models: Any) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.gmm"
    bad.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ModelFileError, match="pickle"):
        gmmkit.load(bad)
    bad.write_bytes(pickle.dumps(models["full"]))
    with pytest.raises(ModelFileError, match="pickle"):
        gmmkit.load(bad)
    assert not marker.exists()


def test_pickled_member_is_refused_and_never_executed(tmp_path: Path, model_file: Path) -> None:
    marker = tmp_path / "pwned"
    with np.load(model_file, allow_pickle=False) as archive:
        members = {key: archive[key] for key in archive.files}
    members[_key("means_")] = np.array([_Exploit(marker)], dtype=object)
    bad = tmp_path / "objects.gmm"
    with open(bad, "wb") as handle:
        np.savez(handle, allow_pickle=True, **members)
    with pytest.raises(ModelFileError, match="pickle"):
        gmmkit.load(bad)
    assert not marker.exists()


def test_foreign_files(tmp_path: Path) -> None:
    npy = tmp_path / "array.gmm"
    with open(npy, "wb") as handle:
        np.save(handle, np.eye(3))
    with pytest.raises(ModelFileError, match=r"\.npy"):
        gmmkit.load(npy)

    npz = tmp_path / "foreign.gmm"
    with open(npz, "wb") as handle:
        np.savez(handle, weights=np.ones(3) / 3)
    with pytest.raises(ModelFileError, match="not a gmmkit model"):
        gmmkit.load(npz)

    text = tmp_path / "text.gmm"
    text.write_text("weights,means\n1,2\n")
    with pytest.raises(ModelFileError, match="not a gmmkit model"):
        gmmkit.load(text)

    empty = tmp_path / "empty.gmm"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a gmmkit model"):
        gmmkit.load(empty)

    other_zip = tmp_path / "other.gmm"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("__gmmkit__.npy", b"not an npy file")
    with pytest.raises(ModelFileError):
        gmmkit.load(other_zip)


def _expect(tmp_path: Path, model_file: Path, edit: Any, match: str) -> None:
    bad = _rewrite(model_file, tmp_path / "edited.gmm", edit)
    with pytest.raises(ModelFileError, match=match):
        gmmkit.load(bad)


def test_untouched_rewrite_loads(tmp_path: Path, model_file: Path, data: np.ndarray) -> None:
    # The rewriting helper itself does not break files: the cases below fail for their edit.
    good = _rewrite(model_file, tmp_path / "same.gmm", lambda meta, arrays: None)
    assert np.array_equal(gmmkit.load(good).predict(data), gmmkit.load(model_file).predict(data))


def _set_meta(key: str, value: Any) -> Any:
    def edit(meta: dict, arrays: dict) -> None:
        meta[key] = value

    return edit


def _set_array(name: str, change: Any) -> Any:
    def edit(meta: dict, arrays: dict) -> None:
        arrays[_key(name)] = change(arrays[_key(name)].copy())

    return edit


def _asymmetric(c: np.ndarray) -> np.ndarray:
    c[0, 0, 1] += 0.1
    return c


def _not_positive_definite(c: np.ndarray) -> np.ndarray:
    c[0] = np.diag([1.0, -1.0, 1.0])
    return c


def _with_nan(m: np.ndarray) -> np.ndarray:
    m[1, 1] = np.nan
    return m


def _scaled(u: np.ndarray) -> np.ndarray:
    return u * 1.01


BAD_EDITS = {
    "newer version": (_set_meta("format_version", FORMAT_VERSION + 1), "newer"),
    "bad version": (_set_meta("format_version", "one"), "format_version"),
    "other format": (_set_meta("format", "something-else"), "not a gmmkit model"),
    "no estimator": (_set_meta("estimator", None), "estimator"),
    "unknown class": (set_field(("estimator", "class"), "Popen"), "unknown estimator class"),
    "dotted class": (set_field(("estimator", "class"), "os.system"), "unknown estimator class"),
    "invalid param": (set_field(("estimator", "params", "n_components"), 0), "invalid parameters"),
    "unknown param": (set_field(("estimator", "params", "evil"), 1), "invalid parameters"),
    "k mismatch": (set_field(("estimator", "params", "n_components"), 4), "components"),
    "private attr": (set_field(("estimator", "attributes", "_params"), 1), "attribute name"),
    "property attr": (set_field(("estimator", "attributes", "params_"), 1), "attribute name"),
    "unknown tag": (set_field(("estimator", "attributes", "converged_"), {"__x__": 1}), "tag"),
    "weights sum": (_set_array("weights_", lambda w: w * 1.1), "sum to one"),
    "negative weight": (
        _set_array("weights_", lambda w: np.array([-0.1, w[1], w[2] + w[0] + 0.1])),
        "non-negative",
    ),
    "nan mean": (_set_array("means_", _with_nan), "NaN"),
    "wrong shape": (_set_array("means_", lambda m: m[:, :2].copy()), "shape"),
    # the stored arrays are checked against the named model's layout: (K, D) for EEI
    "other layout": (set_field(("estimator", "params", "covariance_type"), "EEI"), "shape"),
    "one-feature model": (set_field(("estimator", "params", "covariance_type"), "V"), "shape"),
    "unknown model": (set_field(("estimator", "params", "covariance_type"), "vvv"),
                      "invalid parameters"),
    "asymmetric": (_set_array("covariances_", _asymmetric), "symmetric"),
    "not pd": (_set_array("covariances_", _not_positive_definite), "positive definite"),
    "chol mismatch": (_set_array("precisions_cholesky_", _scaled), "do not match"),
    "chol lower": (
        _set_array("precisions_cholesky_", lambda u: u + np.tril(np.ones((3, 3)), -1)),
        "upper triangular",
    ),
    "int means": (_set_array("means_", lambda m: m.astype(np.int64)), "floating-point"),
}


@pytest.mark.parametrize("case", sorted(BAD_EDITS))
def test_invalid_content_is_rejected(tmp_path: Path, model_file: Path, case: str) -> None:
    edit, match = BAD_EDITS[case]
    _expect(tmp_path, model_file, edit, match)


def test_missing_and_extra_arrays(tmp_path: Path, model_file: Path) -> None:
    def drop(meta: dict, arrays: dict) -> None:
        del arrays[_key("weights_")]

    _expect(tmp_path, model_file, drop, "missing array")

    def extra(meta: dict, arrays: dict) -> None:
        arrays["estimator.attributes.extra"] = np.zeros(2)

    _expect(tmp_path, model_file, extra, "unreferenced")

    def undeclared(meta: dict, arrays: dict) -> None:
        arrays["stowaway"] = np.zeros(2)

    bad = _rewrite(model_file, tmp_path / "undeclared.gmm", undeclared, fix_checksums=False)
    with pytest.raises(ModelFileError, match="do not match the metadata"):
        gmmkit.load(bad)


def test_metadata_not_json(tmp_path: Path, model_file: Path) -> None:
    with np.load(model_file, allow_pickle=False) as archive:
        members = {key: archive[key] for key in archive.files}
    members["__gmmkit__"] = np.frombuffer(b"{not json", dtype=np.uint8)
    bad = tmp_path / "nojson.gmm"
    with open(bad, "wb") as handle:
        np.savez(handle, **members)
    with pytest.raises(ModelFileError, match="JSON"):
        gmmkit.load(bad)


# ----------------------------------------------------------------------------- other estimators
def test_anomaly_detector_round_trip(tmp_path: Path, data: np.ndarray) -> None:
    detector = gmmkit.AnomalyDetector(3, contamination=0.02, random_state=0).fit(data)
    path, loaded = _save_and_load(tmp_path, detector, "detector.gmm")
    assert loaded.offset_ == detector.offset_
    assert np.array_equal(loaded.decision_function(data), detector.decision_function(data))
    assert np.array_equal(loaded.predict(data), detector.predict(data))
    assert read_metadata(path)["summary"]["n_components"] == 3

    def bad_offset(meta: dict, arrays: dict) -> None:
        meta["estimator"]["attributes"]["offset_"] = {"__float__": "nan"}

    _expect(tmp_path, path, bad_offset, "offset_")


def test_selector_round_trip(tmp_path: Path, data: np.ndarray) -> None:
    selector = gmmkit.GaussianMixtureSelector(
        n_components=(2, 3, 4), covariance_types=("full", "diag"), random_state=0
    ).fit(data)
    _, loaded = _save_and_load(tmp_path, selector, "selector.gmm")
    assert loaded.n_components_ == selector.n_components_
    assert np.array_equal(loaded.predict_proba(data), selector.predict_proba(data))
    assert np.array_equal(loaded.score_samples(data), selector.score_samples(data))
    rows = loaded.selection_.rows
    assert len(rows) == 6
    for before, after in zip(selector.selection_.rows, rows):
        assert before == after
    assert loaded.selection_.criterion == "bic"
    best = selector.selection_.best
    assert np.array_equal(loaded.selection_.best.means_, best.means_)
    # mclust's view of the table survives too
    assert loaded.selection_.bic_table().equals(selector.selection_.bic_table())
    assert loaded.selection_.format_table() == selector.selection_.format_table()


def test_selection_over_mclust_models_round_trip(tmp_path: Path, data: np.ndarray) -> None:
    selector = gmmkit.GaussianMixtureSelector(
        n_components=(2, 3), covariance_types=("VEV", "EEI", "EVE"), random_state=0
    ).fit(data)
    _, loaded = _save_and_load(tmp_path, selector, "selector.gmm")
    assert loaded.covariance_type_ == selector.covariance_type_
    assert loaded.best_estimator_.covariance_type == selector.covariance_type_
    assert np.array_equal(loaded.score_samples(data), selector.score_samples(data))
    assert list(loaded.selection_.bic_table().columns) == ["EEI", "EVE", "VEV"]


def test_select_result_best_round_trip(tmp_path: Path, data: np.ndarray) -> None:
    result = gmmkit.select(data, n_components=[2, 3], covariance_types="full", random_state=0)
    path = tmp_path / "best.gmm"
    result.best.save(path)
    assert np.array_equal(gmmkit.load(path).predict(data), result.best.predict(data))


def test_semi_supervised_round_trip(tmp_path: Path, data: np.ndarray) -> None:
    partial = np.full(len(data), -1)
    partial[[0, 1, 300, 301, 600, 601]] = [0, 0, 1, 1, 2, 2]
    model = gmmkit.SemiSupervisedGaussianMixture(3, random_state=0).fit(data, partial)
    _, loaded = _save_and_load(tmp_path, model, "semi.gmm")
    assert np.array_equal(loaded.transduction_, model.transduction_)
    assert np.array_equal(loaded.predict_proba(data), model.predict_proba(data))


def test_generator_round_trip(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits().data[:600]
    generator = gmmkit.PCAGaussianMixtureGenerator(
        n_components=(2, 3), variance=0.9, random_state=0
    ).fit(digits)
    path = tmp_path / "generator.gmm"
    generator.save(path)
    loaded = gmmkit.load(path)
    assert type(loaded) is gmmkit.PCAGaussianMixtureGenerator
    assert np.array_equal(loaded.score_samples(digits), generator.score_samples(digits))
    assert np.array_equal(loaded.sample(20)[0], generator.sample(20)[0])
    assert read_metadata(path)["summary"]["n_features"] == 64
    assert len(loaded.selection_.rows) == 2

    def shrink(meta: dict, arrays: dict) -> None:
        arrays["estimator.attributes.components_"] = arrays[
            "estimator.attributes.components_"
        ][:-1].copy()

    _expect(tmp_path, path, shrink, "components_")

    def infinite(meta: dict, arrays: dict) -> None:
        arrays["estimator.attributes.data_max_"] = np.full(64, np.inf)

    _expect(tmp_path, path, infinite, "data_max_")


def test_compressed_and_deeply_nested_files(tmp_path: Path, model_file: Path) -> None:
    with np.load(model_file, allow_pickle=False) as archive:
        members = {key: archive[key] for key in archive.files}
    compressed = tmp_path / "compressed.gmm"
    with open(compressed, "wb") as handle:
        np.savez_compressed(handle, **members)
    with pytest.raises(ModelFileError, match="compressed"):
        gmmkit.load(compressed)

    text = members["__gmmkit__"].tobytes().decode()
    deep = "[" * 200_000 + "]" * 200_000
    members["__gmmkit__"] = np.frombuffer(
        text.replace('"converged_": true', f'"converged_": {deep}').encode(), dtype=np.uint8
    )
    nested = tmp_path / "nested.gmm"
    with open(nested, "wb") as handle:
        np.savez(handle, **members)
    with pytest.raises(ModelFileError):
        gmmkit.load(nested)


def test_training_size_is_recorded_for_every_input_kind(tmp_path: Path) -> None:
    """n_samples_fit_ and sample_weight_sum_ (what `gmmkit info` needs for BIC) from
    arrays, memory maps and torch tensors, with and without weights."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (100, 2)), rng.normal(5, 1, (100, 2))])
    weight = rng.integers(1, 4, len(X)).astype(float)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "w.npy", weight)
    inputs: list[tuple[Any, Any]] = [
        (X, None), (X, weight.tolist()),
        (np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "w.npy", mmap_mode="r")),
    ]
    torch = pytest.importorskip("torch")
    inputs.append((torch.as_tensor(X), torch.as_tensor(weight)))
    for data, w in inputs:
        model = GaussianMixture(2, random_state=0, max_iter=5).fit(data, sample_weight=w)
        assert model.n_samples_fit_ == len(X)
        expected = len(X) if w is None else weight.sum()
        assert model.sample_weight_sum_ == expected
