"""Hostile model files: crafted archives, metadata and arrays are refused quickly and
with short messages naming the field; save() refuses models load() would refuse."""

from __future__ import annotations

import copy
import json
import struct
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gmmkit
from _helpers import set_field
from gmmkit import GaussianMixture, ModelFileError
from gmmkit.core.covariance import MODEL_NAMES, cholesky_precision
from gmmkit.modelfile import (
    MAX_JSON_DEPTH,
    MAX_MEMBERS,
    MAX_METADATA_BYTES,
    MAX_STRING_LENGTH,
    _sha256,
)

MB = 2**20
#: Longest message a refusal may carry (besides the path of the file).
MESSAGE_LIMIT = 500


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0, 0.0, 1.0], [5.0, 1.0, -2.0, 0.0], [-4.0, 5.0, 1.0, 2.0]])
    return np.vstack([rng.normal(c, [1.0, 0.6, 1.8, 0.9], size=(80, 4)) for c in centres])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, data: np.ndarray) -> dict[str, Path]:
    """One saved model per estimator class (and per constrained covariance model)."""
    folder = tmp_path_factory.mktemp("models")
    partial = np.full(len(data), -1)
    partial[[0, 1, 80, 81, 160, 161]] = [0, 0, 1, 1, 2, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimators: dict[str, Any] = {
            "GaussianMixture": GaussianMixture(3, random_state=0, n_starts=1).fit(data),
            "SemiSupervisedGaussianMixture": gmmkit.SemiSupervisedGaussianMixture(
                3, random_state=0
            ).fit(data, partial),
            "AnomalyDetector": gmmkit.AnomalyDetector(3, random_state=0).fit(data),
            "GaussianMixtureSelector": gmmkit.GaussianMixtureSelector(
                n_components=(2, 3), covariance_types=("full", "EII"), random_state=0
            ).fit(data),
            "PCAGaussianMixtureGenerator": gmmkit.PCAGaussianMixtureGenerator(
                n_components=(1, 2), variance=0.9, random_state=0
            ).fit(data),
        }
        for model in MODEL_NAMES:
            estimators[model] = GaussianMixture(
                3, covariance_type=model, random_state=0, max_iter=30, n_starts=1
            ).fit(data)
    paths = {}
    for name, estimator in estimators.items():
        paths[name] = folder / f"{name}.gmm"
        estimator.save(paths[name])
    return paths


# ----------------------------------------------------------------------------- helpers
def _refused(path: Path, match: str) -> str:
    """load() raises ModelFileError matching ``match``, with a short message."""
    with pytest.raises(ModelFileError, match=match) as info:
        gmmkit.load(path)
    message = str(info.value).replace(str(path), "")
    assert len(message) < MESSAGE_LIMIT, message[:MESSAGE_LIMIT]
    return message


def _members(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return json.loads(arrays.pop("__gmmkit__").tobytes()), arrays


def _write(dst: Path, meta: Any, arrays: dict[str, np.ndarray], *, text: str | None = None) -> Path:
    """A model file (written as numpy.savez does) with consistent array checksums."""
    if isinstance(meta, dict):
        meta["arrays"] = {
            key: {"dtype": arr.dtype.str, "shape": list(arr.shape), "sha256": _sha256(arr)}
            for key, arr in arrays.items()
        }
    raw = np.frombuffer((json.dumps(meta) if text is None else text).encode(), dtype=np.uint8)
    with open(dst, "wb") as handle:
        np.savez(handle, __gmmkit__=raw, **arrays)
    return dst


#: Stands for JSON text spliced in after json.dumps (which cannot write 10000 levels).
DEEP = "@deep@"


def _craft(src: Path, dst: Path, edit: Callable[[dict, dict], Any], *, deep: int = 0) -> Path:
    """A copy of model file ``src`` edited by ``edit(metadata, arrays)``, checksums fixed;
    a value ``DEEP`` becomes ``deep`` nested JSON arrays."""
    meta, arrays = _members(src)
    edit(meta, arrays)
    if not deep:
        return _write(dst, meta, arrays)
    _write(dst, meta, arrays)  # fixes meta["arrays"]
    text = json.dumps(meta).replace(f'"{DEEP}"', "[" * deep + "1" + "]" * deep)
    return _write(dst, None, arrays, text=text)


ATTR = ("estimator", "attributes")
PARAM = ("estimator", "params")
NESTED_MIXTURE = (*ATTR, "mixture_", "__estimator__", "attributes")


def _npy_header(descr: str, shape: Any) -> bytes:
    """A version 1.0 ``.npy`` header declaring ``descr`` and ``shape`` (not checked)."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape})
    pad = -(10 + len(text) + 1) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def _local(name: bytes, data: bytes) -> bytes:
    """A stored member's local header."""
    crc = zlib.crc32(data)
    size = len(data)
    return (
        struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, size, size, len(name), 0)
        + name
    )


def _central(entries: list[dict[str, Any]], offset: int) -> bytes:
    """Central directory and end record for ``entries`` (name, offset, size, crc, ...)."""
    records = b""
    for e in entries:
        size = e["size"]
        records += struct.pack(
            "<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, e.get("method", 0), 0, 0x21,
            e["crc"], e.get("csize", size), size, len(e["name"]), 0, 0, 0, 0, 0, e["offset"],
        ) + e["name"]  # fmt: skip
    end = struct.pack(
        "<4s4H2IH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(records), offset, 0
    )
    return records + end


def _archive(
    members: list[tuple[str, bytes]], tweak: Callable[[list[dict[str, Any]]], None] | None = None
) -> bytes:
    """A ZIP of stored members written byte by byte; ``tweak`` edits the directory entries."""
    body = b""
    entries = []
    for name, data in members:
        raw_name = name.encode()
        entries.append(
            {"name": raw_name, "offset": len(body), "size": len(data), "crc": zlib.crc32(data)}
        )
        body += _local(raw_name, data) + data
    if tweak is not None:
        tweak(entries)
    return body + _central(entries, len(body))


def _raw_members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


# ----------------------------------------------------------------------------- the ZIP layout
def test_handmade_archive_of_a_model_loads(tmp_path: Path, files: dict[str, Path]) -> None:
    # the byte-level writer itself makes valid files: the cases below fail for their flaw
    path = tmp_path / "same.gmm"
    path.write_bytes(_archive(_raw_members(files["GaussianMixture"])))
    loaded = gmmkit.load(path)
    assert np.array_equal(loaded.means_, gmmkit.load(files["GaussianMixture"]).means_)


def _overlap_bomb(metadata: bytes, n_members: int, payload: int) -> bytes:
    """Stored members nested like Russian dolls: each one's data is a valid ``.npy`` header
    followed by the next member (local header and data); the innermost holds ``payload``
    bytes. Every member is a valid uint8 array, the file is about ``payload`` bytes, and
    reading every member reads about ``n_members * payload`` bytes."""
    names = [f"estimator.attributes.x{i}_.npy".encode() for i in range(n_members)]
    inner = b"\0" * payload
    data = _npy_header("|u1", (len(inner),)) + inner
    chunk = _local(names[-1], data) + data
    sizes = [(len(data), zlib.crc32(data))]
    prefixes = [30 + len(names[-1])]
    for name in reversed(names[:-1]):
        header = _npy_header("|u1", (len(chunk),))
        data = header + chunk
        chunk = _local(name, data) + data
        sizes.insert(0, (len(data), zlib.crc32(data)))
        prefixes.insert(0, 30 + len(name) + len(header))
    meta_name = b"__gmmkit__.npy"
    body = _local(meta_name, metadata) + metadata
    entries = [{"name": meta_name, "offset": 0, "size": len(metadata), "crc": zlib.crc32(metadata)}]
    offset = len(body)
    for name, (size, crc), prefix in zip(names, sizes, prefixes):
        entries.append({"name": name, "offset": offset, "size": size, "crc": crc})
        offset += prefix
    body += chunk
    return body + _central(entries, len(body))


def test_overlapping_members_bomb_fails_fast(tmp_path: Path, files: dict[str, Path]) -> None:
    metadata = dict(_raw_members(files["GaussianMixture"]))["__gmmkit__.npy"]
    path = tmp_path / "bomb.gmm"
    path.write_bytes(_overlap_bomb(metadata, n_members=200, payload=MB))
    size = path.stat().st_size
    with zipfile.ZipFile(path) as archive:  # zipfile itself sees no problem
        declared = sum(info.file_size for info in archive.infolist())
        assert declared > 100 * size
        assert archive.open(archive.infolist()[5]).read(16).startswith(b"\x93NUMPY")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        _refused(path, "more bytes than the file holds")
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * size, peak
    assert elapsed < 2.0, elapsed


def test_members_sharing_their_data(tmp_path: Path, files: dict[str, Path]) -> None:
    members = _raw_members(files["GaussianMixture"])

    def share(entries: list[dict[str, Any]]) -> None:
        # two directory entries for one local header and its data
        means = next(e for e in entries if e["name"].endswith(b"means_.npy"))
        weights = next(e for e in entries if e["name"].endswith(b"weights_.npy"))
        weights.update(offset=means["offset"], size=means["size"], crc=means["crc"])

    path = tmp_path / "shared.gmm"
    path.write_bytes(_archive(members, share))
    _refused(path, "overlap")


def test_member_stretching_over_the_next(tmp_path: Path, files: dict[str, Path]) -> None:
    members = _raw_members(files["GaussianMixture"])

    def stretch(entries: list[dict[str, Any]]) -> None:
        # the first array member also claims the next member's header and data
        first, second = entries[1], entries[2]
        first["size"] = second["offset"] + 30 + len(second["name"]) + second["size"]
        first["size"] -= first["offset"] + 30 + len(first["name"])

    path = tmp_path / "stretched.gmm"
    path.write_bytes(_archive(members, stretch))
    _refused(path, "overlap")


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("bigger than the file", "more bytes than the file holds"),
        ("sizes disagree", "declares"),
        ("deflated", "compressed"),
        ("into the directory", "past the end"),
        ("no local header", "local header"),
    ],
)
def test_bad_directory_entries(
    tmp_path: Path, files: dict[str, Path], case: str, match: str
) -> None:
    members = _raw_members(files["GaussianMixture"])

    def tweak(entries: list[dict[str, Any]]) -> None:
        last = entries[-1]
        if case == "bigger than the file":
            last["size"] = 2**31
        elif case == "sizes disagree":
            last["csize"] = last["size"] - 8
        elif case == "deflated":
            last["method"] = zipfile.ZIP_DEFLATED
        elif case == "into the directory":
            last["size"] += 40
        else:
            last["offset"] += 7

    path = tmp_path / "entries.gmm"
    path.write_bytes(_archive(members, tweak))
    _refused(path, match)


def test_too_many_members(tmp_path: Path, files: dict[str, Path]) -> None:
    members = _raw_members(files["GaussianMixture"])
    empty = _npy_header("<f8", (0,))
    members += [(f"estimator.attributes.x{i}_.npy", empty) for i in range(MAX_MEMBERS)]
    path = tmp_path / "many.gmm"
    path.write_bytes(_archive(members))
    _refused(path, f"at most {MAX_MEMBERS}")


def test_huge_metadata_member_is_refused_unread(tmp_path: Path) -> None:
    raw = _npy_header("|u1", (MAX_METADATA_BYTES + 1,)) + b" " * (MAX_METADATA_BYTES + 1)
    path = tmp_path / "big.gmm"
    path.write_bytes(_archive([("__gmmkit__.npy", raw)]))
    tracemalloc.start()
    try:
        _refused(path, "metadata is")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MB


# ----------------------------------------------------------------------------- .npy members
@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((-1,), "invalid shape"),
        ((-3, -5), "invalid shape"),
        ((10**12,), "declares shape"),
        ((2**62, 2**62), "declares shape"),
        ((2, 3), "declares shape"),  # 48 bytes declared, 24 stored
    ],
)
def test_npy_header_shapes(tmp_path: Path, files: dict[str, Path], shape: Any, match: str) -> None:
    members = _raw_members(files["GaussianMixture"])
    index = next(i for i, (name, _) in enumerate(members) if name.endswith("weights_.npy"))
    members[index] = (members[index][0], _npy_header("<f8", shape) + b"\0" * 24)
    path = tmp_path / "shape.gmm"
    path.write_bytes(_archive(members))
    message = _refused(path, match)
    assert "weights_" in message


@pytest.mark.parametrize(
    ("dtype", "match"),
    [
        (np.longdouble, "unsupported dtype"),
        (np.float16, "unsupported dtype"),
        (np.complex128, "unsupported dtype"),
        (np.dtype(">f8"), "unsupported dtype"),
        (object, "pickle"),
    ],
)
def test_array_dtypes_outside_the_allow_list(
    tmp_path: Path, files: dict[str, Path], dtype: Any, match: str
) -> None:
    if np.dtype(dtype) == np.float64:  # pragma: no cover - platforms without long double
        pytest.skip("long double is float64 here")

    def edit(meta: dict, arrays: dict) -> None:
        arrays["estimator.attributes.means_"] = arrays["estimator.attributes.means_"].astype(dtype)

    message = _refused(_craft(files["GaussianMixture"], tmp_path / "d.gmm", edit), match)
    assert "means_" in message


def test_allowed_integer_and_float32_arrays_load(tmp_path: Path, files: dict[str, Path]) -> None:
    def edit(meta: dict, arrays: dict) -> None:
        key = "estimator.attributes.transduction_"
        arrays[key] = arrays[key].astype(np.uint16)

    loaded = gmmkit.load(_craft(files["SemiSupervisedGaussianMixture"], tmp_path / "u.gmm", edit))
    assert loaded.transduction_.dtype == np.uint16


# ----------------------------------------------------------------------------- metadata limits
@pytest.mark.parametrize(
    ("path", "levels", "match"),
    [
        ((*ATTR, "lower_bounds_"), 10_000, "nested more than"),
        ((*ATTR, "converged_"), 90_000, "nested more than"),
        ((*PARAM, "means_init"), MAX_JSON_DEPTH, "nested more than"),
        (("summary", "feature_names"), 500, "nested more than"),
        (("summary", "feature_names"), 20, r"summary\.feature_names"),
    ],
)
def test_deep_nesting(
    tmp_path: Path, files: dict[str, Path], path: tuple[str, ...], levels: int, match: str
) -> None:
    bad = _craft(files["GaussianMixture"], tmp_path / "deep.gmm", set_field(path, DEEP),
                 deep=levels)
    _refused(bad, match)


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ((*PARAM, "n_components"), 10**400, "integer too large"),
        ((*ATTR, "n_iter_"), -(10**30), "integer too large"),
        ((*PARAM, "covariance_type"), "V" * MB, "string of"),
        (("estimator", "class"), "G" * MB, "string of"),
        (("gmmkit_version",), "1" * MB, "string of"),
        ((*ATTR, "x" * MB + "_"), 1, "key of"),
        ((*ATTR, "converged_"), {"__x" * (MB // 3): 1}, "key of"),
        (("summary", "feature_names"), ["f" * MB, "b", "c", "d"], "string of"),
        ((*PARAM, "tol"), float("inf"), "JSON constant Infinity"),
    ],
)
def test_metadata_limits(
    tmp_path: Path, files: dict[str, Path], path: tuple[str, ...], value: Any, match: str
) -> None:
    bad = _craft(files["GaussianMixture"], tmp_path / "limits.gmm", set_field(path, value))
    _refused(bad, match)


def test_json_constants_and_digits(tmp_path: Path, files: dict[str, Path]) -> None:
    meta, arrays = _members(files["GaussianMixture"])
    _write(tmp_path / "x.gmm", meta, arrays)  # fixes the checksums in meta
    text = json.dumps(meta)
    for old, new, match in [
        ('"tol": null', '"tol": NaN', "constant NaN"),
        ('"tol": null', '"tol": Infinity', "constant Infinity"),
        ('"tol": null', '"tol": 1e999', "out of range"),
        ('"n_init": 1', '"n_init": ' + "9" * 5000, "not valid JSON"),
    ]:
        assert old in text
        bad = _write(tmp_path / "c.gmm", None, arrays, text=text.replace(old, new))
        _refused(bad, match)


def test_many_containers_are_refused_before_parsing(tmp_path: Path, files: dict[str, Path]) -> None:
    meta, arrays = _members(files["GaussianMixture"])
    meta["estimator"]["attributes"]["lower_bounds_"] = [[]] * 200_000
    _refused(_write(tmp_path / "c.gmm", meta, arrays), "JSON arrays/objects")


def test_long_values_under_the_limit_give_short_messages(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    long = "z" * (MAX_STRING_LENGTH - 1)
    for path, value, match in [
        ((*PARAM, "covariance_type"), long, "invalid parameters"),
        ((*PARAM, long), 1, "unknown parameter"),
        (("estimator", "class"), long, "unknown estimator class"),
        ((*ATTR, long + "_"), 1, "invalid attribute name"),
        ((*ATTR, "converged_"), {long: 1}, "unknown value tag"),
        ((*ATTR, "converged_"), long, "converged_ must be true or false"),
        ((*ATTR, "means_"), {"__array__": long}, "missing array"),
        ((*ATTR, "converged_"), {"__float__": long}, "bad float"),
        (("summary", "covariance_type"), long, "summary.covariance_type"),
    ]:
        bad = _craft(files["GaussianMixture"], tmp_path / "long.gmm", set_field(path, value))
        _refused(bad, match)


def test_unknown_top_level_field(tmp_path: Path, files: dict[str, Path]) -> None:
    bad = _craft(files["GaussianMixture"], tmp_path / "u.gmm", set_field(("extra",), 1))
    _refused(bad, "unknown fields 'extra'")


# ----------------------------------------------------------------------------- attribute schema
def _relocated_estimator(src: Path, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The estimator described in ``src`` with its arrays renamed to live under ``prefix``."""
    meta, arrays = _members(src)
    text = json.dumps(meta["estimator"]).replace('"estimator.', f'"{prefix}.')
    return json.loads(text), {
        k.replace("estimator.", f"{prefix}.", 1): v for k, v in arrays.items()
    }


WRONG_TYPES: dict[str, list[tuple[tuple[str, ...], Any, str]]] = {
    "GaussianMixture": [
        ((*ATTR, "converged_"), "yes", "converged_ must be true or false"),
        ((*ATTR, "converged_"), 1, "converged_ must be true or false"),
        ((*ATTR, "n_iter_"), [3], "n_iter_ must be an integer"),
        ((*ATTR, "n_iter_"), -1, "n_iter_ must be an integer >= 0"),
        ((*ATTR, "n_iter_"), True, "n_iter_ must be an integer"),
        ((*ATTR, "n_iter_"), 2.5, "n_iter_ must be an integer"),
        ((*ATTR, "lower_bound_"), "high", "lower_bound_ must be a finite number or -inf"),
        ((*ATTR, "lower_bound_"), {"__float__": "nan"}, "lower_bound_ must be"),
        ((*ATTR, "lower_bound_"), {"__float__": "inf"}, "lower_bound_ must be"),
        ((*ATTR, "lower_bounds_"), 5, "lower_bounds_ must be a list"),
        ((*ATTR, "lower_bounds_"), [1.0, "x"], r"lower_bounds_\.1 must be"),
        ((*ATTR, "reseeded_"), [[1, 2]], r"reseeded_\.0 must be a tuple"),
        ((*ATTR, "reseeded_"), [{"__tuple__": [1, 2, 3]}], r"reseeded_\.0 must be a tuple of 2"),
        ((*ATTR, "reseeded_"), [{"__tuple__": [1, 7]}], "reseeded_ names component 7"),
        ((*ATTR, "weights_"), "hello", "floating-point array 'estimator.attributes.weights_'"),
        ((*ATTR, "means_"), [[0.0, 1.0, 2.0, 3.0]] * 3, "means_"),
        ((*ATTR, "n_features_in_"), 4.0, "n_features_in_ must be an integer"),
        ((*ATTR, "n_samples_fit_"), 0, "n_samples_fit_ must be an integer >= 1"),
        ((*ATTR, "n_samples_fit_"), 2.5, "n_samples_fit_ must be an integer"),
        ((*ATTR, "sample_weight_sum_"), -1.0, "sample_weight_sum_ must be a finite number >= 0"),
        ((*ATTR, "sample_weight_sum_"), {"__float__": "inf"}, "sample_weight_sum_ must be"),
        ((*ATTR, "n_features_in_"), 5, "n_features_in_ is 5"),
        ((*ATTR, "feature_names_in_"), ["a", "b", "c", "d"], "feature_names_in_ must be"),
        ((*ATTR, "feature_names_in_"), {"__strarray__": ["a"]}, "feature_names_in_ has 1"),
        ((*ATTR, "mixture_"), "hello", "a GaussianMixture has no such fitted attribute"),
        ((*ATTR, "extra_"), 1, "invalid attribute name 'extra_'"),
        ((*PARAM, "means_init"), [["a"]], "means_init must be a finite numeric array"),
        ((*PARAM, "weights_init"), {"__float__": "nan"}, "weights_init"),
        ((*PARAM, "reg_covar"), {"__float__": "nan"}, "invalid parameters"),
        ((*PARAM, "n_components"), [3], "invalid parameters"),
    ],
    "SemiSupervisedGaussianMixture": [
        ((*ATTR, "classes_"), {"__strarray__": ["a", "b"]}, "classes_ has 2 entries"),
        ((*ATTR, "classes_"), {"__strarray__": ["a", "b", "a"]}, "label twice"),
        ((*ATTR, "classes_"), {"__strarray__": ["a", "b", "c"]}, "not in classes_"),
        ((*ATTR, "transduction_"), 3, "transduction_ must be an array of class labels"),
        ((*ATTR, "classes_"), None, "classes_ must be an array of class labels"),
    ],
    "AnomalyDetector": [
        ((*ATTR, "mixture_"), "hello", "mixture_ must be a GaussianMixture"),
        ((*ATTR, "mixture_"), [1, 2], "mixture_ must be a GaussianMixture"),
        ((*ATTR, "offset_"), "low", "offset_ must be a finite number"),
        ((*ATTR, "offset_"), {"__float__": "-inf"}, "offset_ must be a finite number"),
        ((*ATTR, "n_iter_"), 999, "n_iter_ is 999 but the mixture says"),
        ((*ATTR, "n_features_in_"), 7, "n_features_in_ is 7"),
        ((*NESTED_MIXTURE, "n_iter_"), "7", r"mixture_\.attributes\.n_iter_ must be an integer"),
        ((*ATTR, "classes_"), 1, "an AnomalyDetector has no such|invalid attribute name"),
    ],
    "GaussianMixtureSelector": [
        ((*ATTR, "best_estimator_"), "hello", "best_estimator_ must be a GaussianMixture"),
        ((*ATTR, "n_components_"), "3", "n_components_ must be an integer"),
        ((*ATTR, "n_components_"), 9, "n_components_ is 9 but the mixture says"),
        ((*ATTR, "covariance_type_"), "XYZ", "covariance_type_ must be one of"),
        ((*ATTR, "selection_"), [], "selection_ must be a model-selection result"),
        ((*ATTR, "selection_", "__selection__", "criterion"), "best", "criterion must be one"),
        ((*PARAM, "n_components"), "abc", "n_components must be an int"),
        ((*PARAM, "n_components"), {"__range__": [1, 10**15, 1]}, "range of"),
        ((*PARAM, "n_components"), {"__tuple__": [2, 0]}, r"n_components\.1 must be an integer"),
        ((*PARAM, "criterion"), "xyz", "criterion must be one of"),
        ((*PARAM, "covariance_types"), {"__tuple__": ["full", "vvv"]}, "covariance_types"),
        ((*PARAM, "random_state"), -5, "random_state must be an integer >= 0"),
        ((*PARAM, "min_component_size"), {"__float__": "inf"}, "min_component_size"),
    ],
    "PCAGaussianMixtureGenerator": [
        ((*ATTR, "n_pca_components_"), True, "n_pca_components_ must be an integer"),
        ((*ATTR, "mixture_"), "hello", "mixture_ must be a GaussianMixture"),
        ((*ATTR, "selection_"), "none", "selection_ must be a model-selection result"),
        ((*ATTR, "scale_"), [1.0], "floating-point array 'estimator.attributes.scale_'"),
        ((*ATTR, "n_iter_"), 12345, "n_iter_ is 12345"),
        ((*PARAM, "whiten"), "no", "whiten must be true or false"),
        ((*PARAM, "covariance_type"), "diagonal", "covariance_type must be one of"),
    ],
}


@pytest.mark.parametrize(
    ("cls", "index"),
    [(cls, i) for cls, cases in WRONG_TYPES.items() for i in range(len(cases))],
)
def test_wrong_attribute_and_parameter_types(
    tmp_path: Path, files: dict[str, Path], cls: str, index: int
) -> None:
    path, value, match = WRONG_TYPES[cls][index]
    edit = set_field(path, value)

    def edit_and_drop_unused(meta: dict, arrays: dict) -> None:
        edit(meta, arrays)
        text = json.dumps(meta["estimator"])
        for key in list(arrays):  # an array replaced by the edit is no longer referenced
            if f'"{key}"' not in text:
                del arrays[key]

    _refused(_craft(files[cls], tmp_path / "typed.gmm", edit_and_drop_unused), match)


def test_nested_estimator_of_the_wrong_class(tmp_path: Path, files: dict[str, Path]) -> None:
    prefix = "estimator.attributes.mixture_"
    other, other_arrays = _relocated_estimator(files["SemiSupervisedGaussianMixture"], prefix)

    def swap(meta: dict, arrays: dict) -> None:
        meta["estimator"]["attributes"]["mixture_"] = {"__estimator__": other}
        for key in [k for k in arrays if k.startswith(prefix)]:
            del arrays[key]
        arrays.update(other_arrays)

    _refused(
        _craft(files["AnomalyDetector"], tmp_path / "swap.gmm", swap),
        "mixture_ must be a GaussianMixture, got 'SemiSupervisedGaussianMixture'",
    )
    # the same relocation with the right class loads: the refusal is for the class
    same, same_arrays = _relocated_estimator(files["GaussianMixture"], prefix)

    def keep(meta: dict, arrays: dict) -> None:
        meta["estimator"]["attributes"]["mixture_"] = {"__estimator__": same}
        meta["estimator"]["attributes"]["n_iter_"] = same["attributes"]["n_iter_"]
        meta["estimator"]["attributes"]["converged_"] = same["attributes"]["converged_"]
        for key in [k for k in arrays if k.startswith(prefix)]:
            del arrays[key]
        arrays.update(same_arrays)

    assert isinstance(
        gmmkit.load(_craft(files["AnomalyDetector"], tmp_path / "keep.gmm", keep)).mixture_,
        GaussianMixture,
    )


def test_required_attribute_missing(tmp_path: Path, files: dict[str, Path]) -> None:
    def drop(meta: dict, arrays: dict) -> None:
        del meta["estimator"]["attributes"]["offset_"]

    _refused(
        _craft(files["AnomalyDetector"], tmp_path / "m.gmm", drop), "needs the attribute 'offset_'"
    )


def test_selection_rows(tmp_path: Path, files: dict[str, Path]) -> None:
    rows = (*ATTR, "selection_", "__selection__", "rows")
    meta, _ = _members(files["GaussianMixtureSelector"])
    table = meta["estimator"]["attributes"]["selection_"]["__selection__"]["rows"]
    two_best = copy.deepcopy(table)
    for row in two_best:
        row["__dict__"]["best"] = True
    missing_column = copy.deepcopy(table)
    del missing_column[0]["__dict__"]["bic"]
    bad_value = copy.deepcopy(table)
    bad_value[1]["__dict__"]["n_parameters"] = "many"
    for value, match in [
        (two_best, "must mark the best model's row, and only it"),
        (missing_column, r"rows\.0 must be a table row"),
        (bad_value, r"rows\.1\.n_parameters must be an integer"),
        ("rows", "rows must be a list"),
    ]:
        bad = _craft(files["GaussianMixtureSelector"], tmp_path / "r.gmm", set_field(rows, value))
        _refused(bad, match)


def test_selection_best_must_be_the_estimator(tmp_path: Path, files: dict[str, Path]) -> None:
    def shift(meta: dict, arrays: dict) -> None:
        key = "estimator.attributes.selection_.best.attributes.means_"
        arrays[key] = arrays[key] + 1.0

    _refused(
        _craft(files["GaussianMixtureSelector"], tmp_path / "s.gmm", shift),
        "selection_.best is not the estimator's mixture",
    )


def test_summary_must_agree_with_the_model(tmp_path: Path, files: dict[str, Path]) -> None:
    for key, value in [
        ("n_components", 7),
        ("covariance_type", "diag"),
        ("dtype", "float32"),
        ("feature_names", ["a", "b"]),
        ("feature_names", "abcd"),
        ("n_features", None),
    ]:
        bad = _craft(files["GaussianMixture"], tmp_path / "s.gmm",
                     set_field(("summary", key), value))
        _refused(bad, f"summary.{key}")


def test_array_referred_to_from_another_field(tmp_path: Path, files: dict[str, Path]) -> None:
    def alias(meta: dict, arrays: dict) -> None:
        meta["estimator"]["params"]["means_init"] = {"__array__": "estimator.attributes.means_"}

    _refused(_craft(files["GaussianMixture"], tmp_path / "a.gmm", alias), "means_init refers to")


# ----------------------------------------------------------------------------- covariance models
def _break_constraints(covariances: np.ndarray) -> np.ndarray:
    """Stretch the first component along the first axis: its volume, shape and orientation
    change (still symmetric positive definite)."""
    covs = covariances.copy()
    stretch = np.diag([1.3, 1.0, 1.0, 1.0])
    if covs.ndim == 1:  # spherical (K,)
        covs[0] *= 1.3
    elif covs.shape == (4, 4):  # tied: the one matrix
        covs = stretch @ covs @ stretch
    elif covs.ndim == 2:  # diagonal (K, D)
        covs[0, 0] *= 1.3
    else:  # full (K, D, D)
        covs[0] = stretch @ covs[0] @ stretch
    return covs


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_covariance_model_constraints(tmp_path: Path, files: dict[str, Path], model: str) -> None:
    def tamper(meta: dict, arrays: dict) -> None:
        covs = _break_constraints(arrays["estimator.attributes.covariances_"])
        arrays["estimator.attributes.covariances_"] = covs
        arrays["estimator.attributes.precisions_cholesky_"] = cholesky_precision(covs, model)

    # checksums and metadata agree with the tampered arrays: only the model is wrong
    path = _craft(files[model], tmp_path / f"{model}.gmm", tamper)
    if model in ("VII", "VVI", "VVV", "EEE"):  # no constraint between components
        gmmkit.load(path)
    else:
        _refused(path, f"do not satisfy the constraints of covariance_type '{model}'")


def test_equal_variance_model_with_unequal_variances(tmp_path: Path, data: np.ndarray) -> None:
    model = GaussianMixture(2, covariance_type="EII", random_state=0, n_starts=1).fit(data)
    path = tmp_path / "eii.gmm"
    model.save(path)

    def unequal(meta: dict, arrays: dict) -> None:
        arrays["estimator.attributes.covariances_"] = np.array([1.0, 1.5])
        arrays["estimator.attributes.precisions_cholesky_"] = 1 / np.sqrt([1.0, 1.5])

    _refused(_craft(path, tmp_path / "bad.gmm", unequal), r"'EII' \(EII: Equal volume, spherical\)")

    def nearly(meta: dict, arrays: dict) -> None:  # within the relative tolerance
        arrays["estimator.attributes.covariances_"] = np.array([1.0, 1.0 + 1e-9])
        arrays["estimator.attributes.precisions_cholesky_"] = 1 / np.sqrt([1.0, 1.0 + 1e-9])

    assert gmmkit.load(_craft(path, tmp_path / "ok.gmm", nearly)).covariance_type == "EII"


def test_tied_model_holds_one_matrix(tmp_path: Path, files: dict[str, Path]) -> None:
    def per_component(meta: dict, arrays: dict) -> None:
        for name in ("covariances_", "precisions_cholesky_"):
            key = f"estimator.attributes.{name}"
            arrays[key] = np.stack([arrays[key]] * 3)

    _refused(_craft(files["EEE"], tmp_path / "t.gmm", per_component), r"should have shape \(4, 4\)")


# ----------------------------------------------------------------------------- save() refuses
def _save_refused(estimator: Any, path: Path, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        estimator.save(path)
    assert len(str(info.value)) < MESSAGE_LIMIT
    assert not path.exists()
    assert list(path.parent.iterdir()) == []  # no temporary file left behind


def _fitted(data: np.ndarray, **kwargs: Any) -> GaussianMixture:
    return GaussianMixture(3, random_state=0, max_iter=20, n_starts=1, **kwargs).fit(data)


def test_save_refuses_parameters_disagreeing_with_the_fit(tmp_path: Path, data: np.ndarray) -> None:
    model = _fitted(data, warm_start=True)
    model.set_params(n_components=5)
    _save_refused(model, tmp_path / "m.gmm", "model has 3 components but n_components is 5")
    model.set_params(n_components=3)
    model.save(tmp_path / "m.gmm")  # once consistent again, it saves
    assert gmmkit.load(tmp_path / "m.gmm").n_components == 3


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: setattr(m, "means_", m.means_.astype(np.float16)), "unsupported dtype"),
        (lambda m: setattr(m, "n_iter_", -1), "n_iter_ must be an integer >= 0"),
        (lambda m: setattr(m, "converged_", "yes"), "converged_ must be true or false"),
        (lambda m: setattr(m, "extra_", 1), "invalid attribute name 'extra_'"),
        (lambda m: m.means_.__setitem__((0, 0), np.nan), "NaN"),
        (lambda m: setattr(m, "weights_", m.weights_ * 2), "sum to one"),
        (lambda m: setattr(m, "lower_bounds_", ["x" * MB]), "string of"),
        (lambda m: setattr(m, "n_features_in_", 10**400), "integer too large"),
        (lambda m: m.set_params(covariance_type="diag"), "shape"),
    ],
)
def test_save_refuses_inconsistent_models(
    tmp_path: Path, data: np.ndarray, change: Callable[[Any], Any], match: str
) -> None:
    model = _fitted(data)
    change(model)
    _save_refused(model, tmp_path / "m.gmm", match)


def test_save_refuses_broken_covariance_constraints(tmp_path: Path, data: np.ndarray) -> None:
    model = _fitted(data, covariance_type="VEV")
    covs = _break_constraints(model.covariances_)
    model.covariances_ = covs
    model.precisions_cholesky_ = cholesky_precision(covs, "VEV")
    _save_refused(model, tmp_path / "m.gmm", "constraints of covariance_type 'VEV'")


def test_save_refuses_wrapped_values_of_the_wrong_type(tmp_path: Path, data: np.ndarray) -> None:
    detector = gmmkit.AnomalyDetector(2, random_state=0, max_iter=20).fit(data)
    detector.mixture_ = "hello"
    _save_refused(detector, tmp_path / "d.gmm", "mixture_ must be a GaussianMixture")
    detector = gmmkit.AnomalyDetector(2, random_state=0, max_iter=20).fit(data)
    detector.offset_ = float("nan")
    _save_refused(detector, tmp_path / "d.gmm", "offset_ must be a finite number")


def test_save_keeps_an_existing_file_when_refusing(tmp_path: Path, data: np.ndarray) -> None:
    path = tmp_path / "m.gmm"
    model = _fitted(data)
    model.save(path)
    before = path.read_bytes()
    model.n_iter_ = -1
    with pytest.raises(ValueError, match="n_iter_"):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.gmm"]
