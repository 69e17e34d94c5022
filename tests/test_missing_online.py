"""Stepwise EM with missing values: ``GaussianMixture(missing="marginalize").partial_fit``.

References: a brute-force NumPy/SciPy E-step over each row's observed cells (scipy's
densities of the observed coordinates for the responsibilities, the conditional mean and
covariance of the missing ones from explicit solves) with raw, uncentred moments -- no
gmmkit code -- for one EM step and for a stream of decaying steps; the true parameters of
the generating mixture on a long MCAR stream.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from _helpers import full_covariances
from gmmkit import GaussianMixture
from gmmkit.core.online import step_size
from gmmkit.mixture import MissingRowsWarning
from test_missing import _reference_proba

CENTRES = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -3.0], [-2.5, 4.0, 1.0]])
SCALES = np.array([[1.0, 0.6, 1.5], [0.7, 1.2, 0.9], [1.3, 0.8, 0.6]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def _mcar(n: int, seed: int, rate: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Rows of three axis-scaled clusters (weights 0.5, 0.3, 0.2) and a copy with cells
    missing completely at random; no row loses every cell."""
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n, p=WEIGHTS)
    X = CENTRES[z] + rng.normal(size=(n, 3)) * SCALES[z]
    gaps = rng.random(X.shape) < rate
    gaps[gaps.all(axis=1), 0] = False
    Xm = X.copy()
    Xm[gaps] = np.nan
    return X, Xm


class _Params:
    """The attributes of ``MixtureParams`` the reference helpers read."""

    def __init__(self, weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> None:
        self.weights, self.means, self.covariances = weights, means, covs
        self.n_components, self.n_features = means.shape
        self.layout = "full"


def _reference_moments(
    weights: np.ndarray, means: np.ndarray, covs: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brute-force E-step over the observed cells: responsibilities (n, K) and per row
    and component the expected row (n, K, D) and expected outer product (n, K, D, D)."""
    n, d = X.shape
    k = len(weights)
    resp = _reference_proba(_Params(weights, means, covs), X)
    first = np.empty((n, k, d))
    second = np.empty((n, k, d, d))
    for i, row in enumerate(X):
        o = ~np.isnan(row)
        m = ~o
        for j in range(k):
            xhat = row.copy()
            extra = np.zeros((d, d))
            if m.any():
                gain = np.linalg.solve(covs[j][np.ix_(o, o)], covs[j][np.ix_(o, m)]).T
                xhat[m] = means[j, m] + gain @ (row[o] - means[j, o])
                extra[np.ix_(m, m)] = covs[j][np.ix_(m, m)] - gain @ covs[j][np.ix_(o, m)]
            first[i, j] = xhat
            second[i, j] = np.outer(xhat, xhat) + extra
    return resp, first, second


def _reference_m_step(
    s0: np.ndarray, s1: np.ndarray, s2: np.ndarray, covariance_type: str, reg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parameters from per-row averages of sum r (K,), sum r x (K, D), sum r x x'
    (K, D, D), as (K,), (K, D) and the covariance type's array."""
    means = s1 / s0[:, None]
    scatter = s2 - s0[:, None, None] * means[:, :, None] * means[:, None, :]  # (K, D, D)
    d = means.shape[1]
    if covariance_type == "full":
        covs = scatter / s0[:, None, None] + reg * np.eye(d)
    elif covariance_type == "tied":
        covs = scatter.sum(axis=0) / s0.sum() + reg * np.eye(d)
    elif covariance_type == "diag":
        covs = np.diagonal(scatter, axis1=1, axis2=2) / s0[:, None] + reg
    else:
        covs = np.trace(scatter, axis1=1, axis2=2) / (d * s0) + reg
    return s0 / s0.sum(), means, covs


def _reference_batch(
    weights: np.ndarray, means: np.ndarray, covs: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch's per-row averages of the raw moments."""
    resp, first, second = _reference_moments(weights, means, covs, X)
    n = len(X)
    return (
        resp.sum(axis=0) / n,
        np.einsum("nk,nkd->kd", resp, first) / n,
        np.einsum("nk,nkij->kij", resp, second) / n,
    )


UNIT = np.tile(np.eye(3), (3, 1, 1))


def _start(covariance_type: str) -> dict[str, np.ndarray]:
    """A deliberately rough start: the true weights, shifted true means and unit
    covariances (:data:`UNIT`), as ``*_init`` arguments."""
    precisions = {"full": np.tile(np.eye(3), (3, 1, 1)), "tied": np.eye(3),
                  "diag": np.ones((3, 3)), "spherical": np.ones(3)}[covariance_type]
    return {"weights_init": WEIGHTS, "means_init": CENTRES + 0.4,
            "precisions_init": precisions}


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_first_step_is_one_em_step_over_the_observed_cells(covariance_type: str) -> None:
    """From given parameters the first call is one EM step on the batch: the brute-force
    step over the observed cells, and ``fit`` with ``max_iter=1``."""
    _, Xm = _mcar(240, 1)
    start = _start(covariance_type)
    gm = GaussianMixture(3, covariance_type=covariance_type, missing="marginalize",
                         **start).partial_fit(Xm)
    weights, means, covs = _reference_m_step(
        *_reference_batch(WEIGHTS, CENTRES + 0.4, UNIT, Xm), covariance_type, 1e-6
    )
    np.testing.assert_allclose(gm.weights_, weights, rtol=1e-10)
    np.testing.assert_allclose(gm.means_, means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gm.covariances_, covs, rtol=1e-9, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one iteration does not converge
        batch = GaussianMixture(3, covariance_type=covariance_type, missing="marginalize",
                                max_iter=1, acceleration="none", **start).fit(Xm)
    np.testing.assert_allclose(gm.means_, batch.means_, rtol=1e-12, atol=1e-13)
    # the two M-step paths round differently by ~5e-14 on covariances of size ~1: an
    # off-diagonal entry of 0.002 needs an absolute floor
    np.testing.assert_allclose(gm.covariances_, batch.covariances_, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_unit_step_later_is_one_em_step_from_the_current_model(covariance_type: str) -> None:
    """With ``learning_rate=1`` a later batch's statistics replace the running average: the
    step is one EM step over the new batch's observed cells from the current model."""
    _, first = _mcar(200, 2)
    complete, second = _mcar(200, 3, rate=0.35)
    second[:, 2] = np.nan  # a later batch may miss a whole column
    empty = np.isnan(second).all(axis=1)
    second[empty, 0] = complete[empty, 0]
    gm = GaussianMixture(3, covariance_type=covariance_type, missing="marginalize",
                         learning_rate=1.0, **_start(covariance_type)).partial_fit(first)
    params = gm.params_
    gm.partial_fit(second)
    weights, means, covs = _reference_m_step(
        *_reference_batch(params.weights, params.means, full_covariances(params), second),
        covariance_type, 1e-6,
    )
    np.testing.assert_allclose(gm.weights_, weights, rtol=1e-10)
    np.testing.assert_allclose(gm.means_, means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gm.covariances_, covs, rtol=1e-9, atol=1e-12)
    assert gm.n_steps_ == 2


def test_decaying_steps_match_an_independent_stepwise_em_and_recover_the_mixture() -> None:
    """The default schedule over an MCAR stream: equal to stepwise EM written with the
    brute-force E-step and raw moments, and close to the generating mixture."""
    rng = np.random.default_rng(5)
    batches = [_mcar(250, int(seed))[1] for seed in rng.integers(1000, size=30)]
    gm = GaussianMixture(3, missing="marginalize", **_start("full"))
    for X in batches:
        gm.partial_fit(X)
    weights, means, covs = WEIGHTS, CENTRES + 0.4, UNIT
    running = None
    for t, X in enumerate(batches):
        batch = _reference_batch(weights, means, covs, X)
        step = 1.0 if running is None else step_size(t, 10.0, 0.7)
        running = batch if running is None else tuple(
            (1.0 - step) * r + step * b for r, b in zip(running, batch, strict=True)
        )
        weights, means, covs = _reference_m_step(*running, "full", 1e-6)
    np.testing.assert_allclose(gm.weights_, weights, rtol=1e-8)
    np.testing.assert_allclose(gm.means_, means, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gm.covariances_, covs, rtol=1e-7, atol=1e-10)
    # 7500 rows, a fifth of the cells missing: near the truth
    np.testing.assert_allclose(gm.weights_, WEIGHTS, atol=0.03)
    np.testing.assert_allclose(gm.means_, CENTRES, atol=0.12)
    truth = np.array([np.diag(s**2) for s in SCALES])
    np.testing.assert_allclose(gm.covariances_, truth, atol=0.2)


@pytest.mark.parametrize("covariance_type", ["full", "VEV", "spherical"])
def test_no_missing_values_is_bit_identical(covariance_type: str) -> None:
    batches = [_mcar(150, seed)[0] for seed in range(4)]
    models = [GaussianMixture(3, covariance_type=covariance_type, random_state=0,
                              missing=missing) for missing in ("error", "marginalize")]
    for X in batches:
        for gm in models:
            gm.partial_fit(X)
    plain, marginal = models
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(marginal, name))
    for key, value in plain.running_stats_.items():
        np.testing.assert_array_equal(value, marginal.running_stats_[key])
    assert plain.lower_bounds_ == marginal.lower_bounds_


def test_first_batch_initialises_from_its_observed_cells() -> None:
    """Without ``*_init`` the first batch's k-means start reads its NaN cells as the
    observed columns' means; rows with nothing observed are reported and do not count."""
    _, Xm = _mcar(600, 7)
    Xm[:5] = np.nan
    gm = GaussianMixture(3, missing="marginalize", random_state=0)
    with pytest.warns(MissingRowsWarning, match="5 row"):
        gm.partial_fit(Xm)
    order = np.argsort(gm.means_[:, 0])
    np.testing.assert_allclose(gm.means_[order], CENTRES[np.argsort(CENTRES[:, 0])],
                               atol=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a later batch without NaN: no warning
        gm.partial_fit(_mcar(100, 8)[0])
    for name in ("weights_", "means_", "covariances_"):
        assert np.all(np.isfinite(getattr(gm, name)))


def test_batches_without_observed_values_are_errors() -> None:
    _, Xm = _mcar(200, 9)
    empty_column = Xm.copy()
    empty_column[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] of X have no observed"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingRowsWarning)
        GaussianMixture(2, missing="marginalize").partial_fit(empty_column)
    gm = GaussianMixture(2, missing="marginalize", random_state=0).partial_fit(Xm)
    before = gm.means_.copy()
    with pytest.raises(ValueError, match="every row of the batch is missing"):
        gm.partial_fit(np.full((4, 3), np.nan))
    weighted_empty = Xm[:4].copy()
    weighted_empty[0] = np.nan  # the only row of positive weight has nothing observed
    with pytest.raises(ValueError, match="every row of the batch is missing"):
        gm.partial_fit(weighted_empty, sample_weight=np.array([1.0, 0.0, 0.0, 0.0]))
    np.testing.assert_array_equal(gm.means_, before)  # failed calls change nothing
    with pytest.raises(ValueError, match="missing='marginalize'"):
        GaussianMixture(2).partial_fit(Xm)
