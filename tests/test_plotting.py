"""Plots render real content with the Agg backend (artists drawn, non-trivial PNG files)."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

import gmmkit  # noqa: E402
from gmmkit import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def blobs(seed: int = 0):
    rng = np.random.default_rng(seed)
    return np.vstack(
        [
            rng.multivariate_normal([0, 0], [[1.0, 0.8], [0.8, 1.0]], 150),
            rng.multivariate_normal([5, 1], [[0.4, 0.0], [0.0, 1.5]], 100),
            rng.multivariate_normal([2, 6], [[1.0, -0.3], [-0.3, 0.5]], 100),
        ]
    )


def saved_png(fig, path):
    """Save, then return the pixels; checks the file is a real, non-blank picture."""
    fig.savefig(path, dpi=80)
    assert path.stat().st_size > 5_000
    pixels = imread(path)
    assert pixels.std() > 0.05  # not a blank canvas
    return pixels


def test_density_1d(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 700), rng.normal(5, 0.7, 300)])
    fit = gmmkit.fit_1d(x, 2, random_state=0)
    ax = plotting.plot_density_1d(x, fit)
    assert len(ax.patches) > 10  # histogram bars
    assert len(ax.lines) == 3  # mixture + two components
    mixture_line, *component_lines = ax.lines
    grid = mixture_line.get_xdata()
    np.testing.assert_allclose(mixture_line.get_ydata(), fit.pdf(grid), rtol=1e-8)
    np.testing.assert_allclose(
        sum(line.get_ydata() for line in component_lines), fit.pdf(grid), rtol=1e-8
    )
    saved_png(ax.figure, tmp_path / "density.png")
    # a plain GaussianMixture on a column works too
    model = gmmkit.GaussianMixture(2, random_state=0).fit(x[:, None])
    assert len(plotting.plot_density_1d(x[:, None], model, components=False).lines) == 1


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_clusters_with_ellipses_for_every_covariance_type(tmp_path, covariance_type):
    X = blobs()
    model = gmmkit.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    ax = plotting.plot_clusters(X, model)
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 3 * 3  # 1, 2 and 3 sigma for each component
    # every radius opaque (3-sigma as visible as 1-sigma over dense points), drawn above
    # the points, told apart by line style and named in the legend
    assert all(e.get_alpha() in (None, 1.0) and e.get_zorder() > 2 for e in ellipses)
    assert len({e.get_linestyle() for e in ellipses}) == 3
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[:3] == ["1-sigma ellipse", "2-sigma ellipse", "3-sigma ellipse"]
    assert legend[3:] == ["component 0", "component 1", "component 2"]
    assert ax.get_xlabel() == "feature 0" and ax.get_ylabel() == "feature 1"
    assert len(ax.collections) == 1 and len(ax.collections[0].get_offsets()) == len(X)
    # geometry: the 1-sigma ellipse has full axes 2*sqrt(eigenvalues) of the covariance
    cov = model.covariances_
    if covariance_type == "tied":
        covs = np.broadcast_to(cov, (3, 2, 2))
    elif covariance_type == "diag":
        covs = np.stack([np.diag(c) for c in cov])
    elif covariance_type == "spherical":
        covs = np.stack([c * np.eye(2) for c in cov])
    else:
        covs = cov
    for k in range(3):
        one_sigma = ellipses[3 * k]
        np.testing.assert_allclose(one_sigma.center, model.means_[k])
        expected = 2 * np.sqrt(np.linalg.eigvalsh(covs[k]))[::-1]
        np.testing.assert_allclose([one_sigma.width, one_sigma.height], expected, rtol=1e-8)
        np.testing.assert_allclose(ellipses[3 * k + 2].width, 3 * one_sigma.width)
    saved_png(ax.figure, tmp_path / f"clusters_{covariance_type}.png")


def test_clusters_in_two_of_many_dimensions(tmp_path):
    X = np.hstack([blobs(), np.random.default_rng(1).normal(size=(350, 2))])
    model = gmmkit.GaussianMixture(3, random_state=0).fit(X)
    ax = plotting.plot_clusters(X, model, dims=(1, 2), sigmas=(2,))
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 3
    marginal = model.covariances_[0][np.ix_([1, 2], [1, 2])]
    np.testing.assert_allclose(
        [ellipses[0].width, ellipses[0].height],
        2 * 2 * np.sqrt(np.linalg.eigvalsh(marginal))[::-1],
    )
    saved_png(ax.figure, tmp_path / "clusters_dims.png")


def test_axis_labels_come_from_the_data_names():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(blobs(), columns=["height", "weight"])
    model = gmmkit.GaussianMixture(3, random_state=0).fit(frame)
    ax = plotting.plot_clusters(frame, model)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("height", "weight")
    # a plain array plotted with a model fitted on a DataFrame: the model's names
    with pytest.warns(UserWarning, match="feature names"):  # scikit-learn's, on predict
        ax = plotting.plot_clusters(frame.to_numpy(), model, dims=(1, 0))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("weight", "height")
    scores = pd.Series(blobs()[:, 0], name="exam score")
    fit = gmmkit.GaussianMixture(2, random_state=0).fit(scores.to_frame())
    assert plotting.plot_density_1d(scores, fit).get_xlabel() == "exam score"
    assert plotting.plot_density_1d(scores.to_numpy(), fit).get_xlabel() == "exam score"
    plain = gmmkit.GaussianMixture(2, random_state=0).fit(blobs()[:, :1])
    assert plotting.plot_density_1d(blobs()[:, 0], plain).get_xlabel() == "x"


def test_clusters_accepts_the_old_argument_order_with_a_warning():
    X = blobs()
    model = gmmkit.GaussianMixture(3, random_state=0).fit(X)
    with pytest.warns(DeprecationWarning, match="data first"):
        ax = plotting.plot_clusters(model, X)
    assert len(ax.collections[0].get_offsets()) == len(X)


def test_convergence(tmp_path):
    model = gmmkit.GaussianMixture(3, random_state=0, tol=1e-6).fit(blobs())
    ax = plotting.plot_convergence(model)
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), model.lower_bounds_)
    assert len(line.get_xdata()) == model.n_iter_
    saved_png(ax.figure, tmp_path / "convergence.png")


def test_criteria_against_k(tmp_path):
    result = gmmkit.select(blobs(), range(1, 6), ("full", "tied", "diag", "spherical"),
                           random_state=0)
    ax = plotting.plot_criteria(result)
    assert len(ax.lines) == 4 * 2  # BIC and AIC for each covariance type
    bic_full = next(line for line in ax.lines if line.get_label() == "BIC full")
    table = result.table.query("covariance_type == 'full'").sort_values("n_components")
    np.testing.assert_allclose(bic_full.get_ydata(), table["bic"])
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    best = result.best_row
    assert f"lowest BIC: K={best['n_components']} {best['covariance_type']}" in labels
    # models in mclust's order (spherical = VII, diag = VVI, tied = EEE, full = VVV)
    assert labels[:4] == ["spherical", "diag", "tied", "full"]
    saved_png(ax.figure, tmp_path / "criteria.png")
    # an AIC-only panel stars the AIC minimum at its AIC height, not the BIC choice
    aic_ax = plotting.plot_criteria(result, criteria=("aic",))
    sound = result.table[~result.table["degenerate"]]
    star = aic_ax.collections[-1].get_offsets()[0]
    assert star[1] == sound["aic"].min()
    assert star[0] == sound.loc[sound["aic"].idxmin(), "n_components"]
    saved_png(ax.figure, tmp_path / "criteria.png")
    # the estimator form is accepted too
    selector = gmmkit.GaussianMixtureSelector((1, 2, 3), covariance_types=("diag",),
                                              random_state=0).fit(blobs())
    assert len(plotting.plot_criteria(selector, criteria=("icl",)).lines) == 1


def test_criteria_of_all_fourteen_models_stay_apart(tmp_path):
    """mclust's default selection in one figure: every model its own colour and marker,
    the legend outside the axes (or below them, or inside in two columns)."""
    from gmmkit.core.covariance import MODEL_NAMES

    # quick fits (scikit-learn's plain EM rule): the figure, not the optimum, is tested
    result = gmmkit.select(blobs()[::2], range(1, 5), tol=1e-3, init_params="kmeans",
                           random_state=0)
    ax = plotting.plot_criteria(result, criteria=("bic",))
    assert len(ax.lines) == 14
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[:14] == list(MODEL_NAMES)
    handles = ax.get_legend().legend_handles[:14]
    styles = {(str(line.get_color()), line.get_marker()) for line in handles}
    assert len({colour for colour, _ in styles}) == 14
    assert len({marker for _, marker in styles}) == 14
    # the legend sits outside, right of the axes, and the saved figure keeps all of it
    fig = ax.figure
    fig.canvas.draw()
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 > ax.get_window_extent().x1
    assert legend_box.x1 <= fig.bbox.x1 + 1
    saved_png(fig, tmp_path / "fourteen.png")
    fig, axes = plt.subplots(1, 3)
    for place, other in zip(("below", "inside", None), axes):
        plotting.plot_criteria(result, legend=place, ax=other)
        assert len(other.lines) == 14 * 2
        assert (other.get_legend() is None) == (place is None)
    fig.canvas.draw()
    assert axes[0].get_legend().get_window_extent().y1 < axes[0].get_window_extent().y0
    with pytest.raises(ValueError, match="legend"):
        plotting.plot_criteria(result, legend="left")


def test_segmentation_before_after(tmp_path):
    rng = np.random.default_rng(0)
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[:, :20] = [220, 30, 30]
    image[:, 20:40] = [30, 200, 40]
    image[:, 40:] = [20, 40, 230]
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    result = gmmkit.segment_image(image, 3, random_state=0)
    fig = plotting.plot_segmentation(image, result)
    assert len(fig.axes) == 4  # original, segmentation, labels and the labels' colour bar
    assert all(len(ax.images) == 1 for ax in fig.axes[:3])
    assert fig.axes[3].get_ylabel() == "component"
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), result.image)
    saved_png(fig, tmp_path / "segmentation.png")
    grey = image[:, :, 0]
    grey_result = gmmkit.segment_image(grey, 2, random_state=0)
    assert len(plotting.plot_segmentation(grey, grey_result, show_labels=False).axes) == 2


def test_grid_of_generated_digits(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits().data
    generator = gmmkit.PCAGaussianMixtureGenerator(4, variance=0.9, random_state=0).fit(digits)
    samples, _ = generator.sample(30)
    fig = plotting.plot_image_grid(samples, n_cols=10)
    assert len(fig.axes) == 30
    assert all(len(ax.images) == 1 for ax in fig.axes)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), samples[0].reshape(8, 8))
    saved_png(fig, tmp_path / "digits.png")
    fig = plotting.plot_image_grid(samples[:7], n_cols=5)
    assert sum(len(ax.images) for ax in fig.axes) == 7 and len(fig.axes) == 10


def test_bad_input():
    X = blobs()
    model = gmmkit.GaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="1-feature"):
        plotting.plot_density_1d(X[:, 0], model)
    with pytest.raises(ValueError, match="shape"):
        plotting.plot_clusters(X[:, :1], model)
    with pytest.raises(ValueError, match="dims"):
        plotting.plot_clusters(X, model, dims=(0, 0))
    with pytest.raises(ValueError, match="not fitted"):
        plotting.plot_clusters(X, gmmkit.GaussianMixture(2))
    with pytest.raises(TypeError, match="GaussianMixture"):
        plotting.plot_convergence(object())
    with pytest.raises(TypeError, match="SelectionResult"):
        plotting.plot_criteria(model)
    with pytest.raises(ValueError, match="criteria"):
        plotting.plot_criteria(gmmkit.select(X, [1, 2], ("full",), random_state=0),
                               criteria=("mdl",))
    with pytest.raises(ValueError, match="square"):
        plotting.plot_image_grid(np.zeros((4, 10)))
    with pytest.raises(TypeError, match="SegmentationResult"):
        plotting.plot_segmentation(np.zeros((4, 4)), model)
