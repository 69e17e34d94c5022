"""Colour (and optionally position) segmentation of images with a Gaussian mixture."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import IO, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gmmkit.apps._common import check_not_too_many_components, import_optional
from gmmkit.mixture import GaussianMixture, _generator


@dataclass
class SegmentationResult:
    """Outcome of :func:`segment_image`.

    Attributes
    ----------
    labels : ndarray of shape (H, W), intp
        Component of every pixel.
    image : ndarray
        The input recoloured: every pixel takes its component's mean colour; same shape
        and dtype as the input image.
    model : GaussianMixture
        Fitted on the pixel features: colours scaled to [0, 1] (integer images divided by
        their dtype's maximum), then, when ``spatial_weight > 0``, the pixel's
        ``(row, column) / max(H, W)`` times ``spatial_weight``.
    colors : ndarray of shape (K, C)
        Mean colour of every component, in the input's scale and dtype.
    n_fit_pixels : int
        Pixels the mixture was fitted on (all of them unless ``max_fit_pixels`` was set).
    """

    labels: NDArray[np.intp]
    image: NDArray[Any] = field(repr=False)
    model: GaussianMixture = field(repr=False)
    colors: NDArray[Any]
    n_fit_pixels: int


def _colour_scale(dtype: np.dtype) -> float:
    if dtype.kind == "u":
        return float(np.iinfo(dtype).max)
    if dtype.kind == "f":
        return 1.0
    raise TypeError(f"image dtype must be unsigned integer (e.g. uint8) or float, got {dtype}"
    )


def pixel_features(
    image: NDArray[Any], spatial_weight: float = 0.0, dtype: Any = np.float32
) -> NDArray[Any]:
    """One feature row per pixel: scaled colour, then optionally weighted position.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, C)
    spatial_weight : float, default=0.0
        0 for colour only; otherwise the pixel's ``(row, col) / max(H, W)`` multiplied by
        this weight is appended (colours live in [0, 1], so 1 weighs a move across the
        whole image like a change from black to white).
    dtype : float dtype of the features

    Returns
    -------
    ndarray of shape (H * W, C) or (H * W, C + 2)
    """
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    colour = image.reshape(height * width, channels).astype(dtype)
    colour /= _colour_scale(image.dtype)
    if spatial_weight == 0:
        return colour
    rows, cols = np.indices((height, width), dtype=dtype)
    position = np.column_stack([rows.ravel(), cols.ravel()])
    position *= spatial_weight / max(height, width)
    return np.hstack([colour, position])


def _check_image(image: ArrayLike) -> NDArray[Any]:
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise ValueError(
            f"image must have shape (H, W) or (H, W, C), got an array of rank {array.ndim} "
            f"and shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0 or (array.ndim == 3 and array.shape[2] == 0):
        raise ValueError(f"image is empty: shape {array.shape}")
    _colour_scale(array.dtype)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError("image contains NaN or infinity")
    return array


def segment_image(
    image: ArrayLike,
    n_components: int,
    *,
    covariance_type: str = "full",
    spatial_weight: float = 0.0,
    max_fit_pixels: int | None = None,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    init_params: str = "kmeans",
    random_state: Any = None,
    n_jobs: int | None = None,
) -> SegmentationResult:
    """Segment an image into ``n_components`` regions of similar colour (and position).

    Pixels are fitted in float32 (statistics accumulate in float64).  Fitting every pixel
    of a 427 x 640 photo at K = 20 takes about two seconds on two cores; for larger images
    ``max_fit_pixels`` fits on a uniform random subsample of pixels and then labels every
    pixel with the fitted mixture.

    Parameters
    ----------
    image : array-like of shape (H, W) or (H, W, C)
        Unsigned integer (e.g. uint8) or float pixels.
    n_components : int
    covariance_type : str, default="full"
        A covariance model of :class:`~gmmkit.GaussianMixture`: one of mclust's fourteen
        (``"EII"``, ``"VII"``, ``"EEI"``, ..., ``"VEV"``, ``"EVV"``, ``"VVV"``) or
        scikit-learn's ``"spherical"``, ``"diag"``, ``"tied"``, ``"full"`` (= VVV).
    spatial_weight : float, default=0.0
        Append pixel positions as features (see :func:`pixel_features`) for spatially
        coherent segments; 0 segments by colour only.
    max_fit_pixels : int, optional
        Fit on at most this many randomly chosen pixels (all pixels are labelled).
    n_init, max_iter, tol, reg_covar, init_params, random_state, n_jobs
        Passed to :class:`~gmmkit.GaussianMixture`.

    Returns
    -------
    SegmentationResult
        ``.labels`` (H, W), ``.image`` (recoloured, same shape and dtype), ``.model``.

    Raises
    ------
    ValueError
        An image of the wrong rank, empty or with non-finite values; ``n_components``
        larger than the number of (fitted) pixels; bad parameters.
    TypeError
        An image of a dtype other than unsigned integer or float.
    """
    array = _check_image(image)
    if isinstance(n_components, bool) or not isinstance(n_components, Integral):
        raise TypeError(f"n_components must be an int, got {n_components!r}")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if not isinstance(spatial_weight, Real) or not spatial_weight >= 0:
        raise ValueError(f"spatial_weight must be a number >= 0, got {spatial_weight!r}")
    if max_fit_pixels is not None and (
        isinstance(max_fit_pixels, bool)
        or not isinstance(max_fit_pixels, Integral)
        or max_fit_pixels < 1
    ):
        raise ValueError(f"max_fit_pixels must be a positive int, got {max_fit_pixels!r}")
    height, width = array.shape[:2]
    n_pixels = height * width
    n_fit = n_pixels if max_fit_pixels is None else min(int(max_fit_pixels), n_pixels)
    check_not_too_many_components(int(n_components), n_fit)

    features = pixel_features(array, float(spatial_weight))
    model = GaussianMixture(
        int(n_components),
        covariance_type=covariance_type,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        init_params=init_params,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    if n_fit < n_pixels:
        rows = np.sort(_generator(random_state).choice(n_pixels, n_fit, replace=False))
        model.fit(features[rows])
        labels = model.predict(features)
    else:
        labels = model.fit_predict(features)

    channels = 1 if array.ndim == 2 else array.shape[2]
    colors = model.means_[:, :channels] * _colour_scale(array.dtype)
    if array.dtype.kind == "u":
        info = np.iinfo(array.dtype)
        colors = np.clip(np.rint(colors), info.min, info.max)
    colors = colors.astype(array.dtype)
    recoloured = colors[labels].reshape(array.shape)
    return SegmentationResult(
        labels=labels.reshape(height, width).astype(np.intp),
        image=recoloured,
        model=model,
        colors=colors,
        n_fit_pixels=n_fit,
    )


#: Pillow modes read_image converts before reading the pixels (see read_image).
_CONVERTED_MODES = {
    "1": "L",
    "La": "LA",
    "RGBa": "RGBA",
    "PA": "RGBA",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}


def _unit_interval(values: NDArray[Any], mode: str, where: str) -> NDArray[np.float32]:
    """Float intensities in [0, 1]: kept when already there, else scaled by their range."""
    values = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{where}: the mode {mode!r} image contains NaN or infinity")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        values = ((values - low) / (high - low if high > low else 1.0)).astype(np.float32)
    return values


def image_pixels(img: Any, where: str = "image") -> NDArray[Any]:
    """The pixels of an open Pillow image, in a form :func:`segment_image` fits and
    :func:`write_image` writes back.

    * ``L``, ``LA``, ``RGB``, ``RGBA``: as stored (uint8).
    * ``1`` becomes ``L`` (0 or 255); ``P`` becomes ``RGBA`` when it has a transparent
      colour, else ``RGB``; ``PA`` becomes ``RGBA``; ``CMYK``, ``YCbCr``, ``LAB``,
      ``HSV`` and ``RGBX`` become ``RGB``; premultiplied ``RGBa`` and ``La`` become
      ``RGBA`` and ``LA``.
    * Alpha is kept as a feature: transparent regions form segments of their own (their
      colour values are often arbitrary) and the recoloured image keeps them transparent.
    * ``I;16`` (16-bit grey, any byte order): uint16, scaled by 1/65535 for the fit.
    * ``I`` (32-bit integers): uint16 when the values fit 16 bits, else float in [0, 1]
      scaled by the value range; ``F`` (float): float in [0, 1], scaled by the value
      range unless already within it (segmenting is unaffected by the scaling).

    Any other mode is rejected with a ValueError naming it.
    """
    mode = str(img.mode)
    if mode == "P":
        mode = "RGBA" if "transparency" in img.info else "RGB"
        img = img.convert(mode)
    elif mode in _CONVERTED_MODES:
        img = img.convert(_CONVERTED_MODES[mode])
    elif mode.startswith("I;16") and mode != "I;16S":
        return np.asarray(img).astype(np.uint16)
    elif mode == "I":
        values = np.asarray(img)
        if values.size and values.min() >= 0 and values.max() <= np.iinfo(np.uint16).max:
            return values.astype(np.uint16)
        return _unit_interval(values, mode, where)
    elif mode == "F":
        return _unit_interval(np.asarray(img), mode, where)
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        raise ValueError(
            f"{where}: cannot segment an image of mode {mode!r}; convert it to RGB, RGBA, "
            "L or I;16 first"
        )
    return np.asarray(img).copy()


def read_image(path: str | os.PathLike[str]) -> NDArray[Any]:
    """Read an image file with Pillow (extra ``image``), in a form every image mode
    segments sensibly (see :func:`image_pixels` for the rule per mode).

    Returns
    -------
    ndarray of shape (H, W) or (H, W, C)
        uint8 for 8-bit images (C = 2 grey + alpha, 3 RGB, 4 RGBA), uint16 for 16-bit
        grey, float32 in [0, 1] for float images.

    Raises
    ------
    ValueError
        For an image mode without a sensible rule, naming the mode.
    """
    image_module = import_optional("PIL.Image", "image")
    with image_module.open(path) as img:
        return image_pixels(img, os.fspath(path))


def check_writable(image: ArrayLike, format: str) -> None:
    """Raise a ValueError, before any work, when :func:`write_image` cannot store an
    image of this shape and dtype (the segmented image has the input's) as ``format``.

    Parameters
    ----------
    image : array-like of shape (H, W) or (H, W, C)
    format : str
        Pillow's format name, e.g. from :func:`image_format`.
    """
    import io

    array = np.asarray(image)
    try:
        write_image(io.BytesIO(), array[:1, :1], format=format)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(
            f"cannot write the segmented image as {format}: {exc} (choose an output "
            "format that can hold it, e.g. .png or .tif)"
        ) from None


def image_format(path: str | os.PathLike[str]) -> str:
    """Pillow's name of the image format a file name's extension asks for.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
        For example ``"PNG"`` for ``photo.png``.

    Raises
    ------
    ValueError
        If Pillow cannot write files with that extension.
    """
    image_module = import_optional("PIL.Image", "image")
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    name = image_module.registered_extensions().get(suffix)
    if name is None or name not in image_module.SAVE:
        raise ValueError(
            f"cannot write an image to {os.fspath(path)}: "
            + (f"Pillow does not write {suffix!r} files" if suffix else "no file extension")
            + " (use .png, .jpg, .tif, .bmp, ...)"
        )
    return str(name)


#: matplotlib's ``tab10`` colours, then the light shades of ``tab20``: twenty categorical
#: colours told apart at a glance (RGB, 0-255).
_CATEGORICAL_COLOURS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
)  # fmt: skip
#: Pillow formats that store a palette ('P' mode) image losslessly.
_PALETTE_FORMATS = ("PNG", "GIF", "BMP", "TIFF")


def label_palette(n_labels: int = 256) -> NDArray[np.uint8]:
    """Distinct colours for labels ``0 .. n_labels - 1``, shape (n_labels, 3), uint8 RGB.

    The twenty colours of matplotlib's ``tab10`` and ``tab20`` first, then hues spaced by
    the golden ratio at three levels of saturation and brightness; no colour repeats for
    up to 256 labels.
    """
    import colorsys

    colours: list[tuple[int, ...]] = list(_CATEGORICAL_COLOURS[:n_labels])
    golden = (5**0.5 - 1) / 2
    i = 0
    while len(colours) < n_labels:
        level = (i // 3) % 3
        hue = (i * golden) % 1.0
        rgb = colorsys.hsv_to_rgb(hue, (0.55, 0.85, 0.4)[level], (0.95, 0.75, 0.6)[i % 3])
        colour = tuple(round(255 * c) for c in rgb)
        i += 1
        if colour not in colours:
            colours.append(colour)
    return np.asarray(colours, dtype=np.uint8).reshape(n_labels, 3)


def write_image(
    path: str | os.PathLike[str] | IO[bytes],
    image: ArrayLike,
    *,
    format: str | None = None,
    palette: bool = False,
) -> None:
    """Write an (H, W) or (H, W, 2|3|4) image with Pillow (extra ``image``).

    Float images are taken to be in [0, 1] and stored as 8-bit. A file is replaced
    atomically: it keeps its old content if writing fails.

    Parameters
    ----------
    path : str, path-like or binary file object
        Where to write.
    image : array-like of shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4)
        Grey, grey + alpha, RGB or RGBA.
    format : str, optional
        Pillow's format name (``"PNG"``, ``"JPEG"``, ...); by default the one the file
        extension asks for (see :func:`image_format`). Required for a file object.
    palette : bool, default=False
        Write an (H, W) uint8 label map as a palette image with :func:`label_palette`'s
        colours: pixel value ``i`` stays label ``i`` (the palette index, read back as is)
        but shows as a distinct colour. Only for PNG, GIF, BMP and TIFF; other formats,
        and labels above 255 (uint16), are written as grey levels.
    """
    image_module = import_optional("PIL.Image", "image")
    is_file = hasattr(path, "write")
    if format is None:
        if is_file:
            raise ValueError("write_image needs format= to write to a file object")
        format = image_format(path)  # type: ignore[arg-type]
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ValueError(
            "image must have shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4), "
            f"got {array.shape}"
        )
    if array.dtype.kind == "f":
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    elif array.dtype.kind == "b":
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8 and not (array.ndim == 2 and array.dtype == np.uint16):
        raise TypeError(f"cannot write an image of dtype {array.dtype}; use uint8 or float")
    picture = image_module.fromarray(array)
    if palette and array.ndim == 2 and array.dtype == np.uint8 and format in _PALETTE_FORMATS:
        picture.putpalette(label_palette(256).tobytes())  # the 'L' image becomes 'P'
    if is_file:
        picture.save(path, format=format)
        return
    from gmmkit._atomic import atomic_write

    with atomic_write(path, "wb") as handle:  # type: ignore[arg-type]
        picture.save(handle, format=format)
