"""Model selection over the number of components and covariance types (mclust's ``Mclust()``).

By default, as ``Mclust()``, ``K = 1..9`` and all fourteen covariance models (EII ... VVV;
``E`` and ``V`` for one-dimensional data) are tried.  Every candidate ``(K,
covariance_type)`` is fitted, scored by BIC, AIC and ICL, and checked for degeneracy: a
component carrying almost no samples, or one whose variance collapsed onto a few identical
values (the "spikes" EM finds on integer-valued data, which push the
likelihood and hence every criterion towards infinity).  Degenerate candidates stay in the
table, flagged, and are never chosen while a sound candidate exists.

With ``missing="marginalize"`` the data may hold NaN (missing at random): every
candidate is a :class:`~gmmkit.GaussianMixture` with ``missing="marginalize"``, fitted by
the same EM over each row's observed values, and the criteria are those of the observed
data (see :func:`select`).

gmmkit's criteria have scikit-learn's sign (``BIC = -2 log L + p log n``, lower is better);
:meth:`SelectionResult.bic_table` shows them as mclust prints them: ``2 log L - p log n``,
larger is better, one row per K and one column per model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

from gmmkit._transaction import transactional_fit
from gmmkit.apps._common import (
    WrappedMixtureMixin,
    check_covariance_types,
    check_n_components_list,
    checked_sample_weight,
    default_covariance_types,
    full_covariances,
    mclust_order,
)
from gmmkit.core import criteria
from gmmkit.core.em import EmptyComponentWarning
from gmmkit.core.missing import MISSING_OPTIONS
from gmmkit.mixture import GaussianMixture, nan_refused, warn_unobserved_rows
from gmmkit.modelfile import SaveMixin

CRITERIA = ("bic", "aic", "icl")

#: Starts of each candidate's multi-start search in :func:`select` (see there).
SELECT_STARTS = 2

#: What each criterion is called in the mclust-style tables.
CRITERION_NAMES = {
    "bic": "Bayesian Information Criterion (BIC)",
    "aic": "Akaike Information Criterion (AIC)",
    "icl": "Integrated Complete-data Likelihood (ICL)",
}

#: Columns of :attr:`SelectionResult.table`, in order.
TABLE_COLUMNS = (
    "n_components",
    "covariance_type",
    "log_likelihood",
    "n_parameters",
    "bic",
    "aic",
    "icl",
    "converged",
    "n_iter",
    "min_weight",
    "degenerate",
    "reason",
    "best",
)


class DegenerateMixtureWarning(UserWarning):
    """The selected mixture is degenerate (every candidate was)."""


@dataclass
class SelectionResult:
    """Outcome of :func:`select`.

    Attributes
    ----------
    best : GaussianMixture
        The fitted candidate minimising the criterion among the non-degenerate ones.
    table : pandas.DataFrame or list of dict
        One row per candidate with the columns of :data:`TABLE_COLUMNS`; a DataFrame when
        pandas is installed, otherwise the same rows as dicts.
    criterion : str
        ``"bic"``, ``"aic"`` or ``"icl"`` (lower is better).
    rows : list of dict
        The rows of ``table`` as plain dicts (always available).
    models : dict
        ``(n_components, covariance_type) -> fitted GaussianMixture`` for every candidate
        that could be fitted.
    """

    best: GaussianMixture
    table: Any = field(repr=False)
    criterion: str
    rows: list[dict[str, Any]] = field(repr=False)
    models: dict[tuple[int, str], GaussianMixture] = field(repr=False)

    @property
    def best_row(self) -> dict[str, Any]:
        """The table row of :attr:`best`."""
        return next(row for row in self.rows if row["best"])

    def _grid(self, criterion: str | None) -> tuple[str, list[int], list[str], NDArray[np.float64]]:
        """(criterion, Ks, covariance types in mclust's order, values in mclust's sign)."""
        criterion = self.criterion if criterion is None else criterion
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        ks = sorted({int(row["n_components"]) for row in self.rows})
        types = sorted(
            dict.fromkeys(str(row["covariance_type"]) for row in self.rows), key=mclust_order
        )
        values = np.full((len(ks), len(types)), np.nan)
        for row in self.rows:
            value = float(row[criterion])
            if row["degenerate"] or not np.isfinite(value):
                continue
            i = ks.index(int(row["n_components"]))
            values[i, types.index(str(row["covariance_type"]))] = -value
        return criterion, ks, types, values

    def criterion_table(self, criterion: str | None = None) -> Any:
        """A criterion as mclust tabulates it: one row per K, one column per covariance
        model (in mclust's order: EII, VII, EEI, ..., VVV), values with **mclust's sign**.

        mclust's BIC is ``2 log L - p log n`` -- the negative of gmmkit's (and
        scikit-learn's) ``bic`` -- so *larger is better* here; likewise ``2 log L - 2 p``
        for AIC and the negative of gmmkit's ``icl`` for ICL.  A candidate whose fit
        failed or that is flagged degenerate is NaN (mclust's NA), as mclust leaves out
        models it cannot fit.

        Parameters
        ----------
        criterion : {"bic", "aic", "icl"}, optional
            Default: the criterion the selection used.

        Returns
        -------
        pandas.DataFrame or dict
            A DataFrame indexed by K (index name ``"K"``, columns named ``"model"``, the
            criterion's name in ``.attrs["criterion"]``); without pandas, the same values as
            ``{covariance_type: {K: value}}`` (``DataFrame.to_dict()``'s layout).
        """
        criterion, ks, types, values = self._grid(criterion)
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is an optional extra
            return {
                t: {k: float(values[i, j]) for i, k in enumerate(ks)} for j, t in enumerate(types)
            }
        frame = pd.DataFrame(
            values, index=pd.Index(ks, name="K"), columns=pd.Index(types, name="model")
        )
        frame.attrs["criterion"] = criterion.upper()
        frame.attrs["sign"] = "mclust's: larger is better (the negative of gmmkit's)"
        return frame

    def bic_table(self) -> Any:
        """BIC as mclust prints it (``summary``/``print`` of ``mclustBIC``): rows K, columns
        models in mclust's order, values ``2 log L - p log n`` -- the *negative* of
        gmmkit's ``bic``, so larger is better -- and NaN where a fit failed or is
        degenerate.  See :meth:`criterion_table`; :meth:`top_models` and
        :meth:`format_table` give the "top 3 models" summary."""
        return self.criterion_table("bic")

    def top_models(self, n: int = 3, criterion: str | None = None) -> list[tuple[str, int, float]]:
        """The ``n`` best sound candidates, as mclust's ``summary(BIC)`` lists them.

        Returns
        -------
        list of (covariance_type, K, value)
            Best first; ``value`` has mclust's sign (larger is better).  Failed and
            degenerate candidates are left out.
        """
        _, ks, types, values = self._grid(criterion)
        found = [
            (types[j], ks[i], float(values[i, j]))
            for j in range(len(types))
            for i in range(len(ks))
            if np.isfinite(values[i, j])
        ]
        found.sort(key=lambda item: -item[2])  # stable: ties keep mclust's order
        return found[: max(int(n), 0)]

    def format_table(self, criterion: str | None = None, n_top: int = 3, width: int = 100) -> str:
        """The criterion table and its top models as text, laid out like mclust's
        ``summary(mclustBIC(X))`` (this is what ``gmmkit select`` prints).

        Parameters
        ----------
        criterion : {"bic", "aic", "icl"}, optional
            Default: the criterion the selection used.
        n_top : int, default=3
            Best candidates listed under the table, with their difference to the best.
        width : int, default=100
            Wider tables are printed in blocks of columns, as R prints them.
        """
        criterion, ks, types, values = self._grid(criterion)
        name = CRITERION_NAMES[criterion]
        short = criterion.upper()
        lines = [
            f"{name}, with mclust's sign: larger is better",
            f"(the negative of gmmkit's {criterion}; NA: the fit failed or is degenerate)",
        ]
        digits = _decimals(values)
        cells = [[_cell(v, digits) for v in row] for row in values]
        label_width = max(len(str(k)) for k in ks)
        col_width = max([len(t) for t in types] + [len(c) for row in cells for c in row])
        per_block = max(1, (width - label_width) // (col_width + 1))
        for start in range(0, len(types), per_block):
            block = range(start, min(start + per_block, len(types)))
            lines.append(
                " " * label_width + "".join(" " + types[j].rjust(col_width) for j in block)
            )
            for i, k in enumerate(ks):
                lines.append(
                    str(k).ljust(label_width)
                    + "".join(" " + cells[i][j].rjust(col_width) for j in block)
                )
        top = self.top_models(n_top, criterion)
        lines.append("")
        if not top:
            lines.append("No sound candidate: every fit failed or is degenerate.")
            return "\n".join(lines)
        lines.append(f"Top {len(top)} models based on the {short} criterion:")
        heads = [f"{t},{k}" for t, k, _ in top]
        best_value = top[0][2]
        row_labels = [short, f"{short} diff"]
        rows = [
            [_cell(v, digits) for _, _, v in top],
            [_cell(v - best_value, digits) for _, _, v in top],
        ]
        label_width = max(len(label) for label in row_labels)
        col_width = max(len(c) for c in [*heads, *rows[0], *rows[1]])
        lines.append(" " * label_width + "".join(" " + h.rjust(col_width) for h in heads))
        for label, row in zip(row_labels, rows):
            lines.append(label.ljust(label_width) + "".join(" " + c.rjust(col_width) for c in row))
        return "\n".join(lines)


def _decimals(values: NDArray[np.float64], significant: int = 7) -> int:
    """Decimals that give the largest finite magnitude ``significant`` digits (R's print)."""
    finite = np.abs(values[np.isfinite(values)])
    if finite.size == 0 or finite.max() == 0:
        return 2
    integer_digits = int(np.floor(np.log10(finite.max()))) + 1
    return int(min(max(significant - integer_digits, 0), 6))


def _cell(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if np.isfinite(value) else "NA"


def _data_covariance(X: NDArray[Any], weight: NDArray[np.float64] | None) -> NDArray[np.float64]:
    """Weighted covariance of the data, with a small ridge so it is positive definite."""
    cov = np.atleast_2d(np.cov(np.asarray(X, dtype=np.float64).T, aweights=weight, bias=True))
    return _ridged(cov)


def _ridged(cov: NDArray[np.float64]) -> NDArray[np.float64]:
    """``cov`` plus a ridge of ``1e-12`` of its mean variance (positive definite)."""
    d = cov.shape[0]
    scale = float(np.trace(cov)) / d
    ridge = 1e-12 * scale if scale > 0 else 1e-12
    return cov + ridge * np.eye(d)


def _observed_rows(
    X: NDArray[Any], weight: NDArray[np.float64] | None
) -> tuple[NDArray[Any], NDArray[np.float64] | None]:
    """The rows of ``X`` (with NaN) that have an observed value, and their weights;
    a :class:`~gmmkit.mixture.MissingRowsWarning` when others are left out."""
    seen = ~np.isnan(X).all(axis=1)
    n_unseen = len(seen) - int(np.count_nonzero(seen))
    if n_unseen == 0:
        return X, weight
    warn_unobserved_rows(n_unseen, stacklevel=3)  # select()'s caller
    if np.count_nonzero(seen) < 2:
        raise ValueError(
            f"X has {int(np.count_nonzero(seen))} row(s) with an observed value; model "
            "selection needs at least 2"
        )
    return X[seen], None if weight is None else weight[seen]


def _observed_data_covariance(
    X: NDArray[Any], weight: NDArray[np.float64] | None, random_state: int
) -> NDArray[np.float64]:
    """The data covariance of the degeneracy check for data with NaN: the maximum-
    likelihood covariance of one Gaussian fitted to the observed values (EM through the
    same core as the candidates), with :func:`_data_covariance`'s small ridge."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        single = GaussianMixture(
            1, covariance_type="full", missing="marginalize", random_state=random_state
        ).fit(X, sample_weight=weight)
    return _ridged(np.asarray(single.covariances_[0], dtype=np.float64))


def degeneracy(
    model: GaussianMixture,
    data_covariance: NDArray[np.float64],
    total_weight: float,
    min_component_size: float = 2.0,
    min_variance_ratio: float = 1e-4,
) -> str:
    """Why a fitted mixture is degenerate, or ``""`` when it is not.

    Parameters
    ----------
    model : GaussianMixture
        Fitted.
    data_covariance : ndarray of shape (D, D)
        Covariance of the data the model was fitted on (positive definite).
    total_weight : float
        Number of samples (sum of sample weights).
    min_component_size : float
        A component with fewer effective samples (``weight * total_weight``) is degenerate.
    min_variance_ratio : float
        A component whose variance along some direction is below this fraction of the data's
        variance along the same direction has collapsed (the smallest generalised eigenvalue
        of ``(Sigma_k, Sigma_data)``; scale-free).

    Returns
    -------
    str
        Human-readable reason; empty when the model is sound.
    """
    params = model.params_
    reasons = []
    sizes = params.weights * total_weight
    small = np.flatnonzero(sizes < min_component_size)
    if len(small):
        k = int(small[np.argmin(sizes[small])])
        reasons.append(f"component {k} holds {sizes[k]:.3g} effective samples")
    ratios = np.array(
        [
            linalg.eigh(cov, data_covariance, eigvals_only=True)[0]
            for cov in full_covariances(params)
        ]
    )
    collapsed = np.flatnonzero(ratios < min_variance_ratio)
    if len(collapsed):
        k = int(collapsed[np.argmin(ratios[collapsed])])
        reasons.append(
            f"component {k} collapsed (variance {ratios[k]:.2g} of the data's along some "
            "direction)"
        )
    return "; ".join(reasons)


def _make_table(rows: list[dict[str, Any]]) -> Any:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is an optional extra
        return rows
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _em_options(**settings: Any) -> dict[str, Any]:
    """The EM settings given explicitly (not None): the others are left to
    :class:`~gmmkit.GaussianMixture`'s own defaults."""
    return {name: value for name, value in settings.items() if value is not None}


def select(
    X: ArrayLike,
    n_components: Any = range(1, 10),
    covariance_types: Any = None,
    criterion: str = "bic",
    *,
    n_init: int | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    reg_covar: float | None = None,
    init_params: str | None = None,
    n_starts: int | None = SELECT_STARTS,
    sample_weight: ArrayLike | None = None,
    min_component_size: float = 2.0,
    min_variance_ratio: float = 1e-4,
    random_state: Any = None,
    n_jobs: int | None = None,
    missing: str = "error",
) -> SelectionResult:
    """Fit every ``(K, covariance_type)`` candidate and pick the best by an information criterion.

    With the defaults this is mclust's ``Mclust(X)``: ``K = 1..9`` and all fourteen
    covariance models.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int or iterable of int, default=range(1, 10)
        Candidate numbers of components; none may exceed the number of (non-zero weight)
        rows of ``X`` (checked before the candidates are listed).
    covariance_types : str or iterable of str, optional
        Candidate covariance models, by mclust's names (``"EII"``, ``"VII"``, ``"EEI"``,
        ``"VEI"``, ``"EVI"``, ``"VVI"``, ``"EEE"``, ``"VEE"``, ``"EVE"``, ``"VVE"``,
        ``"EEV"``, ``"VEV"``, ``"EVV"``, ``"VVV"``; ``"E"``, ``"V"`` for one feature) or
        scikit-learn's (``"spherical"``, ``"diag"``, ``"tied"``, ``"full"``).  Default, as
        mclust's: all fourteen models, or ``("E", "V")`` when ``X`` has one feature.  A
        model named twice (``"full"`` and ``"VVV"``) is fitted once, under its first name.
    criterion : {"bic", "aic", "icl"}, default="bic"
        Lower is better (scikit-learn's sign; :meth:`SelectionResult.bic_table` shows
        mclust's).  ICL is BIC plus twice the entropy of the hard classification: it
        prefers well-separated clusters.
    n_init, max_iter, tol, reg_covar, init_params, n_jobs : optional
        Passed to every :class:`~gmmkit.GaussianMixture`; ``None`` (the default) leaves
        each to GaussianMixture's own default.
    n_starts : int or None, default=2
        Starts of each candidate's multi-start search (GaussianMixture's ``n_starts``):
        mclust's start and k-means.  Fewer than a single fit's six, measured: over 126
        candidates the comparison of BIC needs the best model's optimum, not every
        model's; with two starts ``select`` still finds a BIC at least as good as
        mclust's ``Mclust()`` on all ten of mclust's example data sets
        (``benchmarks/bench_mclust.py``).  It runs faster than ``Mclust()`` on the
        largest of them (9083 rows) and slower on the small ones, where each EM pass
        costs more in interpreter overhead than in arithmetic and the tighter
        convergence rule takes more passes (see ``benchmarks/README.md``).  ``None``:
        GaussianMixture's default.
    sample_weight : array-like of shape (n_samples,), optional
    min_component_size : float, default=2.0
        Candidates with a component holding fewer effective samples are flagged degenerate.
    min_variance_ratio : float, default=1e-4
        Candidates with a component whose variance along some direction is below this
        fraction of the data's are flagged degenerate (collapsed onto repeated values).
    random_state : int, RandomState instance or None
        One int seed is given to every candidate (drawn from ``random_state`` when it is
        not an int), so each is reproducible on its own and all share one hierarchical
        agglomeration and the same seeding samples.
    missing : {"error", "marginalize"}, default="error"
        What NaN in ``X`` means, as for :class:`~gmmkit.GaussianMixture`: an error, or
        (``"marginalize"``) a value missing at random.  Every candidate is then fitted
        with ``missing="marginalize"`` -- EM over each row's observed values; its
        hierarchical and k-means starts see the missing cells filled with their column's
        observed mean -- and the table holds the observed data's criteria: ``log L`` sums
        the log marginal density of each row's observed values, the parameter count
        ``p`` is the complete-data model's (the same parameters are estimated), BIC's
        ``n`` is the number of rows with at least one observed value (sample-weighted:
        their total weight) -- each is one independent draw from the mixture, the usual
        choice for incomplete data (counting observed cells instead would treat the
        correlated coordinates of a row as independent observations) -- and ICL's
        entropy term uses each row's responsibilities given its observed values.  Rows
        with nothing observed carry no information: they are left out of every fit and
        count, with one :class:`~gmmkit.mixture.MissingRowsWarning`.  The degeneracy
        check then compares with the covariance of one Gaussian fitted to the observed
        values by maximum likelihood (EM, ``K=1``, full covariance).  The selected
        model keeps ``missing="marginalize"``: it predicts rows with NaN.
        Without NaN the table is identical to ``"error"``'s.

    Returns
    -------
    SelectionResult
        ``.best`` is the fitted model minimising the criterion among the non-degenerate
        candidates; ``.table`` has one row per candidate; ``.bic_table()`` is mclust's
        view of it.

    Raises
    ------
    ValueError
        Bad arguments, or a candidate ``K`` larger than the number of samples (checked before
        any fitting), or every candidate failing to fit; NaN in ``X`` without
        ``missing="marginalize"``, or a column with no observed value with it.

    Warns
    -----
    MissingRowsWarning
        With ``missing="marginalize"``, when rows of ``X`` have nothing observed.
    DegenerateMixtureWarning
        When every fitted candidate is degenerate; the best of them is returned.
    ConvergenceWarning
        When the selected candidate did not converge.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if covariance_types is not None:
        types = check_covariance_types(covariance_types)
    if n_init is not None and (
        isinstance(n_init, bool) or not isinstance(n_init, Integral) or n_init < 1
    ):
        raise ValueError(f"n_init must be a positive integer, got {n_init!r}")
    if not min_component_size >= 0:
        raise ValueError(f"min_component_size must be >= 0, got {min_component_size!r}")
    if not 0 <= min_variance_ratio < 1:
        raise ValueError(f"min_variance_ratio must be in [0, 1), got {min_variance_ratio!r}")
    if missing not in MISSING_OPTIONS:
        raise ValueError(f"missing must be one of {MISSING_OPTIONS}, got {missing!r}")
    marginalize = missing == "marginalize"
    with nan_refused("select()", marginalize):
        X_checked = check_array(
            X,
            dtype=[np.float64, np.float32],
            ensure_min_samples=2,
            ensure_all_finite="allow-nan" if marginalize else True,
        )
    if covariance_types is None:
        types = list(default_covariance_types(X_checked.shape[1]))
    weight = checked_sample_weight(sample_weight, X_checked)
    has_nan = marginalize and bool(np.isnan(X_checked).any())
    if has_nan:
        X_checked, weight = _observed_rows(X_checked, weight)
    n_rows = X_checked.shape[0] if weight is None else int(np.count_nonzero(weight))
    # K is bounded by the rows before the candidates are listed: range(1, 10**12) fails here
    ks = check_n_components_list(n_components, n_samples=n_rows)
    total_weight = float(X_checked.shape[0] if weight is None else weight.sum())
    criteria.check_sample_count(total_weight)

    # one seed for every candidate, drawn here when none is given: they then share the
    # hierarchical agglomeration (cached by its rows) and the seeding samples
    rs = random_state
    if not isinstance(rs, Integral):
        rs = int(check_random_state(rs).randint(np.iinfo(np.int32).max))

    em_options = _em_options(
        n_init=n_init,
        n_starts=n_starts,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        init_params=init_params,
        n_jobs=n_jobs,
    )
    data_cov = (
        _observed_data_covariance(X_checked, weight, rs)
        if has_nan
        else _data_covariance(X_checked, weight)
    )
    rows: list[dict[str, Any]] = []
    models: dict[tuple[int, str], GaussianMixture] = {}
    for covariance_type in types:
        for k in ks:
            model = GaussianMixture(
                k, covariance_type=covariance_type, random_state=rs, missing=missing,
                **em_options,
            )
            row: dict[str, Any] = {
                "n_components": k,
                "covariance_type": covariance_type,
                "n_parameters": criteria.n_parameters(k, X_checked.shape[1], covariance_type),
            }
            try:
                with warnings.catch_warnings():
                    # recorded in the table (converged, reason) instead
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    warnings.simplefilter("ignore", EmptyComponentWarning)
                    model.fit(X_checked, sample_weight=weight)
            except (ValueError, FloatingPointError) as exc:
                row.update(
                    log_likelihood=np.nan, bic=np.nan, aic=np.nan, icl=np.nan,
                    converged=False, n_iter=0, min_weight=np.nan, degenerate=True,
                    reason=f"fit failed: {exc}", best=False,
                )
                rows.append(row)
                continue
            models[(k, covariance_type)] = model
            row.update(_scores(model, X_checked, weight, row["n_parameters"], total_weight))
            reason = degeneracy(
                model, data_cov, total_weight, min_component_size, min_variance_ratio
            )
            row.update(
                converged=bool(model.converged_),
                n_iter=int(model.n_iter_),
                min_weight=float(model.weights_.min()),
                degenerate=bool(reason),
                reason=reason,
                best=False,
            )
            rows.append(row)

    rows = [{column: row[column] for column in TABLE_COLUMNS} for row in rows]
    values = np.array([row[criterion] for row in rows], dtype=np.float64)
    finite = np.isfinite(values)
    if not np.any(finite):
        reasons = "; ".join(sorted({row["reason"] for row in rows}))
        raise ValueError(f"no candidate mixture could be fitted: {reasons}")
    sound = finite & ~np.array([row["degenerate"] for row in rows])
    pool = sound if np.any(sound) else finite
    best_index = int(np.flatnonzero(pool)[np.argmin(values[pool])])
    rows[best_index]["best"] = True
    best_row = rows[best_index]
    best = models[(best_row["n_components"], best_row["covariance_type"])]
    if not np.any(sound):
        warnings.warn(
            f"every candidate mixture is degenerate; returning the best of them "
            f"(K={best_row['n_components']}, {best_row['covariance_type']}): "
            f"{best_row['reason']}",
            DegenerateMixtureWarning,
            stacklevel=2,
        )
    if not best_row["converged"] and best.max_iter > 0:
        warnings.warn(
            f"the selected mixture (K={best_row['n_components']}, "
            f"{best_row['covariance_type']}) did not converge; increase max_iter or tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return SelectionResult(
        best=best, table=_make_table(rows), criterion=criterion, rows=rows, models=models
    )


def _scores(
    model: GaussianMixture,
    X: NDArray[Any],
    weight: NDArray[np.float64] | None,
    n_params: int,
    total_weight: float,
) -> dict[str, float]:
    """Log-likelihood and the three criteria from one density pass and one posterior pass."""
    log_density = model.score_samples(X)
    map_resp = model.predict_proba(X).max(axis=1)  # >= 1/K, so its log is finite
    if weight is None:
        log_likelihood = float(log_density.sum())
        classification = float(np.log(map_resp).sum())
    else:
        log_likelihood = float(weight @ log_density)
        classification = float(weight @ np.log(map_resp))
    bic = criteria.bic(log_likelihood, n_params, total_weight)
    return {
        "log_likelihood": log_likelihood,
        "bic": bic,
        "aic": criteria.aic(log_likelihood, n_params),
        "icl": criteria.icl(bic, classification),
    }


class GaussianMixtureSelector(WrappedMixtureMixin, SaveMixin, DensityMixin, BaseEstimator):
    """:func:`select` as a scikit-learn estimator (usable as a Pipeline step).

    ``fit`` runs the selection; ``predict``, ``predict_proba``, ``score_samples``,
    ``score``, ``sample``, ``bic`` and ``aic`` delegate to the selected mixture.

    Parameters
    ----------
    n_components : int or tuple of int, default=(1, ..., 9)
    covariance_types : str or tuple of str, optional
        Default: mclust's fourteen models (``("E", "V")`` for one feature); see
        :func:`select`.
    criterion : {"bic", "aic", "icl"}, default="bic"
    n_init, max_iter, tol, reg_covar, init_params, n_starts, min_component_size,
    min_variance_ratio, random_state, n_jobs
        As in :func:`select` (``None``: GaussianMixture's default).
    missing : {"error", "marginalize"}, default="error"
        As in :func:`select`: ``"marginalize"`` selects on the observed values' criteria
        and the selected mixture predicts, scores and labels rows with NaN from their
        observed values.

    Attributes
    ----------
    best_estimator_ : GaussianMixture
        The selected, fitted mixture.
    n_components_ : int
    covariance_type_ : str
    selection_ : SelectionResult
        The whole selection (``selection_.table`` has a row per candidate,
        ``selection_.bic_table()`` is mclust's view of it).
    n_features_in_ : int
    """

    def __init__(
        self,
        n_components: Any = tuple(range(1, 10)),
        *,
        covariance_types: Any = None,
        criterion: str = "bic",
        n_init: int | None = None,
        max_iter: int | None = None,
        tol: float | None = None,
        reg_covar: float | None = None,
        init_params: str | None = None,
        n_starts: int | None = SELECT_STARTS,
        min_component_size: float = 2.0,
        min_variance_ratio: float = 1e-4,
        random_state: Any = None,
        n_jobs: int | None = None,
        missing: str = "error",
    ) -> None:
        self.n_components = n_components
        self.covariance_types = covariance_types
        self.criterion = criterion
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.n_starts = n_starts
        self.min_component_size = min_component_size
        self.min_variance_ratio = min_variance_ratio
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.missing = missing

    @transactional_fit
    def fit(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> GaussianMixtureSelector:
        """Fit every candidate and keep the best.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        X_checked = self._validate_fit_X(X)
        result = select(
            X_checked,
            n_components=self.n_components,
            covariance_types=self.covariance_types,
            criterion=self.criterion,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            init_params=self.init_params,
            n_starts=self.n_starts,
            sample_weight=sample_weight,
            min_component_size=self.min_component_size,
            min_variance_ratio=self.min_variance_ratio,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            missing=self.missing,
        )
        self.selection_ = result
        self.best_estimator_ = result.best
        self.n_components_ = int(result.best.n_components)
        self.covariance_type_ = str(result.best.covariance_type)
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.intp]:
        """Most probable component of each row, shape (n_samples,)."""
        X_checked = self._checked(X)
        return self.best_estimator_.predict(X_checked)

    def fit_predict(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> NDArray[np.intp]:
        """Select, then label the rows of ``X``, shape (n_samples,)."""
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Responsibilities, shape (n_samples, n_components_)."""
        X_checked = self._checked(X)
        return self.best_estimator_.predict_proba(X_checked)

    def score_samples(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Log-density of each row, shape (n_samples,)."""
        X_checked = self._checked(X)
        return self.best_estimator_.score_samples(X_checked)

    def score(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> float:
        """Mean (sample-weighted) log-density of the rows."""
        X_checked = self._checked(X)
        return self.best_estimator_.score(X_checked, sample_weight=sample_weight)

    def sample(self, n_samples: int = 1) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """Draw ``n_samples`` rows from the selected mixture; see GaussianMixture.sample."""
        check_is_fitted(self)
        return self.best_estimator_.sample(n_samples)

    def bic(self, X: ArrayLike) -> float:
        """BIC of the selected mixture on ``X``."""
        X_checked = self._checked(X)
        return self.best_estimator_.bic(X_checked)

    def aic(self, X: ArrayLike) -> float:
        """AIC of the selected mixture on ``X``."""
        X_checked = self._checked(X)
        return self.best_estimator_.aic(X_checked)
