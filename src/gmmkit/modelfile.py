"""Safe model files: save and load fitted gmmkit estimators without pickle.

File format ``gmmkit-model``, version 1
=======================================

A model file (conventional extension ``.gmm``) is an uncompressed ZIP archive laid out
as :func:`numpy.savez` writes it (so :func:`numpy.load` reads it), every member a ``.npy``
file, with fixed member timestamps so the same model always gives the same bytes.

``__gmmkit__.npy``
    A 1-D ``uint8`` array holding UTF-8 JSON, the *metadata* (below).
``<name>.npy``
    One numeric array (a dtype from the allow-list below) per entry of
    ``metadata["arrays"]``, named by the dotted path of the one field that refers to it,
    such as ``estimator.attributes.means_``.

The metadata object has these keys:

``format``
    Always ``"gmmkit-model"``.
``format_version``
    Integer, currently ``1``. A reader refuses files with a newer version.
``gmmkit_version``
    Version of gmmkit that wrote the file (informative).
``estimator``
    The estimator, an object ``{"class": name, "params": {...}, "attributes": {...}}``.
    ``class`` must be one of a fixed allow-list of gmmkit classes (``GaussianMixture``,
    ``SemiSupervisedGaussianMixture``, ``AnomalyDetector``, ...); it is looked up by name
    in that list, never imported from the file. ``params`` are the constructor parameters
    (``get_params(deep=False)``), ``attributes`` the public fitted attributes (names ending
    in ``_``).
``arrays``
    ``{name: {"dtype": str, "shape": [int, ...], "sha256": hex}}`` for every array member;
    the SHA-256 is of the array's C-ordered bytes.
``summary``
    Redundant facts for people and tools: ``covariance_type``, ``n_components``,
    ``n_features``, ``dtype`` and ``feature_names`` (a list of strings or ``null``).

Values inside ``params`` and ``attributes`` are plain JSON (null, booleans, integers,
finite floats, strings, lists) or one of these tagged objects:

* ``{"__array__": name}`` -- the numeric array member ``name``;
* ``{"__float__": "nan" | "inf" | "-inf"}`` -- a non-finite float;
* ``{"__tuple__": [...]}``, ``{"__range__": [start, stop, step]}``,
  ``{"__dict__": {...}}`` (string keys);
* ``{"__strarray__": [...]}`` -- a 1-D array of strings (such as ``feature_names_in_``);
* ``{"__estimator__": {...}}`` -- a nested estimator, same layout as ``estimator``;
* ``{"__selection__": {"criterion": str, "rows": [...], "best": {"__estimator__": ...}}}``
  -- a model-selection result (:class:`gmmkit.apps.selection.SelectionResult`): its table
  rows and best model; the other candidates' fitted models are not stored, so after
  loading its ``models`` holds the best one only.

Floats are written with Python's shortest round-trip representation and arrays byte for
byte, so a loaded model gives bit-identical predictions.

Loading never executes anything from the file, and never costs memory or time out of
proportion to the file's size. A reader (this one does) checks, and refuses with
:class:`ModelFileError` (a :class:`ValueError`) whatever fails:

*The archive*, before any member is read: at most :data:`MAX_MEMBERS` (1024) members,
each stored (``ZIP_STORED``, unencrypted) with equal declared and stored sizes, named
``*.npy`` and named once; the declared sizes sum to at most the file's size; each
member's local header (30 bytes + name + extra field, at its directory offset) and data
lie inside the file, before the central directory; and no two members' byte ranges
overlap (which :mod:`zipfile` does not check: overlapping members would let a small file
be read many times over).

*Each member*, from its ``.npy`` header (format 1.0 or 2.0, header at most
:data:`MAX_NPY_HEADER` bytes) before its data is read: a dtype from the allow-list --
``bool``, ``int8``..``int64``, ``uint8``..``uint64``, ``float32``, ``float64``,
little-endian or native (no objects/pickles, ``float16``, long double, complex or
structured dtypes) -- a shape of non-negative integers whose product times the item size
is exactly the member's data size; the metadata member holds at most
:data:`MAX_METADATA_BYTES` (16 MiB). Arrays are read with their CRC checked, never with
pickle.

*The metadata*: valid UTF-8 JSON without ``NaN``/``Infinity`` constants, at most
:data:`MAX_JSON_CONTAINERS` (100 000) ``[``/``{`` characters (counted before parsing),
nested at most :data:`MAX_JSON_DEPTH` (64) levels, strings and keys at most
:data:`MAX_STRING_LENGTH` (65 536) characters, integers within +-(2**63 - 1), finite
numbers, ``range`` values of at most :data:`MAX_RANGE_LENGTH` elements; only the keys
listed above; every array member declared with its dtype, shape and checksum, and
referred to exactly once, from the field it is named after.

*The estimator*, against a schema per class (``_SCHEMAS``: the fitted attributes each
class documents and really has). Parameters go through the class's own scikit-learn
``_parameter_constraints`` where it has them, and through the schema's checks
(``n_components``, ``criterion``, ``random_state``, initial arrays ...). Attributes must
be names the class has (any other is refused), of the right type: floating-point arrays
of the right dimension with finite values (``weights_``, ``means_``, ``mean_`` ...),
class labels (``classes_``, ``transduction_``: numeric or string arrays), non-negative
integers (``n_iter_``) and positive ones (``n_features_in_``, ``n_components_``,
``n_samples_fit_``), booleans (``converged_``), finite floats (``offset_``,
``sample_weight_sum_`` non-negative; ``lower_bound_`` may be
``-inf``), lists of pairs (``reseeded_``), string arrays (``feature_names_in_``),
nested estimators of the right class (``mixture_`` and ``best_estimator_`` are
``GaussianMixture``), model-selection results whose rows have the table's columns and
one best row (the best model's). Required attributes must be present. Then the
content: weights non-negative and summing to one; shapes agreeing with each other and
with the covariance model's layout; covariances symmetric and positive definite *and
satisfying their covariance model's constraints* (equal volumes, shapes or orientations
across components; checked with the model's own M-step projection, which must leave
them unchanged within a relative tolerance of :data:`CONSTRAINT_RTOL`, 1e-6); precision
Cholesky factors inverting the covariances; ``n_components``, ``n_features_in_``,
``feature_names_in_``, ``n_components_``, ``covariance_type_``, ``n_iter_`` and
``converged_`` agreeing with the fitted mixture; a selector's or generator's
``selection_.best`` being its mixture; and the ``summary`` being exactly what the model
implies.

Error messages quote at most about 80 characters of anything read from the file, so a
hostile file cannot make a huge message. Classes added with :func:`register_estimator`
have no schema: their attributes get the generic checks only.

:func:`save` runs the same checks, on exactly what it is about to write, before writing
anything: a model that :func:`load` would refuse (its parameters disagreeing with its
fitted attributes, say) is never saved; the error names the field.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import os
import struct
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit._atomic import atomic_write

FORMAT_NAME = "gmmkit-model"
FORMAT_VERSION = 1
_META_MEMBER = "__gmmkit__"

#: Classes a model file may name, and where they live. Nothing else is ever instantiated.
_ALLOWED_CLASSES: dict[str, str] = {
    "GaussianMixture": "gmmkit.mixture",
    "SemiSupervisedGaussianMixture": "gmmkit.apps.semisupervised",
    "AnomalyDetector": "gmmkit.apps.anomaly",
    "GaussianMixtureSelector": "gmmkit.apps.selection",
    "PCAGaussianMixtureGenerator": "gmmkit.apps.generation",
}

#: Fitted attributes recomputed on load instead of stored.
_DERIVED_ATTRIBUTES = {"precisions_"}

_PICKLE_MAGIC = b"\x80"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"

PathLike = str | os.PathLike[str]


class ModelFileError(ValueError):
    """A model file is missing pieces, corrupt, truncated, foreign, pickled or invalid."""


def register_estimator(name: str, module: str) -> None:
    """Allow model files to name the class ``name`` defined in ``module`` (a gmmkit module).

    Only gmmkit modules are accepted, so a file can never make gmmkit import other code.
    Such a class has no schema: its parameters and attributes get the format's generic
    checks only (limits, array dtypes, finite floating-point arrays).
    """
    if not module.startswith("gmmkit."):
        raise ValueError(f"only gmmkit classes can be registered, got module {module!r}")
    _ALLOWED_CLASSES[name] = module


class SaveMixin:
    """Adds ``save(path)`` to an estimator (see :mod:`gmmkit.modelfile` for the format)."""

    def save(self, path: PathLike, *, feature_names: Sequence[str] | None = None) -> None:
        """Write the fitted estimator to ``path`` in the safe ``gmmkit-model`` format.

        Parameters
        ----------
        path : str or path-like
            Destination file (conventionally ``*.gmm``); replaced atomically.
        feature_names : sequence of str of length n_features, optional
            Column names to record when the estimator was fitted on a plain array.
        """
        save(self, path, feature_names=feature_names)


# ---------------------------------------------------------------------------- encoding
def _allowed_class(name: str) -> type:
    if not isinstance(name, str) or name not in _ALLOWED_CLASSES:
        raise ModelFileError(f"unknown estimator class {_short(name)} in model file")
    import importlib

    module = importlib.import_module(_ALLOWED_CLASSES[name])
    return getattr(module, name)


def _class_name(estimator: Any) -> str:
    name = type(estimator).__name__
    module = _ALLOWED_CLASSES.get(name)
    if module is None or not type(estimator).__module__.startswith("gmmkit"):
        raise TypeError(
            f"cannot save {type(estimator).__module__}.{name}: only gmmkit estimators "
            f"({', '.join(sorted(_ALLOWED_CLASSES))}) can be saved"
        )
    return name


def _encode(value: Any, name: str, arrays: dict[str, NDArray[Any]]) -> Any:
    from sklearn.base import BaseEstimator

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isfinite(value):
            return value
        return {"__float__": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{name}.{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{name}.{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, range):
        return {"__range__": [value.start, value.stop, value.step]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"cannot save {name}: dictionary keys must be strings")
        return {"__dict__": {k: _encode(v, f"{name}.{k}", arrays) for k, v in value.items()}}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            arrays[name] = np.ascontiguousarray(value)
            return {"__array__": name}
        if value.ndim == 1 and all(isinstance(v, str) for v in value.tolist()):
            return {"__strarray__": [str(v) for v in value.tolist()]}
        raise TypeError(f"cannot save {name}: arrays of dtype {value.dtype} are not supported")
    if isinstance(value, BaseEstimator):
        return {"__estimator__": _describe(value, name, arrays)}
    if type(value).__name__ == "SelectionResult" and type(value).__module__.startswith("gmmkit"):
        return {
            "__selection__": {
                "criterion": value.criterion,
                "rows": _encode(list(value.rows), f"{name}.rows", arrays),
                "best": _encode(value.best, f"{name}.best", arrays),
            }
        }
    if isinstance(value, (np.random.RandomState, np.random.Generator)):
        # A random generator's state is not a parameter worth persisting; the loaded
        # model gets a fresh one (random_state=None).
        return None
    raise TypeError(f"cannot save {name}: values of type {type(value).__name__} are not supported")


def _fitted_attributes(estimator: Any) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(estimator).items()
        if key.endswith("_") and not key.startswith("_") and key not in _DERIVED_ATTRIBUTES
    }


def _describe(estimator: Any, prefix: str, arrays: dict[str, NDArray[Any]]) -> dict[str, Any]:
    name = _class_name(estimator)
    params = estimator.get_params(deep=False)
    return {
        "class": name,
        "params": {k: _encode(v, f"{prefix}.params.{k}", arrays) for k, v in params.items()},
        "attributes": {
            k: _encode(v, f"{prefix}.attributes.{k}", arrays)
            for k, v in _fitted_attributes(estimator).items()
        },
    }


def _sha256(array: NDArray[Any]) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _find_mixture(estimator: Any) -> Any:
    """The GaussianMixture an estimator is or holds (for the summary), or None."""
    from gmmkit.mixture import GaussianMixture

    if isinstance(estimator, GaussianMixture):
        return estimator
    for value in _fitted_attributes(estimator).values():
        if isinstance(value, GaussianMixture):
            return value
    return None


def _summary(estimator: Any, feature_names: Sequence[str] | None) -> dict[str, Any]:
    """The metadata's ``summary`` of an estimator (``feature_names`` unless it has its own).

    Raises
    ------
    ValueError
        If ``feature_names`` does not name each feature once.
    """
    mixture = _find_mixture(estimator)
    summary: dict[str, Any] = {
        "covariance_type": None,
        "n_components": None,
        "n_features": None,
        "dtype": None,
        "feature_names": None,
    }
    if mixture is not None:
        summary.update(
            covariance_type=mixture.covariance_type,
            n_components=int(mixture.means_.shape[0]),
            n_features=int(getattr(estimator, "n_features_in_", mixture.means_.shape[1])),
            dtype=str(mixture.means_.dtype),
        )
    names = getattr(estimator, "feature_names_in_", None)
    if names is None and mixture is not None:
        names = getattr(mixture, "feature_names_in_", None)
    if names is None and feature_names is not None:
        if isinstance(feature_names, (str, bytes)) or not isinstance(feature_names, Iterable):
            raise TypeError("feature_names must be a sequence of strings")
        names = list(feature_names)
    if names is not None:
        names = [str(n) for n in names]
        n_features = summary["n_features"]
        if n_features is not None and len(names) != n_features:
            raise ValueError(
                f"feature_names has {len(names)} names but the model has {n_features} features"
            )
        summary["feature_names"] = names
    return summary


def _write_npz(handle: Any, members: dict[str, NDArray[Any]]) -> None:
    """What :func:`numpy.savez` writes, with fixed member timestamps so that saving the
    same model twice gives the same bytes."""
    with zipfile.ZipFile(handle, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for key, arr in members.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def save(estimator: Any, path: PathLike, *, feature_names: Sequence[str] | None = None) -> None:
    """Write a fitted gmmkit estimator to ``path`` (format: see :mod:`gmmkit.modelfile`).

    Parameters
    ----------
    estimator : GaussianMixture or another gmmkit estimator
        Must be fitted.
    path : str or path-like
        Destination; written to a temporary file first, then moved into place.
    feature_names : sequence of str of length n_features, optional
        Column names, recorded in the summary (``feature_names_in_`` wins when present).

    Raises
    ------
    TypeError
        If ``estimator`` is not a gmmkit estimator or holds values the format cannot store.
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    ModelFileError
        A :class:`ValueError`: the model is inconsistent (its parameters disagree with its
        fitted attributes, its covariances break their model's constraints, a value is
        outside the format's limits ...), so that :func:`load` would refuse the file. The
        checks are :func:`load`'s own, run on what would be written; nothing is written.
    """
    from sklearn.utils.validation import check_is_fitted

    _class_name(estimator)
    check_is_fitted(estimator)
    arrays: dict[str, NDArray[Any]] = {}
    description = _describe(estimator, "estimator", arrays)

    summary = _summary(estimator, feature_names)

    from gmmkit import __version__

    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "gmmkit_version": __version__,
        "estimator": description,
        "arrays": {
            key: {"dtype": arr.dtype.str, "shape": list(arr.shape), "sha256": _sha256(arr)}
            for key, arr in arrays.items()
        },
        "summary": summary,
    }
    meta_bytes = json.dumps(metadata, allow_nan=False, sort_keys=True).encode("utf-8")
    raw = np.frombuffer(meta_bytes, dtype=np.uint8)
    # The loader's own checks, on exactly what would be written: a model that load()
    # would refuse is never saved.
    try:
        _checked_model(raw, arrays)
    except ModelFileError as exc:
        raise ModelFileError(f"cannot save this {type(estimator).__name__}: {exc}") from exc
    members: dict[str, NDArray[Any]] = {_META_MEMBER: raw}
    members.update(sorted(arrays.items()))

    with atomic_write(path, "wb") as handle:
        _write_npz(handle, members)


# ---------------------------------------------------------------------------- limits
#: At most this many members in a model file (a model has a handful of arrays).
MAX_MEMBERS = 1024
#: At most this many bytes of JSON metadata.
MAX_METADATA_BYTES = 16 * 2**20
#: At most this many ``[`` and ``{`` characters in the metadata (bounds the objects that
#: parsing it creates).
MAX_JSON_CONTAINERS = 100_000
#: At most this many levels of nested JSON arrays and objects.
MAX_JSON_DEPTH = 64
#: At most this many characters in any string of the metadata (keys included).
MAX_STRING_LENGTH = 65_536
#: Integers in the metadata lie in [-MAX_INT, MAX_INT].
MAX_INT = 2**63 - 1
#: At most this many elements in a stored ``range``.
MAX_RANGE_LENGTH = 65_536
#: Longest ``.npy`` header read (numpy's own default).
MAX_NPY_HEADER = 10_000
#: Relative tolerance of the covariance-model constraints (equal volumes, shapes, ...).
CONSTRAINT_RTOL = 1e-6

#: Array dtypes a model file may hold: (kind, item size). Byte order little or native.
_ALLOWED_DTYPES = frozenset(
    {("b", 1), ("i", 1), ("i", 2), ("i", 4), ("i", 8), ("u", 1), ("u", 2), ("u", 4), ("u", 8),
     ("f", 4), ("f", 8)}
)  # fmt: skip
_METADATA_KEYS = {"format", "format_version", "gmmkit_version", "estimator", "arrays", "summary"}
_QUOTE_LIMIT = 80


def _short(value: Any, limit: int = _QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to ``limit`` characters: what an error message quotes of a file."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # repr of a huge string costs as much as the string
    text = repr(value) if not isinstance(value, (dict, list, tuple)) else _container_repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _container_repr(value: Any) -> str:
    """A short description of a container (its repr could be as large as the file)."""
    return f"<{type(value).__name__} of {len(value)} items>"


def _short_text(text: object, limit: int = 300) -> str:
    """A message from elsewhere (an exception's text), cut to ``limit`` characters."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------- reading
def _check_layout(archive: zipfile.ZipFile, handle: Any, size: int) -> list[zipfile.ZipInfo]:
    """Members of a ZIP archive, after checking that reading them costs no more than the
    file's size: few enough, stored, each one's local header and data inside the file,
    none overlapping another (which :mod:`zipfile` does not detect)."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"has {len(infos)} members (a model file has at most {MAX_MEMBERS})")
    end_of_data = min(size, getattr(archive, "start_dir", size))
    spans: list[tuple[int, int, str]] = []
    names: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if name in names:
            raise ModelFileError(f"has two members named {_short(name)}")
        names.add(name)
        if info.compress_type != zipfile.ZIP_STORED:
            raise ModelFileError("has compressed members; it was not written by gmmkit")
        if info.flag_bits & 0x1:
            raise ModelFileError(f"member {_short(name)} is encrypted")
        if info.file_size != info.compress_size:
            raise ModelFileError(
                f"member {_short(name)} declares {info.file_size} bytes but stores "
                f"{info.compress_size}"
            )
        total += info.file_size
        if total > size:
            raise ModelFileError(
                f"members declare more bytes than the file holds ({size} bytes); it is corrupt"
            )
        handle.seek(info.header_offset)
        header = handle.read(30)
        if len(header) != 30 or header[:4] != _ZIP_MAGIC:
            raise ModelFileError(f"member {_short(name)} has no valid local header")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        start = info.header_offset
        end = start + 30 + name_length + extra_length + info.compress_size
        if end > end_of_data:
            raise ModelFileError(f"member {_short(name)} extends past the end of its data")
        spans.append((start, end, name))
    spans.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise ModelFileError(
                f"members {_short(first)} and {_short(second)} overlap; the archive is corrupt "
                "or crafted"
            )
    return infos


def _check_dtype(dtype: np.dtype[Any], key: str) -> None:
    """Refuse array dtypes outside the allow-list (objects, float16/128, complex, ...)."""
    if dtype.hasobject:
        raise ModelFileError(
            f"array {_short(key)} holds pickled Python objects (dtype object); gmmkit never "
            "loads pickles because they can run code"
        )
    byteorder_ok = dtype.isnative or dtype.byteorder in "<|"
    if (
        dtype.names is not None
        or dtype.subdtype is not None
        or (dtype.kind, dtype.itemsize) not in _ALLOWED_DTYPES
        or not byteorder_ok
    ):
        raise ModelFileError(
            f"array {_short(key)} has unsupported dtype {_short(dtype.str)} (allowed: bool, "
            "int8-int64, uint8-uint64, float32, float64; little-endian or native)"
        )


def _read_npy(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, max_bytes: int | None = None
) -> NDArray[Any]:
    """One ``.npy`` member, its header checked before its data is read: allowed dtype,
    non-negative shape, exactly as many data bytes as the shape needs (and at most
    ``max_bytes``)."""
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(member, MAX_NPY_HEADER)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(member, MAX_NPY_HEADER)
            else:
                raise ModelFileError(f"member {_short(key)} has .npy version {version}")
        except ValueError as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(
                f"member {_short(key)} is not a valid .npy array ({_short_text(exc, 120)})"
            ) from exc
        shape, fortran_order, dtype = header
        _check_dtype(dtype, key)
        if not all(isinstance(n, int) and n >= 0 for n in shape) or len(shape) > 32:
            raise ModelFileError(f"array {_short(key)} has an invalid shape {_short(shape)}")
        n_bytes = math.prod(shape) * dtype.itemsize
        if max_bytes is not None and n_bytes > max_bytes:
            raise ModelFileError(f"metadata is {n_bytes} bytes (at most {max_bytes})")
        available = info.file_size - member.tell()
        if n_bytes != available:
            raise ModelFileError(
                f"array {_short(key)} declares shape {_short(shape)} ({n_bytes} bytes) but "
                f"holds {available} bytes"
            )
        data = member.read(n_bytes)  # the CRC is checked on reaching the end
        if len(data) != n_bytes:
            raise ModelFileError(f"array {_short(key)} is truncated")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    return np.array(array, order="C")


def _read_members(path: PathLike) -> tuple[NDArray[np.uint8], dict[str, NDArray[Any]]]:
    """The raw metadata member and the arrays of a model file, read with bounded cost."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"model file not found: {file}")
    if file.is_dir():
        raise ModelFileError(f"{file} is a directory, not a model file")
    with open(file, "rb") as handle:
        head = handle.read(4)
    if head[:1] == _PICKLE_MAGIC:
        raise ModelFileError(
            f"{file} is a pickle; gmmkit never loads pickles because they can run code"
        )
    if head not in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        if head.startswith(b"\x93NUM"):
            raise ModelFileError(f"{file} is a plain .npy array, not a gmmkit model file")
        raise ModelFileError(f"{file} is not a gmmkit model file (not a ZIP/.npz archive)")

    members: dict[str, NDArray[Any]] = {}
    try:
        with open(file, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            with zipfile.ZipFile(handle) as archive:
                infos = _check_layout(archive, handle, size)
                if not any(info.filename == f"{_META_MEMBER}.npy" for info in infos):
                    raise ModelFileError(
                        "is a ZIP/.npz archive but not a gmmkit model file (no metadata)"
                    )
                for info in infos:
                    if not info.filename.endswith(".npy"):
                        raise ModelFileError(f"member {_short(info.filename)} is not an .npy array")
                    key = info.filename[: -len(".npy")]
                    limit = MAX_METADATA_BYTES if key == _META_MEMBER else None
                    members[key] = _read_npy(archive, info, key, limit)
    except ModelFileError as exc:
        text = str(exc)
        raise ModelFileError(
            f"{file} {text}" if text.startswith("is ") else f"{file}: {text}"
        ) from exc
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise ModelFileError(f"{file} is truncated or corrupt ({_short_text(exc)})") from exc
    except Exception as exc:  # struct.error and friends from a damaged archive
        raise ModelFileError(
            f"{file} is corrupt ({type(exc).__name__}: {_short_text(exc)})"
        ) from exc
    return members.pop(_META_MEMBER), members


def _reject_constant(name: str) -> Any:
    raise ModelFileError(f"metadata holds the non-standard JSON constant {name}")


def _field(path: Sequence[Any]) -> str:
    """A dotted field name for messages, each part and the whole bounded in length."""
    parts = [str(p) if len(str(p)) <= 40 else str(p)[:37] + "..." for p in path]
    text = ".".join(parts) or "metadata"
    return text if len(text) <= 200 else "..." + text[-197:]


def _check_json_limits(metadata: Any) -> None:
    """Depth, string lengths, integer sizes and finite numbers throughout the metadata."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(metadata, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise ModelFileError(
                f"metadata is nested more than {MAX_JSON_DEPTH} levels deep (at "
                f"{_field(path[:8])}...)"
            )
        if isinstance(value, str):
            if len(value) > MAX_STRING_LENGTH:
                raise ModelFileError(
                    f"{_field(path)} holds a string of {len(value)} characters (at most "
                    f"{MAX_STRING_LENGTH})"
                )
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if not -MAX_INT <= value <= MAX_INT:
                raise ModelFileError(f"{_field(path)} holds an integer too large for a model file")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ModelFileError(f"{_field(path)} holds a number out of range ({value})")
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                if len(key) > MAX_STRING_LENGTH:
                    raise ModelFileError(
                        f"{_field(path)} has a key of {len(key)} characters (at most "
                        f"{MAX_STRING_LENGTH})"
                    )
                stack.append((item, (*path, key)))
        else:  # pragma: no cover - json.loads makes nothing else
            raise ModelFileError(f"{_field(path)} holds an unexpected value")


def _parse_metadata(raw: NDArray[Any]) -> dict[str, Any]:
    """The metadata object from the bytes of its member, within the size limits."""
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError("metadata member has the wrong type")
    if raw.size > MAX_METADATA_BYTES:
        raise ModelFileError(f"metadata is {raw.size} bytes (at most {MAX_METADATA_BYTES})")
    containers = int(np.count_nonzero((raw == ord("[")) | (raw == ord("{"))))
    if containers > MAX_JSON_CONTAINERS:
        raise ModelFileError(
            f"metadata has {containers} JSON arrays/objects (at most {MAX_JSON_CONTAINERS})"
        )
    try:
        metadata = json.loads(raw.tobytes().decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ModelFileError(f"metadata is nested more than {MAX_JSON_DEPTH} levels deep") from exc
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, too many digits
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"metadata is not valid JSON ({_short_text(exc, 120)})") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ModelFileError(f"is not a gmmkit model file (format is not {FORMAT_NAME})")
    _check_json_limits(metadata)
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"invalid format_version {_short(version)}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"uses format version {version}, newer than this gmmkit reads "
            f"({FORMAT_VERSION}); upgrade gmmkit"
        )
    unknown = sorted(set(metadata) - _METADATA_KEYS)
    if unknown:
        raise ModelFileError(f"metadata has unknown fields {_short(unknown[0])}")
    for key in ("estimator", "arrays", "summary"):
        if not isinstance(metadata.get(key), dict):
            raise ModelFileError(f"metadata has no '{key}' object")
    if not isinstance(metadata.get("gmmkit_version"), str) or len(metadata["gmmkit_version"]) > 64:
        raise ModelFileError(
            f"gmmkit_version must be a short string, got {_short(metadata.get('gmmkit_version'))}"
        )
    return metadata


def _check_declared_arrays(declared: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> None:
    """Every array member is declared in the metadata, with its dtype, shape and checksum."""
    if set(declared) != set(arrays):
        missing = sorted(set(declared) - set(arrays))
        extra = sorted(set(arrays) - set(declared))
        raise ModelFileError(
            f"arrays do not match the metadata (missing {_short(missing[:3])}, unexpected "
            f"{_short(extra[:3])})"
        )
    for key, arr in arrays.items():
        spec = declared[key]
        _check_dtype(arr.dtype, key)
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "sha256"}:
            raise ModelFileError(f"bad description of array {_short(key)}")
        if spec["dtype"] != arr.dtype.str or spec["shape"] != list(arr.shape):
            raise ModelFileError(
                f"array {_short(key)} is {arr.dtype.str} {list(arr.shape)}, metadata says "
                f"{_short(spec['dtype'])} {_short(spec['shape'])}"
            )
        if spec["sha256"] != _sha256(arr):
            raise ModelFileError(f"array {_short(key)} is corrupt (checksum mismatch)")


# ---------------------------------------------------------------------------- decoding
def _decode(value: Any, where: str, arrays: dict[str, NDArray[Any]], used: set[str]) -> Any:
    """A value of ``params`` or ``attributes`` at field ``where`` (see the module docstring).

    Array members are named by the field that holds them, so each is referred to once.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, f"{where}.{i}", arrays, used) for i, v in enumerate(value)]
    if not isinstance(value, dict) or len(value) != 1:
        raise ModelFileError(f"{where}: unexpected value {_short(value)}")
    ((tag, payload),) = value.items()
    if tag == "__array__":
        if payload != where or payload not in arrays or payload in used:
            raise ModelFileError(f"{where} refers to a missing array {_short(payload)}")
        used.add(payload)
        return arrays[payload]
    if tag == "__float__":
        if payload not in ("nan", "inf", "-inf"):
            raise ModelFileError(f"{where}: bad float {_short(payload)}")
        return float(payload)
    if tag == "__tuple__" and isinstance(payload, list):
        return tuple(_decode(v, f"{where}.{i}", arrays, used) for i, v in enumerate(payload))
    if tag == "__range__" and isinstance(payload, list) and len(payload) == 3:
        if not all(_is_int(v) for v in payload) or payload[2] == 0:
            raise ModelFileError(f"{where}: bad range {_short(payload)}")
        result = range(*payload)
        if len(result) > MAX_RANGE_LENGTH:
            raise ModelFileError(
                f"{where}: range of {len(result)} values (at most {MAX_RANGE_LENGTH})"
            )
        return result
    if tag == "__dict__" and isinstance(payload, dict):
        return {k: _decode(v, f"{where}.{k}", arrays, used) for k, v in payload.items()}
    if tag == "__strarray__" and isinstance(payload, list):
        if not all(isinstance(v, str) for v in payload):
            raise ModelFileError(f"{where}: bad string array")
        return np.asarray(payload, dtype=object)
    if tag == "__estimator__" and isinstance(payload, dict):
        return _build(payload, where, arrays, used)
    if tag == "__selection__" and isinstance(payload, dict):
        return _selection_result(payload, where, arrays, used)
    raise ModelFileError(f"{where}: unknown value tag {_short(tag)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------- schema
#: A check of one decoded value: ``check(value, field)`` raises ModelFileError if bad.
Check = Callable[[Any, str], None]


def _integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(value: Any, field: str) -> None:
        if (
            not _is_int(value)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
        ):
            bounds = f" >= {minimum}" if minimum is not None else ""
            bounds += f" and <= {maximum}" if maximum is not None else ""
            raise ModelFileError(f"{field} must be an integer{bounds}, got {_short(value)}")

    return check


def _real(minimum: float | None = None, *, minus_inf: bool = False, nan: bool = False) -> Check:
    def check(value: Any, field: str) -> None:
        ok = _is_real(value) and (
            math.isfinite(value)
            or (minus_inf and value == -math.inf)
            or (nan and math.isnan(value))
        )
        if ok and minimum is not None and value < minimum:
            ok = False
        if not ok:
            what = "a finite number" + ("" if minimum is None else f" >= {minimum}")
            what += " or -inf" if minus_inf else ""
            what += " or nan" if nan else ""
            raise ModelFileError(f"{field} must be {what}, got {_short(value)}")

    return check


def _boolean(value: Any, field: str) -> None:
    if not isinstance(value, bool):
        raise ModelFileError(f"{field} must be true or false, got {_short(value)}")


def _string(value: Any, field: str) -> None:
    if not isinstance(value, str):
        raise ModelFileError(f"{field} must be a string, got {_short(value)}")


def _one_of(*choices: Any) -> Check:
    def check(value: Any, field: str) -> None:
        if not isinstance(value, (str, int)) or value not in choices:
            raise ModelFileError(
                f"{field} must be one of {', '.join(map(str, choices))}, got {_short(value)}"
            )

    return check


def _optional(inner: Check) -> Check:
    def check(value: Any, field: str) -> None:
        if value is not None:
            inner(value, field)

    return check


def _list_of(item: Check, *, length: int | None = None, tuples: bool = False) -> Check:
    kind = tuple if tuples else list

    def check(value: Any, field: str) -> None:
        if not isinstance(value, kind) or (length is not None and len(value) != length):
            size = "" if length is None else f" of {length}"
            raise ModelFileError(f"{field} must be a {kind.__name__}{size}, got {_short(value)}")
        for i, v in enumerate(value):
            item(v, f"{field}.{i}")

    return check


def _array(kinds: str, ndim: int | None = None) -> Check:
    """An ndarray of one of the dtype ``kinds`` (``f``: floating point, finite)."""
    names = {"f": "floating-point", "iu": "integer", "b": "boolean"}

    def check(value: Any, field: str) -> None:
        if not isinstance(value, np.ndarray) or value.dtype.kind not in kinds:
            raise ModelFileError(
                f"model file lacks a {names.get(kinds, kinds)} array '{field}' (got "
                f"{_short(value)})"
            )
        if ndim is not None and value.ndim != ndim:
            raise ModelFileError(f"{field} must be {ndim}-dimensional, got shape {value.shape}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ModelFileError(f"'{field}' in the model file contains NaN or infinity")

    return check


def _numeric_init(value: Any, field: str) -> None:
    """A user-given initial array (``means_init`` ...): numbers, finite."""
    if value is None:
        return
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged lists
        raise ModelFileError(f"{field} must be a numeric array") from exc
    if array.dtype.kind not in "biuf" or not np.all(np.isfinite(array)):
        raise ModelFileError(f"{field} must be a finite numeric array, got {_short(value)}")


def _strings(value: Any, field: str) -> None:
    if not (
        isinstance(value, np.ndarray)
        and value.ndim == 1
        and value.dtype == object
        and all(isinstance(v, str) for v in value)
    ):
        raise ModelFileError(f"{field} must be an array of strings, got {_short(value)}")


def _class_labels(value: Any, field: str) -> None:
    """Class labels (``classes_``, ``transduction_``): a 1-D array of integers, booleans,
    finite floats or strings."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        _strings(value, field)
    elif not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise ModelFileError(
            f"{field} must be an array of class labels (numbers or strings), got "
            f"{_short(value)}"
        )
    else:
        _array(value.dtype.kind, 1)(value, field)


def _covariance_name(value: Any, field: str) -> None:
    from gmmkit.core.covariance import COVARIANCE_TYPES

    _one_of(*COVARIANCE_TYPES)(value, field)


def _covariance_names(value: Any, field: str) -> None:
    if isinstance(value, str):
        _covariance_name(value, field)
    else:
        _list_of(_covariance_name)(list(value) if isinstance(value, tuple) else value, field)
        if not value:
            raise ModelFileError(f"{field} is empty")


def _component_counts(value: Any, field: str) -> None:
    """``n_components`` of a selector: a positive int, or a non-empty collection of them."""
    if _is_int(value):
        _integer(1)(value, field)
        return
    if not isinstance(value, (tuple, list, range)) or len(value) == 0:
        raise ModelFileError(
            f"{field} must be an int or a non-empty list of ints, got {_short(value)}"
        )
    if isinstance(value, range):
        if value[0] < 1 or value[-1] < 1:
            raise ModelFileError(f"{field} must hold integers >= 1")
        return
    for i, k in enumerate(value):
        _integer(1)(k, f"{field}.{i}")


def _estimator_of(class_name: str) -> Check:
    def check(value: Any, field: str) -> None:
        if type(value).__name__ != class_name or not type(value).__module__.startswith("gmmkit"):
            raise ModelFileError(
                f"{field} must be a {class_name}, got {_short(type(value).__name__)}"
            )

    return check


def _selection(value: Any, field: str) -> None:
    if type(value).__name__ != "SelectionResult":
        raise ModelFileError(f"{field} must be a model-selection result, got {_short(value)}")


_RANDOM_STATE = _optional(_integer(0, 2**32 - 1))
_RUNNING_STATS_KEYS = ("nk", "first", "second", "reference")


def _running_stats(value: Any, field: str) -> None:
    """``running_stats_`` of a partially fitted mixture: exactly its four finite
    float arrays (their shapes are checked against the mixture in :func:`_after_load`)."""
    if not isinstance(value, dict) or sorted(value) != sorted(_RUNNING_STATS_KEYS):
        raise ModelFileError(
            f"{field} must hold the arrays {', '.join(_RUNNING_STATS_KEYS)}, got {_short(value)}"
        )
    for key, ndim in zip(_RUNNING_STATS_KEYS, (1, 2, 2, 2), strict=True):
        _array("f", ndim)(value[key], f"{field}.{key}")
    if np.any(value["nk"] < 0):
        raise ModelFileError(f"{field}.nk must be non-negative")


def _check_running_stats(estimator: Any, k: int, d: int) -> None:
    """``running_stats_`` shapes agree with the mixture's components, features and layout."""
    value = getattr(estimator, "running_stats_", None)
    if value is None:
        return
    from gmmkit.core.covariance import get_covariance_type

    cov_type = get_covariance_type(estimator.covariance_type)
    q = cov_type.n_quadratic(d)
    expected = {
        "nk": (k,),
        "first": (k, d),
        "second": (1, q) if cov_type.layout == "tied" else (k, q),
        "reference": (k, d),
    }
    for key, shape in expected.items():
        if value[key].shape != shape:
            raise ModelFileError(
                f"running_stats_.{key} should have shape {shape}, got {value[key].shape}"
            )
_MIXTURE_ATTRIBUTES: dict[str, Check] = {
    "weights_": _array("f", 1),
    "means_": _array("f", 2),
    "covariances_": _array("f"),
    "precisions_cholesky_": _array("f"),
    "converged_": _boolean,
    "n_iter_": _integer(0),
    "lower_bound_": _real(minus_inf=True),
    "lower_bounds_": _list_of(_real(minus_inf=True)),
    "reseeded_": _list_of(_list_of(_integer(0), length=2, tuples=True)),
    "n_features_in_": _integer(1),
    "feature_names_in_": _strings,
    # the training data's size; files written before gmmkit recorded it lack both
    "n_samples_fit_": _integer(1),
    "sample_weight_sum_": _real(0.0),
    "n_steps_": _integer(0),
    "running_stats_": _running_stats,
}
_MIXTURE_PARAMS: dict[str, Check] = {
    "weights_init": _numeric_init,
    "means_init": _numeric_init,
    "precisions_init": _numeric_init,
}


class _Schema:
    """What one estimator class may hold: checks of its parameters (beyond scikit-learn's
    own ``_parameter_constraints``) and of its fitted attributes, which attributes it must
    have, and which are accepted at all (any other is refused)."""

    def __init__(
        self,
        attributes: dict[str, Check],
        required: Sequence[str],
        params: dict[str, Check] | None = None,
    ) -> None:
        self.attributes = attributes
        self.required = tuple(required)
        self.params = params or {}


_MIXTURE_REQUIRED = ("weights_", "means_", "covariances_", "precisions_cholesky_")
#: Per class: the fitted attributes it really has (see each class's docstring) and checks.
_SCHEMAS: dict[str, _Schema] = {
    "GaussianMixture": _Schema(_MIXTURE_ATTRIBUTES, _MIXTURE_REQUIRED, _MIXTURE_PARAMS),
    "SemiSupervisedGaussianMixture": _Schema(
        {**_MIXTURE_ATTRIBUTES, "classes_": _class_labels, "transduction_": _class_labels},
        _MIXTURE_REQUIRED,
        _MIXTURE_PARAMS,
    ),
    "AnomalyDetector": _Schema(
        {
            "mixture_": _estimator_of("GaussianMixture"),
            "offset_": _real(),
            "n_iter_": _integer(0),
            "converged_": _boolean,
            "n_features_in_": _integer(1),
            "feature_names_in_": _strings,
        },
        ("mixture_", "offset_"),
    ),
    "GaussianMixtureSelector": _Schema(
        {
            "best_estimator_": _estimator_of("GaussianMixture"),
            "n_components_": _integer(1),
            "covariance_type_": _covariance_name,
            "selection_": _selection,
            "n_features_in_": _integer(1),
            "feature_names_in_": _strings,
        },
        ("best_estimator_", "selection_"),
        {
            "n_components": _component_counts,
            "covariance_types": _optional(_covariance_names),
            "criterion": _one_of("bic", "aic", "icl"),
            "n_init": _optional(_integer(1)),
            "max_iter": _optional(_integer(0)),
            "tol": _optional(_real(0.0)),
            "reg_covar": _optional(_real(0.0)),
            "init_params": _optional(_string),
            "n_starts": _optional(_integer(1)),
            "min_component_size": _real(0.0),
            "min_variance_ratio": _real(0.0),
            "random_state": _RANDOM_STATE,
            "n_jobs": _optional(_integer()),
            "missing": _one_of("error", "marginalize"),
        },
    ),
    "PCAGaussianMixtureGenerator": _Schema(
        {
            "mean_": _array("f", 1),
            "components_": _array("f", 2),
            "explained_variance_": _array("f", 1),
            "scale_": _array("f", 1),
            "data_min_": _array("f", 1),
            "data_max_": _array("f", 1),
            "n_pca_components_": _integer(1),
            "mixture_": _estimator_of("GaussianMixture"),
            "n_components_": _integer(1),
            "n_iter_": _integer(0),
            "selection_": _optional(_selection),
            "n_features_in_": _integer(1),
            "feature_names_in_": _strings,
        },
        (
            "mean_",
            "components_",
            "explained_variance_",
            "scale_",
            "data_min_",
            "data_max_",
            "n_pca_components_",
            "mixture_",
        ),
        {
            "n_components": _component_counts,
            "variance": _real(0.0),
            "whiten": _boolean,
            "covariance_type": _covariance_name,
            "criterion": _one_of("bic", "aic", "icl"),
            "clip": _boolean,
            "n_init": _integer(1),
            "max_iter": _integer(0),
            "tol": _real(0.0),
            "reg_covar": _real(0.0),
            "random_state": _RANDOM_STATE,
            "n_jobs": _optional(_integer()),
        },
    ),
}


def _selection_row(value: Any, field: str) -> None:
    from gmmkit.apps.selection import TABLE_COLUMNS

    if not isinstance(value, dict) or set(value) != set(TABLE_COLUMNS):
        raise ModelFileError(
            f"{field} must be a table row with the columns {', '.join(TABLE_COLUMNS)}"
        )
    checks: dict[str, Check] = {
        "n_components": _integer(1),
        "covariance_type": _covariance_name,
        "log_likelihood": _real(minus_inf=True, nan=True),
        "n_parameters": _integer(0),
        "bic": _real(nan=True),
        "aic": _real(nan=True),
        "icl": _real(nan=True),
        "converged": _boolean,
        "n_iter": _integer(0),
        "min_weight": _real(0.0, nan=True),
        "degenerate": _boolean,
        "reason": _string,
        "best": _boolean,
    }
    for key, check in checks.items():
        check(value[key], f"{field}.{key}")


def _selection_result(
    payload: dict[str, Any], where: str, arrays: dict[str, NDArray[Any]], used: set[str]
) -> Any:
    from gmmkit.apps.selection import TABLE_COLUMNS, SelectionResult, _make_table

    if set(payload) != {"criterion", "rows", "best"}:
        raise ModelFileError(f"{where}: a selection result has criterion, rows and best")
    best = _decode(payload["best"], f"{where}.best", arrays, used)
    rows = _decode(payload["rows"], f"{where}.rows", arrays, used)
    criterion = payload["criterion"]
    _estimator_of("GaussianMixture")(best, f"{where}.best")
    _list_of(_selection_row)(rows, f"{where}.rows")
    rows = [{column: row[column] for column in TABLE_COLUMNS} for row in rows]  # table order
    _one_of("bic", "aic", "icl")(criterion, f"{where}.criterion")
    best_rows = [row for row in rows if row["best"]]
    if len(best_rows) != 1 or (
        best_rows[0]["n_components"],
        best_rows[0]["covariance_type"],
    ) != (best.n_components, best.covariance_type):
        raise ModelFileError(f"{where}.rows must mark the best model's row, and only it")
    return SelectionResult(
        best=best,
        table=_make_table(rows),
        criterion=criterion,
        rows=rows,
        models={(best.n_components, best.covariance_type): best},
    )


def _build(
    description: dict[str, Any], where: str, arrays: dict[str, NDArray[Any]], used: set[str]
) -> Any:
    """The estimator described at ``where``, every parameter and attribute checked."""
    if set(description) != {"class", "params", "attributes"}:
        raise ModelFileError(f"{where}: an estimator has exactly class, params and attributes")
    name = description["class"]
    cls = _allowed_class(name)
    params = description["params"]
    attributes = description["attributes"]
    if not isinstance(params, dict) or not isinstance(attributes, dict):
        raise ModelFileError(f"{where}: estimator description lacks 'params' or 'attributes'")
    schema = _SCHEMAS.get(name)
    accepted = set(inspect.signature(cls).parameters)
    decoded_params = {}
    for key, value in params.items():
        field = f"{where}.params.{key}"
        if key not in accepted:
            raise ModelFileError(
                f"model file has invalid parameters for {name}: unknown parameter {_short(key)}"
            )
        decoded_params[key] = _decode(value, field, arrays, used)
        if schema is not None and key in schema.params:
            schema.params[key](decoded_params[key], field)
    try:
        estimator = cls(**decoded_params)
        if hasattr(estimator, "_parameter_constraints"):
            estimator._validate_params()
    except Exception as exc:
        raise ModelFileError(
            f"model file has invalid parameters for {name}: {_short_text(exc)}"
        ) from exc
    for key, value in attributes.items():
        field = f"{where}.attributes.{key}"
        if not (key.endswith("_") and not key.startswith("_")) or hasattr(cls, key):
            raise ModelFileError(f"model file has an invalid attribute name {_short(key)}")
        if schema is not None and key not in schema.attributes:
            raise ModelFileError(
                f"model file has an invalid attribute name {_short(key)}: a {name} has no "
                "such fitted attribute"
            )
        decoded = _decode(value, field, arrays, used)
        if schema is not None:
            schema.attributes[key](decoded, field)
        setattr(estimator, key, decoded)
    if schema is not None:
        for key in schema.required:
            if key not in attributes:
                raise ModelFileError(f"{where}: a fitted {name} needs the attribute '{key}'")
    _after_load(estimator)
    return estimator


# ---------------------------------------------------------------------------- validation
def _float_attribute(estimator: Any, name: str) -> NDArray[np.float64]:
    value = getattr(estimator, name, None)
    _array("f")(value, name)
    assert isinstance(value, np.ndarray)
    return value


def _constraint_summary(cov_type: Any) -> str:
    """The covariance model's own one-line description (``"Equal volume, spherical"``)."""
    doc = " ".join((type(cov_type).__doc__ or "").split())
    return doc.split(":")[0].split(".")[0]


def _check_constraints(
    cov_type: Any, covariances: NDArray[Any], rtol: float = CONSTRAINT_RTOL
) -> None:
    """Covariances satisfy their model's constraints (equal volumes, shapes, orientations).

    The model's own M-step projection (``constrain``: the constrained covariances closest,
    in likelihood, to given ones) leaves covariances that satisfy the constraints as they
    are; anything it moves by more than ``rtol`` (default :data:`CONSTRAINT_RTOL`),
    relative to the largest entry of each component's covariance, violates them.
    """
    constrain = getattr(cov_type, "constrain", None)
    if constrain is None:  # tied: one matrix, no constraint beyond its shape
        return
    covs = np.asarray(covariances, dtype=np.float64)
    k = covs.shape[0]
    projected = constrain(np.ones(k), covs.copy(), covs.copy())
    scale = np.abs(covs).reshape(k, -1).max(axis=1)
    moved = np.abs(np.asarray(projected) - covs).reshape(k, -1).max(axis=1)
    if not np.all(moved <= rtol * scale):
        raise ModelFileError(
            f"covariances_ do not satisfy the constraints of covariance_type "
            f"'{cov_type.name}' ({cov_type.model}: {_constraint_summary(cov_type)}), "
            f"relative tolerance {rtol:g}"
        )


def validated_mixture_params(
    weights: NDArray[Any],
    means: NDArray[Any],
    covariances: NDArray[Any],
    precisions_cholesky: NDArray[Any],
    covariance_type: str,
) -> Any:
    """Check stored mixture parameters and return them as :class:`MixtureParams`.

    Checks shapes, finiteness, weights (non-negative, summing to one), covariances
    (symmetric, positive definite, satisfying the covariance model's constraints) and that
    the precision Cholesky factors invert the covariances.

    Raises
    ------
    ModelFileError
    """
    from gmmkit.core.covariance import CovarianceError, cholesky_precision, get_covariance_type
    from gmmkit.core.params import MixtureParams

    try:
        cov_type = get_covariance_type(covariance_type)
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"unknown covariance type {_short(covariance_type)}") from exc
    for name, arr in (
        ("weights_", weights),
        ("means_", means),
        ("covariances_", covariances),
        ("precisions_cholesky_", precisions_cholesky),
    ):
        _array("f")(arr, name)
    if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
        raise ModelFileError(f"means_ should have shape (K, D), got {means.shape}")
    k, d = means.shape
    if weights.shape != (k,):
        raise ModelFileError(f"weights_ should have shape ({k},), got {weights.shape}")
    expected = cov_type.covariance_shape(k, d)
    for name, arr in (("covariances_", covariances), ("precisions_cholesky_", precisions_cholesky)):
        if arr.shape != expected:
            raise ModelFileError(f"{name} should have shape {expected}, got {arr.shape}")
    if np.any(weights < 0) or abs(float(weights.sum()) - 1.0) > 1e-6:
        raise ModelFileError(
            f"weights_ must be non-negative and sum to one (sum = {float(weights.sum())!r})"
        )
    if cov_type.layout in ("full", "tied"):
        mats = covariances.reshape(-1, d, d)
        chols = precisions_cholesky.reshape(-1, d, d)
        scale = np.abs(mats).max(axis=(1, 2), keepdims=True)
        if np.any(np.abs(mats - mats.transpose(0, 2, 1)) > 1e-10 * scale):
            raise ModelFileError("covariances_ are not symmetric")
        if np.any(np.tril(chols, -1) != 0):
            raise ModelFileError("precisions_cholesky_ are not upper triangular")
    # A model stores C and U each rounded to its precision: U'CU then differs from I by
    # about eps * cond(C), bounded by ||C||_F trace(UU') -- in float32 (models fitted on
    # float32 data) from cond ~1e3 on, in float64 from ~1e11 on (rows a million times
    # the others' scale) -- and a C conditioned beyond the precision's reach (a tiny
    # component held up by reg_covar) can be indefinite by as much as its rounding,
    # D eps ||C||; the model scores, predicts and samples with U, which stays exact
    dtype = np.result_type(covariances, precisions_cholesky)
    rounding = float(np.finfo(dtype).eps) if dtype.kind == "f" else 0.0
    checked = np.asarray(covariances, dtype=np.float64)
    if cov_type.layout in ("full", "tied"):
        shift = 16.0 * d * rounding * np.linalg.norm(mats.astype(np.float64), axis=(1, 2))
        checked = (mats + shift[:, None, None] * np.eye(d)).reshape(checked.shape)
    try:
        cholesky_precision(checked, covariance_type)
    except CovarianceError as exc:
        raise ModelFileError("covariances_ are not positive definite") from exc
    condition = np.ones(k)
    if cov_type.layout in ("full", "tied"):
        # U.T @ C @ U = I when U @ U.T is the inverse of C.
        wide = (mats.astype(np.float64), chols.astype(np.float64))
        identity = np.einsum("kji,kjl,klm->kim", wide[1], wide[0], wide[1])
        condition = np.linalg.norm(wide[0], axis=(1, 2)) * (wide[1] ** 2).sum(axis=(1, 2))
        limit = np.maximum(1e-5, 16.0 * d * rounding * condition)
        if np.any(np.abs(identity - np.eye(d)).max(axis=(1, 2)) > limit):
            raise ModelFileError("precisions_cholesky_ do not match covariances_")
    elif not np.allclose(
        precisions_cholesky.astype(np.float64) * np.sqrt(covariances.astype(np.float64)),
        1.0,
        rtol=0,
        atol=max(1e-8, 8.0 * rounding),
    ):
        raise ModelFileError("precisions_cholesky_ do not match covariances_")
    # the constraints hold to the rounding of the stored covariances, eps * cond(C); they
    # tie the components together (a common volume, shape or orientation), so the worst
    # conditioned component's rounding reaches every component's projection
    tolerance = max(CONSTRAINT_RTOL, 16.0 * d * rounding * float(np.max(condition)))
    _check_constraints(cov_type, checked, tolerance)
    return MixtureParams(
        weights=weights,
        means=means,
        covariances=covariances,
        precisions_cholesky=precisions_cholesky,
        covariance_type=covariance_type,
    )


def _check_generator(generator: Any) -> None:
    """Shapes of a PCAGaussianMixtureGenerator's projection agree with its mixture."""
    mean = _float_attribute(generator, "mean_")
    n_pca = generator.mixture_.means_.shape[1]
    d = mean.shape[0] if mean.ndim == 1 else -1
    expected = {
        "components_": (n_pca, d),
        "mean_": (d,),
        "scale_": (n_pca,),
        "explained_variance_": (n_pca,),
        "data_min_": (d,),
        "data_max_": (d,),
    }
    for name, shape in expected.items():
        actual = _float_attribute(generator, name).shape
        if actual != shape:
            raise ModelFileError(f"{name} should have shape {shape}, got {actual}")
    if generator.n_pca_components_ != n_pca or generator.n_features_in_ != d:
        raise ModelFileError("n_pca_components_ / n_features_in_ do not match the arrays")
    if np.any(generator.scale_ <= 0):
        raise ModelFileError("scale_ must be positive")


def _same_mixture(first: Any, second: Any) -> bool:
    return first.get_params() == second.get_params() and all(
        np.array_equal(getattr(first, name), getattr(second, name))
        for name in ("weights_", "means_", "covariances_")
    )


def _check_agrees(estimator: Any, name: str, expected: Any, source: str) -> None:
    value = getattr(estimator, name, expected)
    if value != expected:
        raise ModelFileError(f"{name} is {_short(value)} but {source} says {_short(expected)}")


def _after_load(estimator: Any) -> None:
    """Validate a rebuilt estimator and restore state derived from its attributes."""
    from gmmkit.mixture import GaussianMixture

    if isinstance(estimator, GaussianMixture):
        params = validated_mixture_params(
            _float_attribute(estimator, "weights_"),
            _float_attribute(estimator, "means_"),
            _float_attribute(estimator, "covariances_"),
            _float_attribute(estimator, "precisions_cholesky_"),
            estimator.covariance_type,
        )
        k, d = params.means.shape
        if estimator.n_components is not None and k != estimator.n_components:
            raise ModelFileError(
                f"model has {k} components but n_components is {_short(estimator.n_components)}"
            )
        n_features_in = getattr(estimator, "n_features_in_", d)
        if n_features_in != d:
            raise ModelFileError(
                f"n_features_in_ is {_short(n_features_in)} but means_ has {d} columns"
            )
        if params.means.dtype == np.float32:  # float32 fits keep np.float32 bounds
            if isinstance(getattr(estimator, "lower_bound_", None), float):
                estimator.lower_bound_ = np.float32(estimator.lower_bound_)  # type: ignore[assignment]
            if isinstance(getattr(estimator, "lower_bounds_", None), list):
                estimator.lower_bounds_ = [np.float32(v) for v in estimator.lower_bounds_]
        _check_running_stats(estimator, k, d)
        for _iteration, component in getattr(estimator, "reseeded_", []):
            if component >= k:
                raise ModelFileError(f"reseeded_ names component {component} of {k}")
        classes = getattr(estimator, "classes_", None)
        if classes is not None:
            if len(classes) != k:
                raise ModelFileError(f"classes_ has {len(classes)} entries for {k} components")
            if len(set(classes.tolist())) != k:
                raise ModelFileError("classes_ holds a label twice")
            labels = getattr(estimator, "transduction_", None)
            if labels is not None and not set(labels.tolist()) <= set(classes.tolist()):
                raise ModelFileError("transduction_ holds labels that are not in classes_")
        estimator._set_params_from(params)
    names = getattr(estimator, "feature_names_in_", None)
    n_features = getattr(estimator, "n_features_in_", None)
    if names is not None and n_features is not None and len(names) != n_features:
        raise ModelFileError(f"feature_names_in_ has {len(names)} names for {n_features} features")
    for name, value in _fitted_attributes(estimator).items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            if not np.all(np.isfinite(value)):
                raise ModelFileError(f"'{name}' in the model file contains NaN or infinity")
    class_name = type(estimator).__name__
    if class_name == "PCAGaussianMixtureGenerator":
        _check_generator(estimator)
    mixture = getattr(estimator, "mixture_", None) or getattr(estimator, "best_estimator_", None)
    if isinstance(mixture, GaussianMixture) and not isinstance(estimator, GaussianMixture):
        if class_name != "PCAGaussianMixtureGenerator":
            # a wrapper whose mixture sees the input columns as they are (not a projection)
            _check_agrees(estimator, "n_features_in_", mixture.n_features_in_, "the mixture")
        _check_agrees(estimator, "n_components_", mixture.n_components, "the mixture")
        _check_agrees(estimator, "covariance_type_", mixture.covariance_type, "the mixture")
        _check_agrees(estimator, "n_iter_", getattr(mixture, "n_iter_", None), "the mixture")
        _check_agrees(estimator, "converged_", getattr(mixture, "converged_", None), "the mixture")
        selection = getattr(estimator, "selection_", None)
        if selection is not None and not _same_mixture(selection.best, mixture):
            raise ModelFileError("selection_.best is not the estimator's mixture")
    hook: Callable[[], None] | None = getattr(estimator, "_after_load", None)
    if hook is not None:
        hook()


def _checked_model(
    raw: NDArray[Any], arrays: dict[str, NDArray[Any]]
) -> tuple[dict[str, Any], Any]:
    """The metadata and the estimator a model file's members describe, after every check.

    :func:`load` runs this on what it read, :func:`save` on what it is about to write.
    """
    metadata = _parse_metadata(raw)
    _check_declared_arrays(metadata["arrays"], arrays)
    used: set[str] = set()
    try:
        estimator = _build(metadata["estimator"], "estimator", arrays, used)
    except RecursionError as exc:  # pragma: no cover - the depth limit comes first
        raise ModelFileError("metadata is nested too deeply") from exc
    unused = sorted(set(arrays) - used)
    if unused:
        raise ModelFileError(f"unreferenced arrays {_short(unused[:3])}")
    summary = metadata["summary"]
    try:
        expected = _summary(estimator, summary.get("feature_names"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"summary.feature_names: {_short_text(exc, 120)}") from exc
    if summary != expected:
        wrong = sorted(
            key
            for key in set(summary) | set(expected)
            if summary.get(key, ...) != expected.get(key, ...)
        )
        raise ModelFileError(f"summary.{_short(wrong[0])[1:-1]} does not match the model")
    return metadata, estimator


def _checked_file(path: PathLike) -> tuple[dict[str, Any], Any]:
    """Metadata and estimator of the model file ``path`` after every check, with the
    file named in any :class:`ModelFileError` (what :func:`load` and
    :func:`read_metadata` share)."""
    raw, arrays = _read_members(path)
    try:
        return _checked_model(raw, arrays)
    except ModelFileError as exc:
        text = str(exc)
        raise ModelFileError(
            f"{path} {text}" if text.startswith("is ") else f"{path}: {text}"
        ) from exc


def load(path: PathLike) -> Any:
    """Read an estimator written by :func:`save` / ``estimator.save(path)``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    estimator
        The fitted gmmkit estimator; its predictions are bit-identical to the saved one's.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file is truncated, corrupt, foreign, pickled, exceeds the format's limits
        or fails validation.
    """
    return _checked_file(path)[1]


def read_metadata(path: PathLike) -> dict[str, Any]:
    """Metadata of a model file (format, versions, summary) after checking it as
    :func:`load` does.

    Returns
    -------
    dict
        The JSON metadata described in :mod:`gmmkit.modelfile`.
    """
    return _checked_file(path)[0]
