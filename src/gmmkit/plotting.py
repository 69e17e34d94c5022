"""Plots of fitted mixtures and their applications (matplotlib, extra ``plot``).

matplotlib is imported only when a function is called.  Every function draws into the
given ``ax`` (or a new figure) and returns the Axes, or the Figure for multi-panel plots.

Functions accept the fitted objects of gmmkit: a :class:`~gmmkit.GaussianMixture` (or a
subclass), or anything holding one -- :class:`~gmmkit.GaussianMixtureSelector`
(``best_estimator_``), :class:`~gmmkit.AnomalyDetector` and
:class:`~gmmkit.PCAGaussianMixtureGenerator` (``mixture_``), a selection / segmentation /
1-D result (``best`` / ``model``).

Every function that plots data with a model takes the data first and the model second
(``plot_density_1d(x, model)``, ``plot_clusters(X, model)``, ``plot_segmentation(image,
result)``), then keyword-only options, ``ax`` among them.  Axis labels come from the
data's names: a pandas DataFrame's columns or a Series' name, else the model's
``feature_names_in_``, else ``feature 0``, ``feature 1``, ...
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gmmkit.apps._common import full_covariances, import_optional
from gmmkit.mixture import GaussianMixture


def _pyplot() -> Any:
    return import_optional("matplotlib.pyplot", "plot")


def _mixture_of(obj: Any) -> GaussianMixture:
    """The fitted GaussianMixture inside ``obj``."""
    if isinstance(obj, GaussianMixture):
        if not hasattr(obj, "means_"):
            raise ValueError("the GaussianMixture is not fitted; call fit first")
        return obj
    for attribute in ("best_estimator_", "mixture_", "best", "model"):
        inner = getattr(obj, attribute, None)
        if isinstance(inner, GaussianMixture):
            return _mixture_of(inner)
    raise TypeError(
        f"expected a fitted GaussianMixture or an object holding one, got {type(obj).__name__}"
    )


def _holds_mixture(obj: Any) -> bool:
    if isinstance(obj, GaussianMixture):
        return True
    return any(isinstance(getattr(obj, attribute, None), GaussianMixture)
               for attribute in ("best_estimator_", "mixture_", "best", "model"))


def _feature_names(data: Any, mixture: GaussianMixture, n_features: int) -> list[str]:
    """Column names of a DataFrame (or a Series' name), else the model's, else numbers."""
    columns = getattr(data, "columns", None)
    if columns is not None and len(columns) == n_features:
        return [str(name) for name in columns]
    name = getattr(data, "name", None)
    if n_features == 1 and name is not None and not callable(name):
        return [str(name)]
    fitted = getattr(mixture, "feature_names_in_", None)
    if fitted is not None and len(fitted) == n_features:
        return [str(name) for name in fitted]
    return [f"feature {j}" for j in range(n_features)]


def _new_axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots()
    return ax


def plot_density_1d(
    x: ArrayLike,
    model: Any,
    *,
    ax: Any = None,
    bins: Any = "auto",
    n_points: int = 500,
    components: bool = True,
) -> Any:
    """Histogram of 1-D data with the mixture density and each weighted component.

    Parameters
    ----------
    x : array-like of shape (n,) or (n, 1)
    model : fitted 1-feature mixture (GaussianMixture, UnivariateMixture, ...)
    ax : matplotlib Axes, optional
    bins : int or str, default="auto"
        Passed to ``Axes.hist``.
    n_points : int, default=500
        Grid points of the density curves.
    components : bool, default=True
        Also draw ``weight_k * N(x | k)`` for every component.

    Returns
    -------
    matplotlib Axes
    """
    mixture = _mixture_of(model)
    if mixture.means_.shape[1] != 1:
        raise ValueError(
            f"plot_density_1d needs a 1-feature mixture, got {mixture.means_.shape[1]} features"
        )
    (x_label,) = _feature_names(x, mixture, 1)
    if x_label == "feature 0":
        x_label = "x"
    values = np.asarray(x, dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"x must be a non-empty 1-D array, got shape {values.shape}")
    ax = _new_axes(ax)
    ax.hist(values, bins=bins, density=True, color="0.8", edgecolor="0.6", label="data")
    means = mixture.means_[:, 0]
    stds = np.sqrt(full_covariances(mixture.params_)[:, 0, 0])
    low = min(values.min(), float(np.min(means - 4 * stds)))
    high = max(values.max(), float(np.max(means + 4 * stds)))
    grid = np.linspace(low, high, n_points)
    with warnings.catch_warnings():  # the grid has no names, whatever the model was fitted on
        warnings.filterwarnings("ignore", "X does not have valid feature names")
        density = np.exp(mixture.score_samples(grid[:, None]))
    ax.plot(grid, density, color="k", lw=2, label="mixture")
    if components:
        for k in np.argsort(means):
            z = (grid - means[k]) / stds[k]
            density = mixture.weights_[k] * np.exp(-0.5 * z * z) / (stds[k] * np.sqrt(2 * np.pi))
            ax.plot(grid, density, ls="--", lw=1.2, label=f"component {k}")
    ax.set_xlabel(x_label)
    ax.set_ylabel("density")
    ax.legend(fontsize="small")
    return ax


def _ellipse_geometry(cov: NDArray[np.float64]) -> tuple[float, float, float]:
    """Width and height (one standard deviation, full axes) and angle in degrees."""
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 0.0)
    angle = float(np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1])))
    return 2 * float(np.sqrt(values[1])), 2 * float(np.sqrt(values[0])), angle


def plot_clusters(
    X: Any,
    model: Any,
    *,
    ax: Any = None,
    dims: Sequence[int] = (0, 1),
    sigmas: Sequence[float] = (1, 2, 3),
    labels: ArrayLike | None = None,
    point_size: float = 8.0,
    legend: bool = True,
) -> Any:
    """Scatter of 2-D data coloured by component, with n-sigma ellipses of every component.

    Works for every covariance type; with more than two features the two ``dims`` are
    shown, with each component's marginal covariance in them.  The ellipses are drawn
    opaque with a white outline and a line style per radius (solid, dashed, dotted), so
    the 3-sigma ones stay visible over dense points.

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_samples, n_features)
        A DataFrame's column names label the axes.
    model : fitted mixture (or an object holding one)
        The order ``plot_clusters(model, X)`` of earlier versions still works, with a
        ``DeprecationWarning``.
    ax : matplotlib Axes, optional
    dims : pair of int, default=(0, 1)
    sigmas : sequence of float, default=(1, 2, 3)
        Mahalanobis radii of the ellipses drawn for every component.
    labels : array-like of shape (n_samples,), optional
        Colours of the points; by default ``model.predict(X)``.
    point_size : float, default=8.0
    legend : bool, default=True
        A legend of the ellipse radii and (up to ten) component colours.

    Returns
    -------
    matplotlib Axes
    """
    from matplotlib import patheffects
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    if _holds_mixture(X) and not _holds_mixture(model):
        warnings.warn("plot_clusters(model, X) is deprecated: pass the data first, "
                      "plot_clusters(X, model), as every gmmkit plot does",
                      DeprecationWarning, stacklevel=2)
        X, model = model, X
    mixture = _mixture_of(model)
    data = np.asarray(X, dtype=np.float64)
    n_features = mixture.means_.shape[1]
    if data.ndim != 2 or data.shape[1] != n_features:
        raise ValueError(f"X must have shape (n_samples, {n_features}), got {data.shape}")
    dims = [int(d) for d in dims]
    if len(dims) != 2 or len(set(dims)) != 2 or not all(0 <= d < n_features for d in dims):
        raise ValueError(f"dims must be two distinct features in 0..{n_features - 1}, got {dims}")
    if labels is None:
        labels = mixture.predict(X)
    labels = np.asarray(labels)
    if labels.shape != (data.shape[0],):
        raise ValueError(f"labels should have shape ({data.shape[0]},), got {labels.shape}")
    ax = _new_axes(ax)
    cmap = _pyplot().get_cmap("tab10" if mixture.n_components <= 10 else "tab20")
    colours = [cmap(k % cmap.N) for k in range(mixture.n_components)]
    point_colours = [colours[int(k) % len(colours)] for k in labels]
    ax.scatter(data[:, dims[0]], data[:, dims[1]], s=point_size, c=point_colours, alpha=0.45,
               linewidths=0)
    covariances = full_covariances(mixture.params_)[:, dims][:, :, dims]
    styles = ("-", "--", ":", "-.")
    halo = [patheffects.withStroke(linewidth=3.6, foreground="white")]
    for k in range(mixture.n_components):
        width, height, angle = _ellipse_geometry(covariances[k])
        centre = (mixture.means_[k, dims[0]], mixture.means_[k, dims[1]])
        for i, sigma in enumerate(sigmas):
            ax.add_patch(
                Ellipse(centre, sigma * width, sigma * height, angle=angle, fill=False,
                        edgecolor=colours[k], lw=1.8, ls=styles[i % len(styles)],
                        path_effects=halo, zorder=3)
            )
        ax.plot(*centre, marker="x", color="k", ms=7, zorder=4)
    names = _feature_names(X, mixture, n_features)
    ax.set_xlabel(names[dims[0]])
    ax.set_ylabel(names[dims[1]])
    ax.set_title(f"{mixture.n_components} components, {mixture.covariance_type} covariance")
    if legend:
        handles = [Line2D([], [], color="0.2", lw=1.8, ls=styles[i % len(styles)],
                          label=f"{sigma:g}-sigma ellipse") for i, sigma in enumerate(sigmas)]
        if mixture.n_components <= 10:
            handles += [Line2D([], [], color=colours[k], marker="o", ls="none",
                               label=f"component {k}") for k in range(mixture.n_components)]
        ax.legend(handles=handles, fontsize="small", loc="best", framealpha=0.85)
    ax.autoscale_view()
    return ax


def plot_convergence(model: Any, *, ax: Any = None) -> Any:
    """Mean log-likelihood at every EM iteration of the kept initialisation.

    Parameters
    ----------
    model : fitted mixture (or an object holding one), with ``lower_bounds_``
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    mixture = _mixture_of(model)
    bounds = np.asarray(getattr(mixture, "lower_bounds_", []), dtype=np.float64)
    if bounds.size == 0:
        raise ValueError("the model has no per-iteration log-likelihoods (lower_bounds_)")
    ax = _new_axes(ax)
    from matplotlib.ticker import MaxNLocator

    ax.plot(np.arange(1, bounds.size + 1), bounds, marker="o", ms=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)  # values readable without an offset
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("mean log-likelihood")
    state = "converged" if mixture.converged_ else "not converged"
    ax.set_title(f"{mixture.n_components} components: {state} after {mixture.n_iter_} iterations")
    return ax


#: How :func:`plot_criteria` draws each covariance model: colour and (fillable) marker.
#: As in mclust's BIC plot, the spherical models are grey and black; the others get
#: distinct colours, and markers by family (triangles: diagonal; the rest: ellipsoidal).
MODEL_STYLES: dict[str, tuple[str, str]] = {
    "EII": ("0.55", "o"),
    "VII": ("black", "s"),
    "EEI": ("#1f77b4", "^"),
    "VEI": ("#ff7f0e", "v"),
    "EVI": ("#2ca02c", "<"),
    "VVI": ("#d62728", ">"),
    "EEE": ("#9467bd", "D"),
    "VEE": ("#8c564b", "d"),
    "EVE": ("#e377c2", "p"),
    "VVE": ("#bcbd22", "h"),
    "EEV": ("#17becf", "P"),
    "VEV": ("#1a2a80", "X"),
    "EVV": ("#b8860b", "8"),
    "VVV": ("#00693e", "*"),
}

_LEGEND_PLACES = ("right", "below", "inside")


def _model_style(covariance_type: str) -> tuple[str, str]:
    """Colour and marker of a covariance model (aliases share their model's)."""
    from gmmkit.core.covariance import get_covariance_type

    try:
        return MODEL_STYLES[get_covariance_type(covariance_type).model]
    except ValueError:  # a name this version does not know (an old file): plain grey
        return ("0.4", "o")


def plot_criteria(
    result: Any,
    *,
    criteria: Sequence[str] = ("bic", "aic"),
    ax: Any = None,
    legend: str | None = "right",
) -> Any:
    """Information criteria against K, one line per covariance model (mclust's BIC plot).

    Every model has its own colour and marker (:data:`MODEL_STYLES`; the fourteen models
    stay apart in one figure), models are listed in mclust's order, each criterion has its
    line style (BIC solid, AIC dashed, ICL dotted), degenerate candidates are drawn with
    hollow markers, failed fits leave a gap, and each criterion's choice is starred.  The
    values have gmmkit's sign (lower is better; mclust plots the negative).

    Parameters
    ----------
    result : SelectionResult (from :func:`~gmmkit.select`) or a fitted
        :class:`~gmmkit.GaussianMixtureSelector`
    criteria : sequence of {"bic", "aic", "icl"}, default=("bic", "aic")
    ax : matplotlib Axes, optional
        Default: a new figure, wide enough for the legend.
    legend : {"right", "below", "inside"} or None, default="right"
        Where the legend goes: outside the axes on the right (one column per 16 entries),
        outside below them in rows of up to seven (for side-by-side panels), inside the
        axes in two columns, or nowhere.

    Returns
    -------
    matplotlib Axes
    """
    from gmmkit.apps._common import mclust_order

    result = getattr(result, "selection_", result)
    rows = getattr(result, "rows", None)
    if rows is None:
        raise TypeError(f"expected a SelectionResult, got {type(result).__name__}")
    criteria = [criteria] if isinstance(criteria, str) else list(criteria)
    styles = {"bic": "-", "aic": "--", "icl": ":"}
    for name in criteria:
        if name not in styles:
            raise ValueError(f"criteria must be among {tuple(styles)}, got {name!r}")
    if legend is not None and legend not in _LEGEND_PLACES:
        raise ValueError(f"legend must be one of {_LEGEND_PLACES} or None, got {legend!r}")
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        size = (10.0, 5.0) if legend == "right" else (8.0, 6.0)
        _, ax = _pyplot().subplots(figsize=size, layout="constrained")

    def order(name: str) -> int:
        try:
            return mclust_order(name)
        except ValueError:
            return len(MODEL_STYLES)

    types = sorted(dict.fromkeys(row["covariance_type"] for row in rows), key=order)
    handles = []
    any_degenerate = False
    for covariance_type in types:
        colour, marker = _model_style(covariance_type)
        mine = sorted(
            (row for row in rows if row["covariance_type"] == covariance_type),
            key=lambda row: row["n_components"],
        )
        ks = np.array([row["n_components"] for row in mine])
        degenerate = np.array([bool(row["degenerate"]) for row in mine], dtype=bool)
        any_degenerate |= bool(degenerate.any())
        area = 70 if marker == "*" else 30
        for name in criteria:
            values = np.array([row[name] for row in mine], dtype=np.float64)
            ax.plot(ks, values, ls=styles[name], color=colour, lw=1.3,
                    label=f"{name.upper()} {covariance_type}")
            ax.scatter(ks[~degenerate], values[~degenerate], color=colour, marker=marker,
                       s=area, zorder=3, linewidths=0)
            ax.scatter(ks[degenerate], values[degenerate], facecolors="white",
                       edgecolors=colour, marker=marker, s=area, linewidths=1.2, zorder=3)
        handles.append(Line2D([], [], color=colour, marker=marker, ls="-", lw=1.3,
                              ms=8 if marker == "*" else 6, label=covariance_type))
    if len(criteria) > 1:
        handles.extend(Line2D([], [], color="0.3", ls=styles[name], lw=1.3, label=name.upper())
                       for name in criteria)
    if any_degenerate:
        handles.append(Line2D([], [], color="0.3", marker="o", mfc="white", ls="none",
                              label="degenerate"))
    # one star per drawn criterion, at its own minimum (sound candidates first), so an
    # AIC panel never shows the BIC choice at a BIC height
    sound = [row for row in rows if not row["degenerate"]] or list(rows)
    for name in criteria:
        finite = [row for row in sound if np.isfinite(float(row[name]))]
        if not finite:
            continue
        best = min(finite, key=lambda row: float(row[name]))
        handles.append(
            ax.scatter([best["n_components"]], [best[name]], marker="*", s=250,
                       color="gold", edgecolors="k", zorder=4,
                       label=f"lowest {name.upper()}: K={best['n_components']} "
                       f"{best['covariance_type']}")
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("number of components")
    ax.set_ylabel(" / ".join(name.upper() for name in criteria) + " (lower is better)")
    ax.grid(True, color="0.9", lw=0.6)
    if legend == "right":
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  ncol=1 + (len(handles) - 1) // 16, fontsize="small", borderaxespad=0.0)
    elif legend == "below":
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13),
                  ncol=min(7, len(handles)), fontsize="small", borderaxespad=0.0)
    elif legend == "inside":
        ax.legend(handles=handles, ncol=2, fontsize="small")
    return ax


def _as_display_image(image: NDArray[Any]) -> NDArray[Any]:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype.kind == "u" and image.dtype != np.uint8:
        return image.astype(np.float64) / np.iinfo(image.dtype).max
    return image


def plot_segmentation(image: ArrayLike, result: Any, *, show_labels: bool = True) -> Any:
    """The original image beside its segmentation (recoloured, and the label map).

    Parameters
    ----------
    image : array-like of shape (H, W) or (H, W, C)
        The image given to :func:`~gmmkit.segment_image`.
    result : SegmentationResult
    show_labels : bool, default=True
        Add a third panel with the label map.

    Returns
    -------
    matplotlib Figure
    """
    original = np.asarray(image)
    labels = getattr(result, "labels", None)
    recoloured = getattr(result, "image", None)
    if labels is None or recoloured is None:
        raise TypeError(f"expected a SegmentationResult, got {type(result).__name__}")
    if original.shape != recoloured.shape:
        raise ValueError(
            f"image has shape {original.shape} but the segmentation is of shape "
            f"{recoloured.shape}"
        )
    n_panels = 3 if show_labels else 2
    fig, axes = _pyplot().subplots(1, n_panels, figsize=(4.5 * n_panels, 4))
    grey = original.ndim == 2 or original.shape[2] == 1
    cmap = "gray" if grey else None
    axes[0].imshow(_as_display_image(original), cmap=cmap)
    axes[0].set_title("original")
    k = int(labels.max()) + 1
    axes[1].imshow(_as_display_image(recoloured), cmap=cmap)
    axes[1].set_title(f"{k} components (component means)")
    for ax in axes:
        ax.set_axis_off()
    if show_labels:
        shown = axes[2].imshow(labels, cmap="tab20" if k > 10 else "tab10", vmin=-0.5,
                               vmax=(20 if k > 10 else 10) - 0.5, interpolation="nearest")
        axes[2].set_title("labels")
        bar = fig.colorbar(shown, ax=axes[2], shrink=0.6, label="component")
        bar.set_ticks(range(min(k, 20)) if k <= 20 else np.linspace(0, k - 1, 6).round())
        bar.ax.set_ylim(-0.5, min(k, 20) - 0.5)
    else:
        fig.tight_layout()
    return fig


def plot_image_grid(
    images: ArrayLike,
    *,
    image_shape: tuple[int, ...] | None = None,
    n_cols: int = 10,
    cmap: str = "binary",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Any:
    """A grid of images, e.g. generated digits.

    Parameters
    ----------
    images : array-like of shape (n, H, W), (n, H, W, C) or flat rows (n, H * W)
    image_shape : tuple, optional
        Shape of one image when ``images`` holds flat rows; a square is assumed otherwise.
    n_cols : int, default=10
    cmap : str, default="binary"
    vmin, vmax : float, optional
        Common intensity range (default: that of all images).

    Returns
    -------
    matplotlib Figure
    """
    stack = np.asarray(images)
    if stack.ndim == 2:
        if image_shape is None:
            side = round(float(np.sqrt(stack.shape[1])))
            if side * side != stack.shape[1]:
                raise ValueError(
                    f"rows of length {stack.shape[1]} are not square images; pass image_shape"
                )
            image_shape = (side, side)
        if int(np.prod(image_shape)) != stack.shape[1]:
            raise ValueError(
                f"image_shape {image_shape} does not match rows of length {stack.shape[1]}"
            )
        stack = stack.reshape((stack.shape[0], *image_shape))
    if stack.ndim not in (3, 4) or stack.shape[0] == 0:
        raise ValueError(f"images must be a non-empty stack of images, got shape {stack.shape}")
    if not isinstance(n_cols, int) or n_cols < 1:
        raise ValueError(f"n_cols must be a positive int, got {n_cols!r}")
    n = stack.shape[0]
    cols = min(n_cols, n)
    rows = int(np.ceil(n / cols))
    low = float(np.min(stack)) if vmin is None else vmin
    high = float(np.max(stack)) if vmax is None else vmax
    fig, axes = _pyplot().subplots(rows, cols, figsize=(0.8 * cols, 0.8 * rows), squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if index < n:
            ax.imshow(stack[index], cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.01, right=0.99, top=0.99, bottom=0.01)
    return fig
