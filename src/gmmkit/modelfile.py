"""Safe model files: save and load fitted gmmkit estimators without pickle.

File format ``gmmkit-model``, version 1
=======================================

A model file (conventional extension ``.gmm``) is an uncompressed ZIP archive laid out
as :func:`numpy.savez` writes it (so :func:`numpy.load` reads it), every member a ``.npy``
file, with fixed member timestamps so the same model always gives the same bytes.

``__gmmkit__.npy``
    A 1-D ``uint8`` array holding UTF-8 JSON, the *metadata* (below).
``<name>.npy``
    One numeric array (dtype kind ``b``, ``i``, ``u`` or ``f``) per entry of
    ``metadata["arrays"]``; names are dotted paths such as ``attributes.means_``.

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

Loading never executes anything from the file: arrays are read with
``numpy.load(..., allow_pickle=False)``, the estimator class comes from the allow-list,
and the content is validated before a model is returned -- array checksums, shapes,
finite values, weights non-negative and summing to one, covariances symmetric and
positive definite, precision Cholesky factors consistent with the covariances. Any
failure (a truncated, corrupt, foreign or pickled file) raises :class:`ModelFileError`,
a :class:`ValueError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from collections.abc import Callable, Sequence
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

#: Scalar fitted attributes that must be finite numbers, per class.
_FINITE_SCALARS: dict[str, tuple[str, ...]] = {"AnomalyDetector": ("offset_",)}

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
        raise ModelFileError(f"unknown estimator class {name!r} in model file")
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
    """
    from sklearn.utils.validation import check_is_fitted

    _class_name(estimator)
    check_is_fitted(estimator)
    arrays: dict[str, NDArray[Any]] = {}
    description = _describe(estimator, "estimator", arrays)

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
        names = list(feature_names)
    if names is not None:
        names = [str(n) for n in names]
        n_features = summary["n_features"]
        if n_features is not None and len(names) != n_features:
            raise ValueError(
                f"feature_names has {len(names)} names but the model has {n_features} features"
            )
        summary["feature_names"] = names

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
    members: dict[str, NDArray[Any]] = {_META_MEMBER: np.frombuffer(meta_bytes, dtype=np.uint8)}
    members.update(sorted(arrays.items()))

    with atomic_write(path, "wb") as handle:
        _write_npz(handle, members)


# ---------------------------------------------------------------------------- decoding
def _read_members(path: PathLike) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """Metadata and arrays of a model file, checked against each other."""
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

    try:
        with zipfile.ZipFile(file) as archive_index:
            # gmmkit writes stored (uncompressed) members only, so nothing read can be
            # larger than the file itself (no decompression bombs).
            if any(info.compress_type != zipfile.ZIP_STORED for info in archive_index.infolist()):
                raise ModelFileError(
                    f"{file} has compressed members; it was not written by gmmkit"
                )
        with np.load(file, allow_pickle=False) as archive:
            names = set(archive.files)
            if _META_MEMBER not in names:
                raise ModelFileError(
                    f"{file} is an .npz archive but not a gmmkit model file (no metadata)"
                )
            raw = archive[_META_MEMBER]
            contents = {key: archive[key] for key in names if key != _META_MEMBER}
    except ModelFileError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ModelFileError(
                f"{file} contains pickled data; gmmkit never loads pickles because they can "
                "run code"
            ) from exc
        raise ModelFileError(f"{file} is corrupt: {exc}") from exc
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise ModelFileError(f"{file} is truncated or corrupt ({exc})") from exc
    except Exception as exc:  # zlib.error and friends from a damaged archive
        raise ModelFileError(f"{file} is corrupt ({type(exc).__name__}: {exc})") from exc

    for key, member in [(_META_MEMBER, raw), *contents.items()]:
        if not isinstance(member, np.ndarray):
            raise ModelFileError(f"{file} is corrupt: member {key!r} is not an .npy array")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{file}: metadata member has the wrong type")
    try:
        metadata = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{file}: metadata is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{file} is not a gmmkit model file (format is not {FORMAT_NAME})")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{file}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{file} uses format version {version}, newer than this gmmkit reads "
            f"({FORMAT_VERSION}); upgrade gmmkit"
        )
    for key in ("estimator", "arrays", "summary"):
        if not isinstance(metadata.get(key), dict):
            raise ModelFileError(f"{file}: metadata has no '{key}' object")

    declared = metadata["arrays"]
    if set(declared) != set(contents):
        missing = sorted(set(declared) - set(contents))
        extra = sorted(set(contents) - set(declared))
        raise ModelFileError(
            f"{file}: arrays do not match the metadata (missing {missing}, unexpected {extra})"
        )
    for key, arr in contents.items():
        spec = declared[key]
        if not isinstance(spec, dict):
            raise ModelFileError(f"{file}: bad description of array {key!r}")
        if arr.dtype.kind not in "biuf":
            raise ModelFileError(f"{file}: array {key!r} has unsupported dtype {arr.dtype}")
        if spec.get("dtype") != arr.dtype.str or spec.get("shape") != list(arr.shape):
            raise ModelFileError(
                f"{file}: array {key!r} is {arr.dtype.str} {list(arr.shape)}, metadata says "
                f"{spec.get('dtype')} {spec.get('shape')}"
            )
        if spec.get("sha256") != _sha256(arr):
            raise ModelFileError(f"{file}: array {key!r} is corrupt (checksum mismatch)")
    return metadata, contents


def _decode(value: Any, arrays: dict[str, NDArray[Any]], used: set[str]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, arrays, used) for v in value]
    if not isinstance(value, dict) or len(value) != 1:
        raise ModelFileError(f"unexpected value in model file: {value!r:.80}")
    (tag, payload), = value.items()
    if tag == "__array__":
        if not isinstance(payload, str) or payload not in arrays:
            raise ModelFileError(f"model file refers to a missing array {payload!r}")
        used.add(payload)
        return arrays[payload]
    if tag == "__float__":
        if payload not in ("nan", "inf", "-inf"):
            raise ModelFileError(f"bad float {payload!r} in model file")
        return float(payload)
    if tag == "__tuple__" and isinstance(payload, list):
        return tuple(_decode(v, arrays, used) for v in payload)
    if tag == "__range__" and isinstance(payload, list) and len(payload) == 3:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in payload):
            raise ModelFileError("bad range in model file")
        return range(*payload)
    if tag == "__dict__" and isinstance(payload, dict):
        return {str(k): _decode(v, arrays, used) for k, v in payload.items()}
    if tag == "__strarray__" and isinstance(payload, list):
        if not all(isinstance(v, str) for v in payload):
            raise ModelFileError("bad string array in model file")
        return np.asarray(payload, dtype=object)
    if tag == "__estimator__" and isinstance(payload, dict):
        return _build(payload, arrays, used)
    if tag == "__selection__" and isinstance(payload, dict):
        return _selection_result(payload, arrays, used)
    raise ModelFileError(f"unknown value tag {tag!r} in model file")


def _selection_result(
    payload: dict[str, Any], arrays: dict[str, NDArray[Any]], used: set[str]
) -> Any:
    from gmmkit.apps.selection import SelectionResult, _make_table
    from gmmkit.mixture import GaussianMixture

    best = _decode(payload.get("best"), arrays, used)
    rows = _decode(payload.get("rows"), arrays, used)
    criterion = payload.get("criterion")
    if not isinstance(best, GaussianMixture):
        raise ModelFileError("selection result without a best GaussianMixture")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ModelFileError("selection result rows must be a list of objects")
    if not isinstance(criterion, str):
        raise ModelFileError("selection result without a criterion")
    return SelectionResult(
        best=best,
        table=_make_table(rows),
        criterion=criterion,
        rows=rows,
        models={(best.n_components, best.covariance_type): best},
    )


def _build(description: dict[str, Any], arrays: dict[str, NDArray[Any]], used: set[str]) -> Any:
    cls = _allowed_class(description.get("class"))  # type: ignore[arg-type]
    params = description.get("params")
    attributes = description.get("attributes")
    if not isinstance(params, dict) or not isinstance(attributes, dict):
        raise ModelFileError("estimator description lacks 'params' or 'attributes'")
    decoded_params = {str(k): _decode(v, arrays, used) for k, v in params.items()}
    try:
        estimator = cls(**decoded_params)
        if hasattr(estimator, "_parameter_constraints"):
            estimator._validate_params()
    except Exception as exc:
        raise ModelFileError(
            f"model file has invalid parameters for {cls.__name__}: {exc}"
        ) from exc
    for key, value in attributes.items():
        if not (isinstance(key, str) and key.endswith("_") and not key.startswith("_")):
            raise ModelFileError(f"model file has an invalid attribute name {key!r}")
        if hasattr(type(estimator), key):  # a method or property of the class
            raise ModelFileError(f"model file has an invalid attribute name {key!r}")
        setattr(estimator, key, _decode(value, arrays, used))
    _after_load(estimator)
    return estimator


# ---------------------------------------------------------------------------- validation
def _array(estimator: Any, name: str) -> NDArray[np.float64]:
    value = getattr(estimator, name, None)
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        raise ModelFileError(f"model file lacks a floating-point array '{name}'")
    if not np.all(np.isfinite(value)):
        raise ModelFileError(f"'{name}' in the model file contains NaN or infinity")
    return value


def validated_mixture_params(
    weights: NDArray[Any],
    means: NDArray[Any],
    covariances: NDArray[Any],
    precisions_cholesky: NDArray[Any],
    covariance_type: str,
) -> Any:
    """Check stored mixture parameters and return them as :class:`MixtureParams`.

    Checks shapes, finiteness, weights (non-negative, summing to one), covariances
    (symmetric, positive definite) and that the precision Cholesky factors invert the
    covariances.

    Raises
    ------
    ModelFileError
    """
    from gmmkit.core.covariance import CovarianceError, cholesky_precision, get_covariance_type
    from gmmkit.core.params import MixtureParams

    try:
        cov_type = get_covariance_type(covariance_type)
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"unknown covariance type {covariance_type!r}") from exc
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
    try:
        cholesky_precision(covariances, covariance_type)
    except CovarianceError as exc:
        raise ModelFileError("covariances_ are not positive definite") from exc
    if cov_type.layout in ("full", "tied"):
        # U.T @ C @ U = I when U @ U.T is the inverse of C.
        identity = np.einsum("kji,kjl,klm->kim", chols, mats, chols)
        if np.abs(identity - np.eye(d)).max() > 1e-5:
            raise ModelFileError("precisions_cholesky_ do not match covariances_")
    elif not np.allclose(precisions_cholesky * np.sqrt(covariances), 1.0, rtol=0, atol=1e-8):
        raise ModelFileError("precisions_cholesky_ do not match covariances_")
    return MixtureParams(
        weights=weights,
        means=means,
        covariances=covariances,
        precisions_cholesky=precisions_cholesky,
        covariance_type=covariance_type,
    )


def _check_generator(generator: Any) -> None:
    """Shapes of a PCAGaussianMixtureGenerator's projection agree with its mixture."""
    mean = _array(generator, "mean_")
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
        actual = _array(generator, name).shape
        if actual != shape:
            raise ModelFileError(f"{name} should have shape {shape}, got {actual}")
    if generator.n_pca_components_ != n_pca or generator.n_features_in_ != d:
        raise ModelFileError("n_pca_components_ / n_features_in_ do not match the arrays")


def _after_load(estimator: Any) -> None:
    """Validate a rebuilt estimator and restore state derived from its attributes."""
    from gmmkit.mixture import GaussianMixture

    if isinstance(estimator, GaussianMixture):
        params = validated_mixture_params(
            _array(estimator, "weights_"),
            _array(estimator, "means_"),
            _array(estimator, "covariances_"),
            _array(estimator, "precisions_cholesky_"),
            estimator.covariance_type,
        )
        k, d = params.means.shape
        if k != estimator.n_components:
            raise ModelFileError(
                f"model has {k} components but n_components is {estimator.n_components}"
            )
        n_features_in = getattr(estimator, "n_features_in_", d)
        if n_features_in != d:
            raise ModelFileError(f"n_features_in_ is {n_features_in} but means_ has {d} columns")
        names = getattr(estimator, "feature_names_in_", None)
        if names is not None and len(names) != d:
            raise ModelFileError(f"feature_names_in_ has {len(names)} names for {d} features")
        estimator._set_params_from(params)
    for name, value in _fitted_attributes(estimator).items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            if not np.all(np.isfinite(value)):
                raise ModelFileError(f"'{name}' in the model file contains NaN or infinity")
    if type(estimator).__name__ == "PCAGaussianMixtureGenerator":
        _check_generator(estimator)
    for name in _FINITE_SCALARS.get(type(estimator).__name__, ()):
        value = getattr(estimator, name, None)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ModelFileError(f"'{name}' must be a finite number, got {value!r}")
    # Wrappers whose mixture sees the input columns as they are (not a projection).
    for name in ("mixture_", "best_estimator_"):
        nested = getattr(estimator, name, None)
        if not isinstance(nested, GaussianMixture) or isinstance(estimator, GaussianMixture):
            continue
        if type(estimator).__name__ == "PCAGaussianMixtureGenerator":
            continue
        if getattr(estimator, "n_features_in_", nested.n_features_in_) != nested.n_features_in_:
            raise ModelFileError(f"n_features_in_ does not match {name}")
    hook: Callable[[], None] | None = getattr(estimator, "_after_load", None)
    if hook is not None:
        hook()


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
        If the file is truncated, corrupt, foreign, pickled or fails validation.
    """
    metadata, arrays = _read_members(path)
    used: set[str] = set()
    try:
        estimator = _build(metadata["estimator"], arrays, used)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    except RecursionError as exc:
        raise ModelFileError(f"{path}: metadata is nested too deeply") from exc
    unused = sorted(set(arrays) - used)
    if unused:
        raise ModelFileError(f"{path}: unreferenced arrays {unused}")
    return estimator


def read_metadata(path: PathLike) -> dict[str, Any]:
    """Metadata of a model file (format, versions, summary) after checking its integrity.

    Returns
    -------
    dict
        The JSON metadata described in :mod:`gmmkit.modelfile`.
    """
    metadata, _ = _read_members(path)
    return metadata
