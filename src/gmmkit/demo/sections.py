"""The sections of the demo report: each runs gmmkit on bundled or generated data and
returns text, figures and tables. Fitting and density maths are library calls; what is
computed here is evaluation against known truth (agreement scores, accuracies, timings).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.demo.html import Figure, Section, Table

#: The covariance models of the criteria section: one of each family, scikit-learn's four
#: among them (VII = spherical, VVI = diag, EEE = tied, VVV = full) and VEV, mclust's choice
#: for iris.  Seven of mclust's fourteen (what gmmkit.select tries by default) keep the
#: section to a few seconds; ``gmmkit select`` on the same data shows all fourteen.
CRITERIA_MODELS = ("EII", "VII", "EEI", "VVI", "EEE", "VEV", "VVV")


@dataclass
class Context:
    """Where figures go and how big the runs are.

    Attributes
    ----------
    out_dir : Path
    fast : bool
        Smaller data and ranges (the same kinds of figures), for tests.
    seed : int
    """

    out_dir: Path
    fast: bool
    seed: int

    def rng(self, offset: int) -> np.random.Generator:
        return np.random.default_rng(self.seed + offset)

    def save(self, fig: Any, name: str, caption: str) -> Figure:
        """Write a matplotlib figure as ``name.png`` and close it."""
        import matplotlib.pyplot as plt

        from gmmkit._atomic import atomic_write

        filename = f"{name}.png"
        try:
            with atomic_write(self.out_dir / filename, "wb") as handle:
                fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
        finally:
            plt.close(fig)
        return Figure(filename, caption)


def _plt() -> Any:
    import matplotlib.pyplot as plt

    return plt


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if np.isfinite(value) else "n/a"


def _ari(truth: NDArray[Any], labels: NDArray[Any]) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(truth, labels))


# ---------------------------------------------------------------------------- 1-D
def one_dimensional(ctx: Context) -> Section:
    import gmmkit
    from gmmkit import plotting

    truth = [(2000, 0.0, 0.35), (2000, 1.0, 0.2), (3000, 3.0, 0.3)]
    rng = ctx.rng(1)
    x = np.concatenate([rng.normal(mean, sd, size=n) for n, mean, sd in truth])
    # a small tol so that the curve shows EM's whole climb after the k-means start
    fit = gmmkit.fit_1d(x, 3, tol=1e-6, random_state=ctx.seed)

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    plotting.plot_density_1d(x, fit, ax=axes[0], bins=120)
    axes[0].set_title("7000 values from three Gaussians: histogram, mixture, components")
    plotting.plot_convergence(fit, ax=axes[1])
    figure = ctx.save(fig, "1d_fit", "Left: the data's histogram, the fitted mixture density "
                      "(black) and each weighted component (dashed). Right: mean log-likelihood "
                      "at every EM iteration.")
    total = sum(n for n, _, _ in truth)
    rows = [
        [str(k), _fmt(n / total), _fmt(fit.weights[k]), _fmt(mean), _fmt(fit.means[k]),
         _fmt(sd), _fmt(fit.stds[k])]
        for k, (n, mean, sd) in enumerate(truth)
    ]
    return Section(
        "one-d",
        "One variable, three Gaussians",
        [
            "2000 draws from N(0, 0.35²), 2000 from N(1, 0.2²) and 3000 from N(3, 0.3²), "
            "fitted with gmmkit.fit_1d(x, 3, tol=1e-6). The first two overlap heavily; EM "
            "still recovers weights, means and spreads.",
        ],
        [figure],
        [Table("True and fitted parameters (components sorted by mean)",
               ["component", "true weight", "fitted weight", "true mean", "fitted mean",
                "true sd", "fitted sd"], rows)],
    )


# ---------------------------------------------------------------------------- exam scores
#: The tutorials' big 1-D case: two groups of students, (weight, mean, sd).
EXAM_GROUPS = ((0.6, 55.0, 12.0), (0.4, 80.0, 6.0))


def _normal_mixture_density(grid: NDArray[np.float64], weights: NDArray[Any],
                            means: NDArray[Any], sds: NDArray[Any]) -> NDArray[np.float64]:
    """Weighted normal densities on ``grid``, one column per component."""
    z = (grid[:, None] - means[None, :]) / sds[None, :]
    return np.asarray(weights * np.exp(-0.5 * z * z) / (sds * np.sqrt(2 * np.pi)))


def exam_scores(ctx: Context) -> Section:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    import gmmkit

    n = 100_000 if ctx.fast else 800_000
    rng = ctx.rng(2)
    group = rng.random(n) < EXAM_GROUPS[0][0]
    (_, mean0, sd0), (_, mean1, sd1) = EXAM_GROUPS
    scores = np.where(group, rng.normal(mean0, sd0, n), rng.normal(mean1, sd1, n))
    X = scores[:, None]

    fits: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for label, cls in (("gmmkit", gmmkit.GaussianMixture), ("scikit-learn", SkGaussianMixture)):
        model = cls(2, random_state=ctx.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            begin = time.perf_counter()
            model.fit(X)
            seconds[label] = time.perf_counter() - begin
        fits[label] = model

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    grid = np.linspace(scores.min(), scores.max(), 600)
    truth = _normal_mixture_density(grid, *(np.array(column) for column in zip(*EXAM_GROUPS)))
    rows = [["truth (the two groups drawn)", "", "", "", "",
             ", ".join(_fmt(w) for w, _, _ in EXAM_GROUPS),
             ", ".join(_fmt(m) for _, m, _ in EXAM_GROUPS),
             ", ".join(_fmt(s) for _, _, s in EXAM_GROUPS)]]
    settings = {"gmmkit": "GaussianMixture(2): defaults (several starts, tol=None: "
                "relative 1e-9, max_iter=1000)",
                "scikit-learn": "GaussianMixture(2): defaults (one k-means start, tol=1e-3, "
                "max_iter=100)"}
    for ax, (label, model) in zip(axes, fits.items()):
        order = np.argsort(model.means_[:, 0])
        means = model.means_[order, 0]
        sds = np.sqrt(model.covariances_.reshape(2, -1)[order, 0])
        weights = model.weights_[order]
        ax.hist(scores, bins=200, density=True, color="0.82", edgecolor="none",
                label=f"{n:,} scores")
        ax.plot(grid, truth.sum(axis=1), color="0.35", lw=1, ls=":", label="true density")
        components = _normal_mixture_density(grid, weights, means, sds)
        ax.plot(grid, components.sum(axis=1), color="k", lw=2, label="fitted mixture")
        for k, colour in enumerate(("tab:blue", "tab:orange")):
            ax.plot(grid, components[:, k], color=colour, lw=1.5, ls="--",
                    label=f"component: mean {means[k]:.1f}, sd {sds[k]:.1f}")
        ax.set_title(f"{label}, default settings: {seconds[label]:.1f} s, "
                     f"mean log-lik. {model.score(X):.5f}")
        ax.set_xlabel("exam score")
        ax.legend(fontsize="small", loc="upper left")
        rows.append([label, settings[label], f"{seconds[label]:.2f}", str(model.n_iter_),
                     "yes" if model.converged_ else "no", ", ".join(_fmt(w) for w in weights),
                     ", ".join(_fmt(m) for m in means), ", ".join(_fmt(s) for s in sds)])
        rows[-1].insert(5, _fmt(model.score(X), 8))
    true_density = _normal_mixture_density(scores, *(np.array(column)
                                                     for column in zip(*EXAM_GROUPS)))
    rows[0].insert(5, _fmt(float(np.mean(np.log(true_density.sum(axis=1)))), 8))
    axes[0].set_ylabel("density")
    fig.tight_layout()
    figure = ctx.save(fig, "exam_scores", "The same histogram twice, with the two-component "
                      "fit of each library at its default settings (solid: mixture; dashed: "
                      "weighted components; dotted: the true density).")
    faster = min(seconds, key=seconds.__getitem__)
    slower = max(seconds, key=seconds.__getitem__)
    ratio = seconds[slower] / seconds[faster]
    gap = fits["gmmkit"].score(X) - fits["scikit-learn"].score(X)
    return Section(
        "exam-scores",
        f"{n:,} exam scores: a bimodal distribution",
        [
            f"{n:,} scores from two groups of students: {EXAM_GROUPS[0][0]:.0%} from "
            f"N({mean0:g}, {sd0:g}²) and {EXAM_GROUPS[1][0]:.0%} from N({mean1:g}, {sd1:g}²). "
            "Each library fits two components with its own default settings, in this run "
            "on this machine; the settings differ, so this compares defaults, not EM "
            "iterations (the speed section below runs both from the same start).",
            f"{faster} took {seconds[faster]:.1f} s and {slower} {seconds[slower]:.1f} s "
            f"({ratio:.1f}x). gmmkit's mean log-likelihood is {gap:+.2g} per score "
            "against scikit-learn's"
            + (": scikit-learn's default tolerance (1e-3 per score) stops EM while it is "
               "still moving the components of these overlapping groups; gmmkit's "
               "stricter default runs on to the optimum." if gap > 1e-4 else
               ": both reach the same optimum here."),
        ],
        [figure],
        [Table("Fits (components sorted by mean)",
               ["fit", "settings", "seconds", "EM iterations", "converged",
                "mean log-lik.", "weights", "means", "sds"], rows)],
    )


# ---------------------------------------------------------------------------- blobs
def blobs_vs_kmeans(ctx: Context) -> Section:
    from sklearn.cluster import KMeans
    from sklearn.datasets import make_blobs

    import gmmkit
    from gmmkit import plotting

    n = 600 if ctx.fast else 1500
    X, y = make_blobs(n_samples=n, random_state=170)
    stretched = X @ np.array([[0.60834549, -0.63667341], [-0.40887718, 0.85253229]])
    X_var, y_var = make_blobs(n_samples=n, cluster_std=[1.0, 2.5, 0.5], random_state=170)
    datasets = [("round blobs", X, y), ("anisotropic blobs", stretched, y),
                ("unequal spreads", X_var, y_var)]

    plt = _plt()
    fig, axes = plt.subplots(3, 2, figsize=(12, 15))
    curves, curve_axes = plt.subplots(1, 3, figsize=(15, 4))
    rows = []
    for i, (name, data, truth) in enumerate(datasets):
        kmeans = KMeans(3, n_init=10, random_state=ctx.seed).fit(data)
        mixture = gmmkit.GaussianMixture(3, n_init=3, random_state=ctx.seed).fit(data)
        ari_km = _ari(truth, kmeans.labels_)
        ari_gm = _ari(truth, mixture.predict(data))
        ax = axes[i, 0]
        ax.scatter(data[:, 0], data[:, 1], c=kmeans.labels_, cmap="tab10", vmin=0, vmax=9,
                   s=8, alpha=0.6, linewidths=0)
        ax.scatter(*kmeans.cluster_centers_.T, marker="x", color="k", s=60)
        ax.set_title(f"{name}: k-means (ARI {ari_km:.2f})")
        plotting.plot_clusters(data, mixture, ax=axes[i, 1])
        axes[i, 1].set_title(f"{name}: gmmkit, full covariances (ARI {ari_gm:.2f})")
        for ax in axes[i]:
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        plotting.plot_convergence(mixture, ax=curve_axes[i])
        curve_axes[i].set_title(f"{name}: {curve_axes[i].get_title()}", fontsize="medium")
        rows.append([name, _fmt(ari_km), _fmt(ari_gm), str(mixture.n_iter_)])
    fig.tight_layout()
    curves.tight_layout()
    figure = ctx.save(fig, "blobs", "k-means (left) assumes round clusters of equal size: "
                      "right on the round blobs, wrong on the others; a Gaussian mixture "
                      "(right; solid, dashed and dotted lines: 1, 2 and 3-sigma ellipses) "
                      "learns each cluster's shape and spread.")
    convergence = ctx.save(curves, "blobs_convergence", "Mean log-likelihood at every EM "
                           "iteration of each 2-D mixture above (the start kept of three): "
                           "it never decreases, rises fast, then flattens until gmmkit's "
                           "stopping rule is met.")
    return Section(
        "blobs",
        "Elongated and unequal clusters: mixture vs k-means",
        [
            "scikit-learn's k-means-assumptions data: three round blobs of equal spread "
            "(where k-means does as well), the same blobs sheared by a linear map, and three "
            "blobs with standard deviations 1, 2.5 and 0.5. The adjusted Rand index (ARI, "
            "1 = perfect) compares each clustering with the true blobs.",
        ],
        [figure, convergence],
        [Table("Agreement with the true clusters (adjusted Rand index)",
               ["data", "k-means", "gmmkit GaussianMixture", "EM iterations"], rows)],
    )


# ---------------------------------------------------------------------------- moons / circles
def moons_and_circles(ctx: Context) -> Section:
    from sklearn.datasets import make_circles, make_moons

    import gmmkit
    from gmmkit import plotting

    n = 500 if ctx.fast else 1000
    moons = make_moons(n, noise=0.06, random_state=ctx.seed)
    circles = make_circles(n, factor=0.5, noise=0.05, random_state=ctx.seed)
    held_out = {
        "moons": make_moons(n, noise=0.06, random_state=ctx.seed + 1)[0],
        "circles": make_circles(n, factor=0.5, noise=0.05, random_state=ctx.seed + 1)[0],
    }
    plt = _plt()
    fig, axes = plt.subplots(2, 4, figsize=(19, 9.4))
    rows = []
    for i, (name, (data, truth)) in enumerate([("moons", moons), ("circles", circles)]):
        two = gmmkit.GaussianMixture(2, n_init=3, random_state=ctx.seed).fit(data)
        eight = gmmkit.GaussianMixture(8, n_init=3, random_state=ctx.seed).fit(data)
        sixteen = gmmkit.GaussianMixture(16, n_init=3, random_state=ctx.seed).fit(data)
        samples8, _ = eight.sample(n)
        samples16, _ = sixteen.sample(n)
        ari = _ari(truth, two.predict(data))
        plotting.plot_clusters(data, two, ax=axes[i, 0])
        axes[i, 0].set_title(f"{name}: 2 clusters (ARI {ari:.2f})")
        plotting.plot_clusters(data, eight, ax=axes[i, 1], sigmas=(1, 2), legend=False)
        axes[i, 1].set_title(f"{name}: 8-component density model")
        for ax, samples, k in ((axes[i, 2], samples8, 8), (axes[i, 3], samples16, 16)):
            ax.scatter(samples[:, 0], samples[:, 1], s=6, color="tab:orange", alpha=0.7,
                       linewidths=0)
            ax.set_title(f"{n} points sampled from {k} components")
        low, high = data.min(axis=0) - 0.3, data.max(axis=0) + 0.3
        for ax in axes[i]:
            ax.set_xlim(low[0], high[0])
            ax.set_ylim(low[1], high[1])
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        rows.append([
            name,
            _fmt(ari),
            _fmt(two.score(held_out[name])),
            _fmt(eight.score(held_out[name])),
            _fmt(sixteen.score(held_out[name])),
            _fmt(eight.score(samples8)),
        ])
    fig.tight_layout()
    figure = ctx.save(fig, "moons_circles", "First column: two Gaussian clusters cut the moons "
                      "and circles in the wrong places. Second: eight components tile each "
                      "shape. Third and fourth: points generated by the 8- and 16-component "
                      "models.")
    return Section(
        "moons",
        "Moons and circles: poor clusters, good density model",
        [
            "A Gaussian mixture's components are not the non-convex clusters here, so as a "
            "clustering method it fails. As a density model it is good: it scores unseen "
            "data from the same shapes much higher than the 2-component model and generates "
            "convincing new samples. Eight components suffice for the moons; for the two "
            "rings, eight can leave one broad component straddling both rings (its samples "
            "fill the gap between them), while sixteen trace both rings.",
        ],
        [figure],
        [Table("Clustering agreement and mean log-likelihood of unseen data (higher is better)",
               ["data", "ARI, 2 components", "held-out log-lik., 2 comp.",
                "held-out, 8 comp.", "held-out, 16 comp.", "8-comp. samples' log-lik."],
               rows)],
    )


# ---------------------------------------------------------------------------- criteria
def information_criteria(ctx: Context) -> Section:
    from sklearn.datasets import load_iris

    import gmmkit
    from gmmkit import plotting

    iris = load_iris()
    ks = range(1, 6) if ctx.fast else range(1, 10)
    result = gmmkit.select(iris.data, ks, CRITERIA_MODELS, "bic", random_state=ctx.seed)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    plotting.plot_criteria(result, criteria=("bic",), ax=axes[0], legend=None)
    axes[0].set_title("BIC against K (iris, 150 flowers x 4 measurements)")
    plotting.plot_criteria(result, criteria=("aic",), ax=axes[1], legend="right")
    axes[1].set_title("AIC against K")
    figure = ctx.save(fig, "criteria", "Information criteria for K = 1.."
                      f"{max(ks)} and seven of mclust's covariance models (each its colour "
                      "and marker); hollow markers are degenerate fits, the star marks each "
                      "criterion's choice.")
    rows = []
    for name in ("bic", "aic", "icl"):
        sound = [r for r in result.rows if not r["degenerate"] and np.isfinite(r[name])]
        best = min(sound, key=lambda r: r[name])
        model = result.models[(best["n_components"], best["covariance_type"])]
        rows.append([name.upper(), str(best["n_components"]), best["covariance_type"],
                     _fmt(best[name], 6), _fmt(_ari(iris.target, model.predict(iris.data)))])
    bic = result.bic_table()
    models = list(bic.columns)
    bic_rows = [[str(k), *(f"{v:.1f}" if np.isfinite(v) else "NA" for v in bic.loc[k])]
                for k in bic.index]
    top = result.top_models(3)
    top_rows = [[f"{m},{k}", f"{v:.2f}", f"{v - top[0][2]:.2f}"] for m, k, v in top]
    return Section(
        "criteria",
        "Choosing K and the covariance model: BIC, AIC, ICL",
        [
            "gmmkit.select fits every K and covariance model and tabulates log-likelihood, "
            "parameter count, BIC, AIC and ICL. BIC penalises parameters more and prefers "
            "fewer components; the ARI column compares each choice with the three species.",
            "The models are mclust's: Sigma_k = lambda_k D_k A_k D_k' with volume, shape and "
            "orientation Equal across components, Variable, or the Identity (EII ... VVV). "
            "SelectionResult.bic_table() prints BIC as mclust does, with mclust's sign "
            "(larger is better); on iris both pick VEV with two components.",
        ],
        [figure],
        [
            Table("Best candidate by each criterion (gmmkit's sign: lower is better)",
                  ["criterion", "K", "covariance", "value", "ARI with species"], rows),
            Table("BIC as mclust prints it (larger is better; NA: degenerate fit)",
                  ["K", *models], bic_rows),
            Table("Top 3 models based on the BIC criterion", ["model,K", "BIC", "BIC diff"],
                  top_rows),
        ],
    )


# ---------------------------------------------------------------------------- anomalies
#: The anomaly section plants this fraction of outliers; the detectors are not told it.
PLANTED_FRACTION = 0.02
#: What the reader's guess is in the anomaly section (the other detector uses the default).
GUESSED_CONTAMINATION = 0.05


def anomaly_detection(ctx: Context) -> Section:
    from sklearn.datasets import make_blobs

    import gmmkit

    rng = ctx.rng(5)
    n_rows = 1000 if ctx.fast else 2000
    n_outliers = round(PLANTED_FRACTION * n_rows)
    n_inliers = n_rows - n_outliers
    centres = np.array([[-2.5, 0.0], [2.5, 1.5]])
    inliers, _ = make_blobs(n_inliers, centers=centres, cluster_std=[0.8, 1.1],
                            random_state=ctx.seed)
    outliers: list[NDArray[np.float64]] = []
    while len(outliers) < n_outliers:  # scattered over the square, off both clusters' cores
        point = rng.uniform(-9, 9, size=2)
        if np.min(np.linalg.norm(centres - point, axis=1)) > 4:
            outliers.append(point)
    X = np.vstack([inliers, np.array(outliers)])
    planted = np.r_[np.zeros(n_inliers, bool), np.ones(n_outliers, bool)]
    default = gmmkit.AnomalyDetector().get_params()["contamination"]
    detectors = {
        f"a guess: contamination={GUESSED_CONTAMINATION:g}": gmmkit.AnomalyDetector(
            2, contamination=GUESSED_CONTAMINATION, random_state=ctx.seed).fit(X),
        f"the default: contamination={default:g}": gmmkit.AnomalyDetector(
            2, random_state=ctx.seed).fit(X),
    }

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.6))
    grid_x, grid_y = np.meshgrid(np.linspace(-10, 10, 300), np.linspace(-10, 10, 300))
    grid = np.c_[grid_x.ravel(), grid_y.ravel()]
    rows = []
    for ax, (name, detector) in zip(axes, detectors.items()):
        flagged = detector.predict(X) == -1
        hits = int((flagged & planted).sum())
        precision = hits / max(int(flagged.sum()), 1)
        recall = hits / int(planted.sum())
        shade = ax.contourf(grid_x, grid_y, detector.score_samples(grid).reshape(grid_x.shape),
                            levels=20, cmap="Blues", alpha=0.6)
        ax.contour(grid_x, grid_y, detector.decision_function(grid).reshape(grid_x.shape),
                   levels=[0.0], colors="crimson", linewidths=1.5)
        ax.scatter(*X[~flagged].T, s=6, color="0.3", alpha=0.6, linewidths=0, label="not flagged")
        ax.scatter(*X[flagged].T, s=40, color="crimson", marker="x", label="flagged")
        ax.scatter(*X[planted].T, s=120, facecolors="none", edgecolors="k",
                   label="planted outlier")
        ax.plot([], [], color="crimson", lw=1.5, label="threshold")
        ax.set_aspect("equal")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.legend(loc="upper right", fontsize="small")
        ax.set_title(f"{name}\nprecision {precision:.2f}, recall {recall:.2f}")
        fig.colorbar(shade, ax=ax, shrink=0.8, label="log-density")
        rows.append([name, str(len(X)), str(int(planted.sum())), str(int(flagged.sum())),
                     _fmt(precision), _fmt(recall)])
    fig.tight_layout()
    figure = ctx.save(fig, "anomalies", "Log-density of a two-component mixture (shade) and "
                      "the threshold its contamination sets (red line): rows below it are "
                      "flagged (red crosses); circles mark the planted outliers.")
    return Section(
        "anomalies",
        "Anomaly detection",
        [
            f"{n_inliers} points from two Gaussian clusters plus {n_outliers} planted outliers "
            f"({PLANTED_FRACTION:.0%}) scattered around them. gmmkit.AnomalyDetector flags the "
            "fraction of rows with the lowest density given by contamination; a user does not "
            "know the true fraction. Guessing too high finds the planted outliers but also "
            "flags ordinary points from the clusters' tails (precision falls); the default "
            f"({default:g}) flags only the most isolated ones (recall falls). Setting "
            "contamination to the true fraction would make precision and recall equal by "
            "construction.",
        ],
        [figure],
        [Table("Flags against the planted truth", ["contamination", "rows", "planted",
                                                   "flagged", "precision", "recall"], rows)],
    )


# ---------------------------------------------------------------------------- segmentation
def segmentation(ctx: Context) -> Section:
    from sklearn.datasets import load_sample_image

    import gmmkit
    from gmmkit import plotting

    photo = load_sample_image("china.jpg")
    flower = load_sample_image("flower.jpg")
    if ctx.fast:
        photo = np.ascontiguousarray(photo[::4, ::4])
        flower = np.ascontiguousarray(flower[::4, ::4])
    ks = (2, 3, 7, 20)
    results = {}
    rows = []
    for name, image, k in [*(("china.jpg", photo, k) for k in ks), ("flower.jpg", flower, 3)]:
        start = time.perf_counter()
        result = gmmkit.segment_image(image, k, random_state=ctx.seed)
        seconds = time.perf_counter() - start
        if name == "china.jpg":
            results[k] = result
        else:
            flower_result = result
        rows.append([name, str(k), f"{seconds:.2f}", str(result.model.n_iter_),
                     "yes" if result.model.converged_ else "no"])
    plt = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.6))
    axes[0, 0].imshow(photo)
    axes[0, 0].set_title(f"original ({photo.shape[1]} x {photo.shape[0]})")
    for ax, k in zip([axes[0, 1], axes[0, 2], axes[1, 0], axes[1, 1]], ks):
        ax.imshow(results[k].image)
        ax.set_title(f"k = {k}")
    label_map = axes[1, 2].imshow(results[7].labels, cmap="tab10", vmin=-0.5, vmax=9.5,
                                  interpolation="nearest")
    axes[1, 2].set_title("label map, k = 7")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    bar = fig.colorbar(label_map, ax=axes[1, 2], shrink=0.8, label="component")
    bar.set_ticks(range(7))
    bar.ax.set_ylim(-0.5, 6.5)
    grid = ctx.save(fig, "segmentation", "Every pixel recoloured with its component's mean "
                    "colour, for 2, 3, 7 and 20 components.")
    detail = ctx.save(plotting.plot_segmentation(photo, results[3]), "segmentation_k3",
                      "gmmkit.plotting.plot_segmentation for k = 3: original, segmentation "
                      "and label map.")
    flower_figure = ctx.save(plotting.plot_segmentation(flower, flower_result),
                             "segmentation_flower", "The other bundled photo, flower.jpg, "
                             "with k = 3: the petals, the leaves and the dark background.")
    return Section(
        "segmentation",
        "Image segmentation",
        [
            "scikit-learn's bundled photos china.jpg and flower.jpg, segmented by colour "
            "with gmmkit.segment_image(photo, k): a mixture over the RGB values of all "
            f"{photo.shape[0] * photo.shape[1]:,} pixels of each.",
        ],
        [grid, detail, flower_figure],
        [Table("Fits", ["photo", "k", "seconds", "EM iterations", "converged"], rows)],
    )


# ---------------------------------------------------------------------------- digits
#: The digits recipe: PCA keeping 85% of the variance (17 axes on the bundled digits), then
#: full-covariance mixtures for these K, the one with the lowest AIC kept.  The tutorial
#: (VanderPlas' Python Data Science Handbook) keeps 99% (41 axes) and tries K = 50..400;
#: fewer axes leave fewer noisy directions for each component to model, so a few dozen
#: components already give recognisable digits in about two seconds.  The same settings in
#: fast mode: the figure the tests check is the figure the report shows.
DIGITS_VARIANCE = 0.85
DIGITS_K = tuple(range(10, 81, 10))
DIGITS_CRITERION = "aic"


def digit_samples(seed: int = 0, n_samples: int = 100) -> tuple[Any, NDArray[np.float64]]:
    """Fit the demo's digits generator and draw the samples its figure shows.

    Parameters
    ----------
    seed : int, default=0
        The report's seed (fit and sampling).
    n_samples : int, default=100

    Returns
    -------
    generator : PCAGaussianMixtureGenerator
        Fitted on all 1797 of scikit-learn's 8x8 digits.
    samples : ndarray of shape (n_samples, 64)
        Pixel intensities 0..16, one generated digit per row.
    """
    from sklearn.datasets import load_digits

    import gmmkit

    digits = load_digits()
    generator = gmmkit.PCAGaussianMixtureGenerator(
        n_components=DIGITS_K, variance=DIGITS_VARIANCE, criterion=DIGITS_CRITERION,
        random_state=seed,
    ).fit(digits.data)
    samples, _ = generator.sample(n_samples, random_state=seed)
    return generator, samples


def digit_confidence(samples: NDArray[np.float64]) -> float:
    """Mean top class probability a logistic regression on the real digits gives ``samples``.

    The classifier (scikit-learn's LogisticRegression on intensities scaled to 0..1) is
    trained on all 1797 bundled digits; it gives real digits about 0.92 and uniform noise
    about 0.6, so the number says how digit-like generated images are.
    """
    probabilities = _digit_classifier().predict_proba(np.asarray(samples) / 16.0)
    return float(np.mean(probabilities.max(axis=1)))


@functools.cache
def _digit_classifier() -> Any:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    digits = load_digits()
    # a small problem: one BLAS thread fits it in a tenth of a second, while several
    # threads on a busy machine take seconds
    with threadpool_limits(1):
        return LogisticRegression(max_iter=1000).fit(digits.data / 16.0, digits.target)


def generated_digits(ctx: Context) -> Section:
    from sklearn.datasets import load_digits

    from gmmkit import plotting

    digits = load_digits()
    generator, samples = digit_samples(ctx.seed)
    real = ctx.save(plotting.plot_image_grid(digits.data[:100], image_shape=(8, 8)),
                    "digits_real", "100 of the 1797 bundled 8x8 handwritten digits.")
    generated = ctx.save(plotting.plot_image_grid(samples, image_shape=(8, 8)),
                         "digits_generated", "100 new digits sampled from the mixture and "
                         "mapped back from PCA space.")
    train = float(np.mean(generator.score_samples(digits.data)))
    new = float(np.mean(generator.score_samples(samples)))
    confidence_real = digit_confidence(digits.data[:100])
    confidence_new = digit_confidence(samples)
    k_chosen = generator.mixture_.n_components
    return Section(
        "digits",
        "Generating handwritten digits",
        [
            "The tutorials' recipe: project the 64-pixel digits on the principal axes "
            f"keeping {DIGITS_VARIANCE:.0%} of the variance, fit full-covariance mixtures "
            f"for K = {', '.join(map(str, DIGITS_K))} and keep the one with the lowest "
            f"{DIGITS_CRITERION.upper()}, sample in PCA space and map back "
            "(gmmkit.PCAGaussianMixtureGenerator). The Python Data Science Handbook keeps "
            "99% of the variance (41 axes) and tries K = 50..400; with 85% (fewer, "
            "less noisy axes) a few dozen components give clean digits in seconds. "
            "BIC, which penalises parameters more, picks fewer components (less distinct "
            "digits).",
            "To check that the samples look like digits, a logistic regression trained on "
            "the 1797 real digits classifies them: the table gives its mean probability "
            "for the class it picks (real digits about 0.92, uniform noise about 0.6).",
        ],
        [real, generated],
        [Table("Model", ["PCA axes", "K candidates", f"K chosen ({DIGITS_CRITERION.upper()})",
                         "mean log-density, training digits", "mean log-density, generated",
                         "classifier confidence, real digits",
                         "classifier confidence, generated"],
               [[str(generator.n_pca_components_),
                 f"{min(DIGITS_K)}..{max(DIGITS_K)}", str(k_chosen),
                 _fmt(train, 5), _fmt(new, 5), f"{confidence_real:.3f}",
                 f"{confidence_new:.3f}"]])],
    )


# ---------------------------------------------------------------------------- semi-supervised
def semi_supervised(ctx: Context) -> Section:
    from scipy.optimize import linear_sum_assignment
    from scipy.stats import multivariate_normal

    import gmmkit

    means = np.array([[5, 5], [7, 7.5], [8, 6], [7, 5.2], [3, 3]], dtype=float)
    covs = np.array([
        [[2, 0.5], [0.5, 2]], [[0.2, 0.1], [0.1, 0.2]], [[0.2, -0.075], [-0.075, 0.2]],
        [[0.2, -0.05], [-0.05, 0.2]], [[0.2, -0.05], [-0.05, 0.2]],
    ])
    sizes = [400, 300, 180, 150, 70]
    rng = ctx.rng(8)
    X = np.vstack([rng.multivariate_normal(m, c, size=n) for m, c, n in zip(means, covs, sizes)])
    y = np.repeat(np.arange(5), sizes)
    partial = np.full(len(y), -1)
    for k in range(5):
        chosen = rng.choice(np.flatnonzero(y == k), size=10, replace=False)
        partial[chosen] = k

    # the Bayes classifier that knows the true parameters: the accuracy ceiling
    weights = np.array(sizes) / sum(sizes)
    log_joint = np.column_stack([
        np.log(w) + multivariate_normal(m, c).logpdf(X) for w, m, c in zip(weights, means, covs)
    ])
    bayes = float(np.mean(log_joint.argmax(axis=1) == y))

    def best_renaming(labels: NDArray[np.intp]) -> NDArray[np.intp]:
        confusion = np.zeros((5, 5))
        np.add.at(confusion, (labels, y), 1)
        rows_, cols_ = linear_sum_assignment(-confusion)  # the most favourable naming
        mapping = dict(zip(rows_, cols_))
        return np.array([mapping[label] for label in labels])

    # the tutorials' unsupervised fit: scikit-learn's settings (k-means starts, tol=1e-3)
    unsupervised = gmmkit.GaussianMixture(
        5, init_params="kmeans", n_init=3, tol=1e-3, max_iter=100, random_state=ctx.seed
    ).fit(X)
    matched = best_renaming(unsupervised.predict(X))
    thorough = gmmkit.GaussianMixture(5, random_state=ctx.seed).fit(X)
    acc_thorough = float(np.mean(best_renaming(thorough.predict(X)) == y))
    semi = gmmkit.SemiSupervisedGaussianMixture(5, random_state=ctx.seed).fit(X, partial)
    predicted = semi.predict(X)
    acc_unsup = float(np.mean(matched == y))
    acc_semi = float(np.mean(predicted == y))

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    labelled = partial >= 0
    for ax, labels, title in [
        (axes[0], y, "truth (10 labelled points per class ringed)"),
        (axes[1], matched, f"unsupervised, scikit-learn's settings (accuracy {acc_unsup:.2f})"),
        (axes[2], predicted, f"semi-supervised (accuracy {acc_semi:.2f})"),
    ]:
        ax.scatter(X[:, 0], X[:, 1], c=labels, cmap="tab10", vmin=0, vmax=9, s=8, alpha=0.7,
                   linewidths=0)
        ax.scatter(*X[labelled].T, s=50, facecolors="none", edgecolors="k", linewidths=1)
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.set_xlabel("x1")
    axes[0].set_ylabel("x2")
    figure = ctx.save(fig, "semi_supervised", "Five overlapping Gaussian classes. Without "
                      "labels EM explains the data with differently placed components; fifty "
                      "labels pin each component to its class.")
    return Section(
        "semi-supervised",
        "Semi-supervised EM",
        [
            "Five 2-D Gaussian classes of 400, 300, 180, 150 and 70 points, ten labelled "
            "points per class and the rest unlabelled (label -1). "
            "SemiSupervisedGaussianMixture keeps labelled rows in their class during EM; the "
            "unsupervised mixture gets the most favourable renaming of its components. "
            "With scikit-learn's settings (k-means starts, EM stopped at tol=1e-3) it "
            "merges classes; run to convergence from several starts (gmmkit's defaults) "
            f"it finds them without labels too (accuracy {acc_thorough:.3f}).",
        ],
        [figure],
        [Table("Accuracy on all 1100 points", ["classifier", "accuracy"], [
            ["Bayes classifier with the true parameters (ceiling)", _fmt(bayes)],
            ["gmmkit SemiSupervisedGaussianMixture, 50 labels", _fmt(acc_semi)],
            ["GaussianMixture, no labels, scikit-learn's settings, best renaming",
             _fmt(acc_unsup)],
        ])],
    )


# ---------------------------------------------------------------------------- timing
def _timing_cases(ctx: Context) -> list[tuple[str, NDArray[np.float64], int, str]]:
    from sklearn.datasets import load_sample_image, make_blobs

    scale = 10 if ctx.fast else 1
    blobs2, _ = make_blobs(200_000 // scale, n_features=2, centers=3, random_state=ctx.seed)
    blobs10, _ = make_blobs(50_000 // scale, n_features=10, centers=10,
                            cluster_std=2.0, random_state=ctx.seed)
    blobs20, _ = make_blobs(100_000 // scale, n_features=20, centers=8, random_state=ctx.seed)
    # every other row and column of the photo: 214 x 320 pixels
    photo = load_sample_image("china.jpg")[::2, ::2].reshape(-1, 3).astype(np.float64) / 255.0
    if ctx.fast:
        photo = photo[::scale]
    return [
        ("2-D blobs", blobs2, 3, "full"),
        ("10-D blobs", blobs10, 10, "full"),
        ("china.jpg pixels (half size)", photo, 20, "full"),
        ("20-D blobs", blobs20, 8, "diag"),
    ]


def _start(X: NDArray[np.float64], k: int, covariance_type: str, seed: int) -> dict[str, Any]:
    """One shared starting point: k-means++ centres, equal weights, the data's spread."""
    from sklearn.cluster import kmeans_plusplus

    centres, _ = kmeans_plusplus(X, k, random_state=seed)
    variance = X.var(axis=0)
    if covariance_type == "full":
        precisions = np.repeat(np.diag(1.0 / variance)[None], k, axis=0)
    elif covariance_type == "diag":
        precisions = np.repeat((1.0 / variance)[None], k, axis=0)
    else:
        raise ValueError(covariance_type)
    # init_params only matters for what the *_init arrays leave open (nothing here);
    # "random_from_data" keeps scikit-learn from running a k-means it would then discard.
    return {"weights_init": np.full(k, 1.0 / k), "means_init": centres,
            "precisions_init": precisions, "init_params": "random_from_data"}


def timing(ctx: Context) -> Section:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    import gmmkit

    n_iter = 3 if ctx.fast else 5
    rows = []
    for name, X, k, covariance_type in _timing_cases(ctx):
        start = _start(X, k, covariance_type, ctx.seed)
        options: dict[str, Any] = {"covariance_type": covariance_type, "max_iter": n_iter,
                                   "tol": 0.0, "random_state": ctx.seed, **start}
        seconds = {}
        scores = {}
        for label, cls in (("gmmkit", gmmkit.GaussianMixture), ("sklearn", SkGaussianMixture)):
            model = cls(k, **options)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0: fixed iterations
                begin = time.perf_counter()
                model.fit(X)
                seconds[label] = time.perf_counter() - begin
            scores[label] = float(model.score(X))
        rows.append([
            name, f"{X.shape[0]:,} x {X.shape[1]}", f"{k} {covariance_type}",
            f"{seconds['gmmkit']:.2f}", f"{seconds['sklearn']:.2f}",
            f"{seconds['sklearn'] / seconds['gmmkit']:.1f}x",
            _fmt(scores["gmmkit"], 8), f"{abs(scores['gmmkit'] - scores['sklearn']):.1e}",
        ])
    return Section(
        "timing",
        "Speed: gmmkit against scikit-learn",
        [
            f"Both libraries run exactly {n_iter} EM iterations (tol = 0) from the same "
            "starting weights, means and precisions, so they follow the same path: the last "
            "column shows the final mean log-likelihoods agree. Times are wall-clock seconds "
            "of one fit on this machine, which other jobs may share; treat them as rough.",
        ],
        [],
        [Table("Fit time, same data and same start", [
            "data", "rows x columns", "K, covariance", "gmmkit s", "scikit-learn s",
            "speed-up", "gmmkit mean log-lik.", "|difference|"], rows)],
    )


SECTIONS: list[Callable[[Context], Section]] = [
    one_dimensional,
    exam_scores,
    blobs_vs_kmeans,
    moons_and_circles,
    information_criteria,
    anomaly_detection,
    segmentation,
    generated_digits,
    semi_supervised,
    timing,
]
