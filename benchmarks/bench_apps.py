"""Timings and quality numbers of the applications (issue 4), printed from one run.

Run ``python benchmarks/bench_apps.py``.  Times are the minimum over ``--repeats`` runs;
on a shared machine they are noisy, so compare them with each other, not across days.

Sections: image segmentation of scikit-learn's china.jpg (all pixels and a pixel
subsample), 1-D fits of an 800,000-value two-peaked score column, semi-supervised
accuracy against the Bayes classifier, anomaly precision/recall, model selection and
digit generation.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import multivariate_normal
from sklearn.datasets import load_digits, load_sample_image

import gmmkit


def best_time(func: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def segmentation(repeats: int) -> None:
    print("== segment_image on china.jpg (427 x 640 x 3, uint8), full covariance")
    image = load_sample_image("china.jpg")
    for k in (2, 3, 7, 20):
        seconds, result = best_time(lambda k=k: gmmkit.segment_image(image, k, random_state=0),
                                    repeats)
        error = np.abs(result.image.astype(float) - image).mean()
        print(f"  k={k:2d} all pixels      {seconds:6.2f} s  {result.model.n_iter_:3d} iterations"
              f"  mean |error| {error:5.1f} grey levels")
    for n_fit in (30_000, 100_000):
        seconds, result = best_time(
            lambda n_fit=n_fit: gmmkit.segment_image(image, 20, max_fit_pixels=n_fit,
                                                     random_state=0),
            repeats,
        )
        error = np.abs(result.image.astype(float) - image).mean()
        print(f"  k=20 fit on {n_fit:6d} px {seconds:6.2f} s  {result.model.n_iter_:3d} iterations"
              f"  mean |error| {error:5.1f} grey levels")


def one_dimensional(repeats: int) -> None:
    print("== fit_1d on 800,000 two-peaked scores (K=2)")
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.25, 0.06, 560_000), rng.normal(0.7, 0.1, 240_000)])
    rng.shuffle(scores)
    for dtype in (np.float64, np.float32):
        data = scores.astype(dtype)
        seconds, fit = best_time(lambda data=data: gmmkit.fit_1d(data, 2, random_state=0),
                                 repeats)
        print(f"  {np.dtype(dtype).name}: {seconds:.3f} s  ({fit.model.n_iter_} iterations)  "
              f"means {np.round(fit.means, 4)}  stds {np.round(fit.stds, 4)}  "
              f"weights {np.round(fit.weights, 4)}")
    print("== fit_1d on the 50-value three-level series (K=3)")
    levels = np.array([24.5, 35.0, 44.4])
    states = np.repeat([0, 1, 2, 0, 2, 1, 0], [8, 7, 9, 6, 8, 5, 7])
    series = levels[states] + np.random.default_rng(1).normal(0, 0.9, len(states))
    seconds, fit = best_time(lambda: gmmkit.fit_1d(series, 3, random_state=0), repeats)
    print(f"  {seconds * 1e3:.1f} ms  means {np.round(fit.means, 2)}  stds {np.round(fit.stds, 2)}")


MEANS = np.array([(5, 5), (7, 7.5), (8, 6), (7, 5.2), (3, 3)], dtype=float)
COVS = np.array([[[2, 0.5], [0.5, 2]], [[0.2, 0.1], [0.1, 0.2]], [[0.2, -0.075], [-0.075, 0.2]],
                 [[0.2, -0.05], [-0.05, 0.2]], [[0.2, -0.05], [-0.05, 0.2]]])
SIZES = np.array([400, 300, 180, 150, 70])


def semi_supervised(n_seeds: int) -> None:
    print("== SemiSupervisedGaussianMixture on the issue's five Gaussians (10 labels per class)")
    print("  seed  Bayes  semi-supervised  unsupervised (best relabelling)")
    gaps = []
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        X = np.vstack([rng.multivariate_normal(m, c, s) for m, c, s in zip(MEANS, COVS, SIZES)])
        truth = np.repeat(np.arange(5), SIZES)
        y = np.full(len(X), -1)
        for k in range(5):
            y[rng.choice(np.flatnonzero(truth == k), 10, replace=False)] = k
        log_joint = np.column_stack([np.log(SIZES[k] / SIZES.sum())
                                     + multivariate_normal(MEANS[k], COVS[k]).logpdf(X)
                                     for k in range(5)])
        bayes = np.mean(log_joint.argmax(axis=1) == truth)
        semi = gmmkit.SemiSupervisedGaussianMixture(5, random_state=0).fit(X, y)
        accuracy = np.mean(semi.predict(X) == truth)
        predicted = gmmkit.GaussianMixture(5, random_state=0).fit(X).predict(X)
        table = np.zeros((5, 5))
        np.add.at(table, (truth, predicted), 1)
        rows, cols = linear_sum_assignment(-table)
        unsupervised = table[rows, cols].sum() / len(X)
        gaps.append(bayes - accuracy)
        print(f"  {seed:4d}  {bayes:.3f}  {accuracy:.3f}            {unsupervised:.3f}")
    print(f"  Bayes minus semi-supervised: mean {np.mean(gaps):.3f}, max {np.max(gaps):.3f}")


def anomaly(n_seeds: int) -> None:
    print("== AnomalyDetector: 3000 inliers (3 Gaussians) + 30 planted outliers, K=3")
    means = np.array([[0.0, 0.0], [5.0, 5.0], [-4.0, 6.0]])
    covs = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.6, 0.0], [0.0, 0.6]],
                     [[1.5, -0.7], [-0.7, 1.0]]])
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        parts = rng.multinomial(3000, [0.5, 0.3, 0.2])
        inliers = np.vstack([rng.multivariate_normal(m, c, s)
                             for m, c, s in zip(means, covs, parts)])
        candidates = rng.uniform(-25, 25, size=(1500, 2))
        distance = np.min([np.einsum("ij,jk,ik->i", candidates - m, np.linalg.inv(c),
                                     candidates - m) for m, c in zip(means, covs)], axis=0)
        outliers = candidates[distance > 36.0][:30]
        X = np.vstack([inliers, outliers])
        planted = np.r_[np.zeros(3000, bool), np.ones(30, bool)]
        flagged = gmmkit.AnomalyDetector(3, contamination=30 / 3030,
                                         random_state=seed).fit_predict(X) == -1
        hits = np.sum(flagged & planted)
        print(f"  seed {seed}: precision {hits / flagged.sum():.3f}  "
              f"recall {hits / planted.sum():.3f}")


def selection_and_generation(repeats: int) -> None:
    print("== select on 600 points, K=1..9 x 4 covariance types (36 fits)")
    rng = np.random.default_rng(0)
    X = np.vstack([rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], 300),
                   rng.multivariate_normal([6, 1], [[0.5, -0.3], [-0.3, 1.5]], 200),
                   rng.multivariate_normal([2, 7], [[2, 0], [0, 0.3]], 100)])
    seconds, result = best_time(lambda: gmmkit.select(X, random_state=0), repeats)
    row = result.best_row
    print(f"  {seconds:.2f} s  best K={row['n_components']} {row['covariance_type']}  "
          f"BIC {row['bic']:.1f}")
    print("== PCAGaussianMixtureGenerator on digits (1797 x 64), 99% variance, K=1..20 by BIC")
    digits = load_digits().data
    seconds, generator = best_time(
        lambda: gmmkit.PCAGaussianMixtureGenerator(range(1, 21), random_state=0).fit(digits), 1
    )
    table = generator.selection_.table
    raw_best = int(table.loc[table["bic"].idxmin(), "n_components"])
    samples, _ = generator.sample(100)
    print(f"  {seconds:.2f} s  {generator.n_pca_components_} principal axes, chosen "
          f"K={generator.n_components_} (raw BIC minimum K={raw_best}; "
          f"{int(table['degenerate'].sum())} of {len(table)} candidates flagged degenerate)")
    print(f"  mean log-density: training digits {generator.score_samples(digits).mean():.1f}, "
          f"100 generated {generator.score_samples(samples).mean():.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    segmentation(args.repeats)
    one_dimensional(args.repeats)
    semi_supervised(args.seeds)
    anomaly(args.seeds)
    selection_and_generation(args.repeats)


if __name__ == "__main__":
    main()
