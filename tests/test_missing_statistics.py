"""One E-step's statistics with missing values against a brute-force reference: per row
and component, the Gaussian density of the observed coordinates and the conditional mean
and covariance of the missing ones from ``Sigma_mo Sigma_oo^-1`` (plain NumPy on each
row's submatrices), summed in the packed layout of each covariance model.  Blocks mix
missingness patterns shared by many rows with patterns of one row each (the two ways the
conditional precisions are factorised) and rows missing up to all but one coordinate."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from _helpers import full_covariances
from gmmkit.core.kernel import kernel_coefficients
from gmmkit.core.missing import chunk_statistics_missing
from gmmkit.core.params import MixtureParams

K, D = 3, 7


def _params(layout: str, seed: int, spread: float = 2.0, k: int = K) -> MixtureParams:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, D, D)) * 0.4 + np.eye(D)
    full = a @ a.transpose(0, 2, 1)
    covariances = {
        "full": full, "tied": full[0], "diag": np.einsum("kii->ki", full),
        "spherical": np.einsum("kii->k", full) / D,
    }[layout]
    return MixtureParams.from_covariances(
        rng.dirichlet(np.ones(k) * 3), spread * rng.normal(size=(k, D)) + 5.0, covariances,
        layout,
    )


def _block(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows with one or two missing coordinates in few patterns (shared), rows with
    three to six missing in patterns of their own, and one row with nothing observed."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(260, D)) * 2.0 + 5.0
    missing = np.zeros(X.shape, dtype=bool)
    missing[:120, 0] = True
    missing[60:120, 3] = True
    missing[120:160, [1, 5]] = True
    for row in range(160, 259):
        size = 3 + row % 4
        missing[row, rng.choice(D, size=size, replace=False)] = True
    missing[259] = True
    order = rng.permutation(len(X))
    return X[order], missing[order]


def _reference(params, X, missing, weight, labels, label_weight, reference):
    """Brute force: nk, first, second (packed as the layout's kernel), log-likelihood."""
    covs = full_covariances(params)
    means = np.asarray(params.means, np.float64)
    K = params.n_components
    upper_rows, upper_cols = np.triu_indices(D)
    nk = np.zeros(K)
    first = np.zeros((K, D))
    second = np.zeros((K, D, D))
    log_likelihood = total = 0.0
    for x, m, w, label in zip(X, missing, weight, labels):
        o = ~m
        if not o.any():
            continue
        log_joint = np.log(params.weights).copy()
        filled, conditional = [], []
        for k in range(K):
            s = covs[k]
            inverse = np.linalg.inv(s[np.ix_(o, o)])
            residual = x[o] - means[k][o]
            log_joint[k] -= 0.5 * (
                o.sum() * np.log(2 * np.pi) + np.linalg.slogdet(s[np.ix_(o, o)])[1]
                + residual @ inverse @ residual
            )
            gain = s[np.ix_(m, o)] @ inverse
            xhat = x.copy()
            xhat[m] = means[k][m] + gain @ (x[o] - means[k][o])
            c = np.zeros((D, D))
            c[np.ix_(m, m)] = s[np.ix_(m, m)] - gain @ s[np.ix_(o, m)]
            filled.append(xhat)
            conditional.append(c)
        if label >= 0:
            w = w * label_weight
            resp = np.eye(K)[label]
            log_likelihood += w * log_joint[label]
        else:
            resp = np.exp(log_joint - logsumexp(log_joint))
            log_likelihood += w * logsumexp(log_joint)
        total += w
        for k in range(K):
            centred = filled[k] - reference[k]
            nk[k] += w * resp[k]
            first[k] += w * resp[k] * centred
            second[k] += w * resp[k] * (np.outer(centred, centred) + conditional[k])
    packed = {
        "full": second[:, upper_rows, upper_cols],
        "tied": second.sum(axis=0)[upper_rows, upper_cols][None, :],
        "diag": np.einsum("kii->ki", second),
        "spherical": np.einsum("kii->k", second)[:, None],
    }[params.layout]
    return nk, first, packed, log_likelihood, total


@pytest.mark.parametrize(
    ("layout", "weighted", "spread", "k"),
    [(layout, weighted, 2.0, K) for layout in ("full", "tied", "diag", "spherical")
     for weighted in (False, True)]
    # components 100 widths apart: the tied expansion around their mean is summed
    # directly for most rows
    + [("tied", False, 100.0, K)]
    # many components: full covariances take the shared patterns per pattern
    + [("full", weighted, 2.0, 8) for weighted in (False, True)],
)
def test_statistics_match_brute_force(layout: str, weighted: bool, spread: float, k: int) -> None:
    params = _params(layout, seed=3, spread=spread, k=k)
    X, missing = _block(seed=4)
    rng = np.random.default_rng(5)
    weight = rng.uniform(0.2, 3.0, size=len(X)) if weighted else None
    labels = np.where(rng.random(len(X)) < 0.2, rng.integers(0, k, len(X)), -1)
    labels = labels if weighted else None
    coefs = kernel_coefficients(params, np.float64)
    # the values in the missing cells are ignored (the estimators fill them with the
    # columns' observed means, which the per-pattern path's rounding bound also reads)
    fill = np.nanmean(np.where(missing, np.nan, X), axis=0) if k > K else 1e3
    stats = chunk_statistics_missing(
        coefs, np.where(missing, fill, X), missing, weight, labels, label_weight=2.5
    )
    nk, first, second, log_likelihood, total = _reference(
        params, X, missing, np.ones(len(X)) if weight is None else weight,
        np.full(len(X), -1) if labels is None else labels, 2.5, coefs.stats_reference,
    )
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
    np.testing.assert_allclose(stats.first, first, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.second, second, rtol=1e-9, atol=1e-8)
    assert stats.log_likelihood == pytest.approx(log_likelihood, rel=1e-11)
    assert stats.total_weight == pytest.approx(total, rel=1e-12)
    assert stats.n_samples == len(X) - 1  # the row with nothing observed is left out


def test_statistics_all_rows_per_pattern() -> None:
    """Many components and only shared patterns: every incomplete row is evaluated per
    pattern and the per-row path gets no rows."""
    k = 8
    params = _params("full", seed=3, k=k)
    rng = np.random.default_rng(6)
    X = rng.normal(size=(600, D)) * 2.0 + 5.0
    missing = np.zeros(X.shape, dtype=bool)
    missing[:300, 0] = True
    missing[300:, 2] = True
    coefs = kernel_coefficients(params, np.float64)
    fill = np.nanmean(np.where(missing, np.nan, X), axis=0)
    stats = chunk_statistics_missing(coefs, np.where(missing, fill, X), missing)
    nk, first, second, log_likelihood, _ = _reference(
        params, X, missing, np.ones(len(X)), np.full(len(X), -1), 1.0,
        coefs.stats_reference,
    )
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
    np.testing.assert_allclose(stats.first, first, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.second, second, rtol=1e-9, atol=1e-8)
    assert stats.log_likelihood == pytest.approx(log_likelihood, rel=1e-11)


@pytest.mark.parametrize("budget", [None, 150 * D])
def test_engine_passes_reuse_the_grouping(
    budget: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine over in-memory data keeps each chunk's mask and the row grouping the
    E-step derives from it across passes (up to a budget of cells: with a budget of a
    few chunks, the others find theirs every pass): passes under other parameters (and
    other covariance layouts, whose blocks differ) still match brute force."""
    from gmmkit.core.em import e_step
    from gmmkit.engines import base
    from gmmkit.engines.base import FilledEngine
    from gmmkit.engines.memory import MemoryEngine

    if budget is not None:
        monkeypatch.setattr(base, "KEPT_MASK_CELLS", budget)

    X, missing = _block(seed=7)
    rng = np.random.default_rng(8)
    weight = rng.uniform(0.2, 3.0, size=len(X))
    fill = np.nanmean(np.where(missing, np.nan, X), axis=0)
    engine = FilledEngine(
        MemoryEngine(np.where(missing, np.nan, X), weight, chunk_rows=100, n_jobs=1), fill
    )
    cases = [("full", 3, 3), ("tied", 4, 3), ("full", 5, 8), ("diag", 6, 3), ("full", 3, 3)]
    for layout, seed, k in cases:
        params = _params(layout, seed=seed, k=k)
        stats = e_step(engine, params)
        nk, first, second, log_likelihood, _ = _reference(
            params, X, missing, weight, np.full(len(X), -1), 1.0, stats.reference
        )
        np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
        np.testing.assert_allclose(stats.first, first, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(stats.second, second, rtol=1e-9, atol=1e-8)
        assert stats.log_likelihood == pytest.approx(log_likelihood, rel=1e-11)
    kept = engine._masks
    assert kept is not None and kept.masks
    assert all(not m.flags.writeable for m in kept.masks.values() if m is not False)
    assert kept.cells == sum(rows * X.shape[1] for _, rows in kept.masks)
    if budget is not None:
        assert kept.cells <= budget < X.size
