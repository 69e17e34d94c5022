"""The ``gmmkit`` command line: argument parsing, then library calls -- no math here.

Commands: ``fit``, ``predict``, ``select``, ``anomalies``, ``segment``, ``sample``, ``info``
and ``demo``; ``gmmkit COMMAND --help`` describes each. Errors print one line on stderr
(``gmmkit: error: ...``) and exit with status 1 (2 for a bad command line); ``--debug``
shows the full traceback instead.

A command does all of its work or none of it: its output paths are checked before any
data is read (the folder exists and is writable, the output is not a folder, not an input
file, not another output), and its output files are staged and renamed together at the
end, so a failure or Ctrl-C leaves every output as it was.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gmmkit._atomic import OutputSet, staged_outputs
from gmmkit._cli_constants import COVARIANCE_HELP, COVARIANCE_TYPES, GM_DEFAULTS, INIT_METHODS

if TYPE_CHECKING:  # NumPy and the library are imported only when a command runs
    import numpy as np

_COVARIANCE_OPTION_HELP = f"Covariance model: {COVARIANCE_HELP}."
_COLUMNS_HELP = (
    "Columns to use: names, 0-based indices, ranges a-b and exclusions ^name or ^a-b, "
    "comma-separated, e.g. 0-12 or ^label"
)
#: GaussianMixture's own defaults: an EM option not given on the command line is left to them.
_GM_DEFAULTS = GM_DEFAULTS


def _gm_default(name: str) -> str:
    """``show_default`` text for an option left to GaussianMixture's default."""
    value = _GM_DEFAULTS[name]
    return "GaussianMixture's" if value is None else f"GaussianMixture's: {value}"


class _State:
    debug = bool(os.environ.get("GMMKIT_DEBUG"))
    #: the rich console of the progress display while it is shown (warnings go through it)
    console: Any = None


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _State.debug = True


def _common(*, seed: bool = True) -> Callable[[Any], Any]:
    """``--quiet``, ``--debug``, ``--progress`` (and ``--seed``) on every command."""

    def decorate(func: Any) -> Any:
        func = click.option(
            "--debug",
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_set_debug,
            help="Show the full traceback of an error.",
        )(func)
        func = click.option(
            "--progress",
            type=click.Choice(["auto", "always", "never"]),
            default="auto",
            show_default=True,
            help="Progress bar on stderr (auto: when stderr is a terminal).",
        )(func)
        func = click.option(
            "-q", "--quiet", is_flag=True, help="Print nothing but errors and requested data."
        )(func)
        if seed:
            func = click.option(
                "--seed", type=int, default=None, help="Random seed, for reproducible results."
            )(func)
        return func

    return decorate


def _echo(quiet: bool, message: str = "") -> None:
    if not quiet:
        click.echo(message)


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    """``"1 row"``, ``"2 rows"``: a count and its noun, singular or plural."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _article(word: str) -> str:
    """``"an AnomalyDetector"``, ``"a GaussianMixture"``."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


# ---------------------------------------------------------------------------- progress
class _Display:
    """What a command shows on stderr while it works, drawn with ``rich.progress``.

    One line per step (reading, initialising, EM, predicting, writing) with a spinner, a
    tick when done and its elapsed time; EM also gets a bar, the run, the iteration and
    the change of the mean log-likelihood (fed by :func:`gmmkit.mixture.fit_progress`).
    Shown when stderr is a terminal (``--progress auto``), always (``always``: drawn as
    on a terminal, e.g. for a CI log) or never (``never`` or ``--quiet``). While it is
    shown, warnings are printed through its console, on lines of their own above it.

    Parameters
    ----------
    quiet : bool
        ``--quiet``: show nothing.
    mode : {"auto", "always", "never"}
        ``--progress``.
    """

    def __init__(self, quiet: bool, mode: str) -> None:
        self.enabled = not quiet and (
            mode == "always" or (mode == "auto" and sys.stderr.isatty())
        )
        self.progress: Any = None
        self.task: Any = None
        self.description = ""

    def __enter__(self) -> _Display:
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.table import Column

            # --progress always on a pipe or file (a CI log): drawn as on a wide terminal
            width = None if sys.stderr.isatty() else 160
            console = Console(file=sys.stderr, force_terminal=True, highlight=False, width=width)
            self.progress = Progress(
                SpinnerColumn(finished_text="[green]✓[/]",
                              table_column=Column(no_wrap=True, min_width=1)),
                TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
                TextColumn("{task.description}",
                           table_column=Column(no_wrap=True, overflow="ellipsis", ratio=2)),
                _EMBarColumn(bar_width=20, table_column=Column(no_wrap=True)),
                # the EM details take what the line has left (cut short on a narrow one)
                TextColumn("{task.fields[detail]}",
                           table_column=Column(no_wrap=True, overflow="ellipsis", ratio=3)),
                expand=True,
                console=console,
                redirect_stdout=False,  # stdout carries data (CSV), never the display
                redirect_stderr=False,
            )
            self.progress.start()
            _State.console = console
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop(failed=exc_type is not None or sys.exc_info()[0] is not None)

    def stop(self, failed: bool = False) -> None:
        """End the current step and take the display down (before writing to stdout)."""
        if self.progress is None:
            return
        self._end_step(failed)
        self.progress.stop()
        self.progress = None
        _State.console = None

    def _end_step(self, failed: bool = False) -> None:
        if self.task is None:
            return
        if failed:
            self.progress.stop_task(self.task)
            self.progress.update(self.task, description=f"{self.description} [red](failed)[/]")
        else:
            self.progress.update(self.task, total=1, completed=1)
        self.task = None

    def step(self, description: str) -> None:
        """End the current step and start the next: ``"reading data.csv"``, ...

        Parameters
        ----------
        description : str
            What the step does (rich markup is escaped).
        """
        if self.progress is None:
            return
        from rich.markup import escape

        self._end_step()
        self.description = escape(description)
        self.task = self.progress.add_task(self.description, total=None, detail="")

    @contextmanager
    def em(self, label: str, n_fits: int, max_iter: int) -> Iterator[None]:
        """Show the EM runs of the ``with`` block as one step with a bar.

        Parameters
        ----------
        label : str
            The command (``"fit"``, ``"select"``, ...).
        n_fits : int
            EM runs expected (a run that converges early jumps to its end).
        max_iter : int
            Iterations each run may take.
        """
        if self.progress is None:
            yield
            return
        from gmmkit.mixture import fit_progress

        self._end_step()
        self.description = f"{label}: EM"
        self.task = self.progress.add_task(
            f"{label}: initialising",
            # max_iter 0: a stream of unknown length (a pulsing bar)
            total=max(n_fits, 1) * max_iter if max_iter else None,
            detail="",
            em=True,
        )
        tracker = _EMTracker(self.progress, self.task, label, n_fits, max_iter)
        with fit_progress(tracker):
            yield
        self.progress.update(self.task, detail=tracker.final_detail())
        self._end_step()


class _EMTracker:
    """The ``fit_progress`` callback that moves a display's EM step."""

    def __init__(self, progress: Any, task: Any, label: str, n_fits: int, max_iter: int):
        self.progress = progress
        self.task = task
        self.label = label
        self.n_fits = max(n_fits, 1)
        self.max_iter = max(max_iter, 1)
        self.fit = 0
        self.last_iter = 0
        self.last_bound = math.nan
        self.last_text = ""

    def __call__(self, n_iter: int, lower_bound: float, change: float) -> None:
        if n_iter <= self.last_iter:
            self.fit += 1
        self.last_iter = n_iter
        self.last_bound = lower_bound
        run = min(self.fit, self.n_fits - 1)
        change_text = f"{change:+.2e}" if math.isfinite(change) else "n/a"
        runs = f"run {self.fit + 1}/{self.n_fits}, " if self.n_fits > 1 else ""
        self.last_text = (
            f"{runs}iteration {n_iter}, log-likelihood {lower_bound:.6g} (change {change_text})"
        )
        self.progress.update(
            self.task,
            description=f"{self.label}: EM",
            completed=run * self.max_iter + min(n_iter, self.max_iter),
            detail=self.last_text,
        )

    def final_detail(self) -> str:
        if not self.last_iter:
            return ""
        runs = f"{self.fit + 1} run{'s' if self.fit else ''}, the last"
        return f"{runs} {self.last_iter} iterations, log-likelihood {self.last_bound:.6g}"


def _EMBarColumn(**options: Any) -> Any:
    """A rich BarColumn drawn for the EM step only (steps have no measurable length)."""
    from rich.progress import BarColumn
    from rich.text import Text

    class EMBar(BarColumn):
        def render(self, task: Any) -> Any:
            return super().render(task) if task.fields.get("em") else Text("")

    return EMBar(**options)


def _display(quiet: bool, mode: str) -> _Display:
    """A command's :class:`_Display`, taken down when the command ends (or fails)."""
    display = _Display(quiet, mode)
    return click.get_current_context().with_resource(display)


# ---------------------------------------------------------------------------- helpers
def _read(
    path: Path, columns: str | None, *, stream: bool = True, allow_missing: bool = False
) -> tuple[Any, list[str] | None]:
    """The data as an array, or (``stream``) as a streaming source when it would not fit
    in memory (:func:`gmmkit.data.open_table`); walk either with
    :func:`gmmkit.data.row_blocks`.  The column names come back beside the data, never
    on a source: a model fitted on a streamed file then matches one fitted on the same
    file in memory, and scoring plain row blocks later warns about no feature names.
    ``allow_missing``: missing cells (:data:`gmmkit.data.MISSING_VALUES`) read as NaN."""
    from gmmkit import data as data_files

    if not stream:
        return data_files.read_table(path, columns, allow_missing=allow_missing)
    X, names = data_files.open_table(path, columns, allow_missing=allow_missing)
    return _without_names(X), names


_MISSING_CELLS = (
    "Missing cells are those pandas' read_csv reads as missing: empty fields, NA, NaN, nan, "
    "N/A, NULL, None, ... (Parquet: nulls and NaN).  'error' (default): a missing cell is "
    "an error."
)
_MISSING_HELP = (
    "'marginalize': missing cells are missing at random and EM fits the likelihood of the "
    "observed cells (GaussianMixture(missing='marginalize'); with --online too); the saved "
    "model predicts rows with missing cells too.  " + _MISSING_CELLS
)
_ANOMALIES_MISSING_HELP = (
    "'marginalize': missing cells are missing at random; the mixture is fitted to the "
    "observed cells, log_density is the density of a row's observed cells, and a row with "
    "missing cells is flagged by the chi-square tail probability of its observed cells, "
    "comparable with complete rows (AnomalyDetector(missing='marginalize')); the "
    "'decision' column (negative for outliers) then ranks all rows alike.  "
    + _MISSING_CELLS
)


@contextlib.contextmanager
def _missing_hint(hint: str) -> Iterator[None]:
    """Add ``hint`` (how to allow missing values) to a missing-cell error of the readers,
    raised while reading or, for a streamed file, during the first pass (or to the
    estimator's NaN error, for a memory-mapped ``.npy`` file)."""
    from gmmkit.data import MissingValueError

    try:
        yield
    except MissingValueError as exc:
        raise click.ClickException(f"{exc}; {hint}") from None
    except ValueError as exc:
        if "missing='marginalize'" not in str(exc):
            raise
        raise click.ClickException(f"{exc} (on the command line: {hint})") from None


_FIT_HINT = "to fit with missing values (EM over the observed cells) pass --missing marginalize"


def _without_names(X: Any) -> Any:
    """``X``, or a streaming source of it that does not name its columns."""
    if getattr(X, "feature_names", None) is None:
        return X
    import copy

    nameless = copy.copy(X)
    nameless.feature_names = None
    return nameless


def _feature_names(names: list[str] | None, n_features: int) -> list[str]:
    return list(names) if names else [f"x{i}" for i in range(n_features)]


def _format_row(values: Sequence[Any], widths: Sequence[int]) -> str:
    import numpy as np

    cells = []
    for value, width in zip(values, widths):
        if isinstance(value, float):
            text = f"{value:.6g}"
        elif isinstance(value, (bool, np.bool_)):
            text = "yes" if value else "no"
        else:
            text = str(value)
        cells.append(text.rjust(width))
    return "  ".join(cells)


#: data columns whose means and standard deviations the component tables show
_MAX_TABLE_COLUMNS = 4


def _standard_deviations(mixture: Any) -> np.ndarray:
    """Each component's standard deviation along each column, shape (K, D).

    The square roots of the covariance diagonals, whatever the covariance model stores.
    """
    import numpy as np

    from gmmkit.core.covariance import covariance_layout

    k, d = mixture.means_.shape
    cov = np.asarray(mixture.covariances_, dtype=np.float64)
    layout = covariance_layout(mixture.covariance_type)
    if layout == "full":
        variances = np.diagonal(cov, axis1=1, axis2=2)
    elif layout == "tied":
        variances = np.broadcast_to(np.diag(cov), (k, d))
    elif layout == "diag":
        variances = cov
    else:  # spherical: one variance per component
        variances = np.broadcast_to(cov.reshape(k, 1), (k, d))
    return np.sqrt(variances)


def _component_table(mixture: Any, names: list[str] | None) -> list[str]:
    """Lines of a table: each component's weight, means and standard deviations.

    Components are numbered from 0, as in ``predict``'s ``label`` column.
    """
    k, d = mixture.means_.shape
    shown = min(d, _MAX_TABLE_COLUMNS)
    columns = _feature_names(names, d)[:shown]
    sds = _standard_deviations(mixture)
    header = ["component", "weight"]
    for c in columns:
        header += [f"mean[{c}]", f"sd[{c}]"]
    rows = []
    for j in range(k):
        row: list[Any] = [j, float(mixture.weights_[j])]
        for i in range(shown):
            row += [float(mixture.means_[j, i]), float(sds[j, i])]
        rows.append(row)
    rendered = [[_format_row([v], [0]) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rendered)]) for i, h in enumerate(header)]
    lines = [_format_row(header, widths), *(_format_row(row, widths) for row in rows)]
    lines.append("(components numbered from 0, as predict's label column; sd: standard "
                 "deviation)")
    if shown < d:
        lines.append(f"(means and standard deviations of {_plural(d - shown, 'more column')} "
                     "not shown)")
    return lines


def _batches(X: Any, rows: int) -> Iterator[np.ndarray]:
    """Mini-batches of exactly ``rows`` rows (the last one shorter) from an array or a
    streaming source, whatever the sizes of the source's own blocks."""
    import numpy as np

    from gmmkit.data import row_blocks

    pending: list[np.ndarray] = []
    held = 0
    for block in row_blocks(X, rows):
        pending.append(block)
        held += len(block)
        while held >= rows:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield joined[:rows]
            pending, held = [joined[rows:]], held - rows
    if held:
        yield np.concatenate(pending)


def _summary(model: Any, X: np.ndarray, names: list[str] | None, source: str) -> list[str]:
    """Lines describing a fitted GaussianMixture on its training data."""
    log_density = model.score_samples(X)  # X may be a streaming source: one pass
    n, d = len(log_density), model.n_features_in_
    total = float(log_density.sum())
    state = "converged" if model.converged_ else "did NOT converge"
    how = (
        f"stepwise EM: one pass, {_plural(model.n_steps_, 'mini-batch', 'mini-batches')}"
        if hasattr(model, "n_steps_")
        else f"EM {state} after {_plural(model.n_iter_, 'iteration')}"
    )
    return [
        f"GaussianMixture: {_plural(model.n_components, 'component')}, covariance "
        f"'{model.covariance_type}', {_plural(n, 'row')} x {_plural(d, 'column')} "
        f"from {source}",
        how,
        f"log-likelihood {total:.6g} (mean {total / n:.6g} per row)",
        f"BIC {model.bic(X):.6g}   AIC {model.aic(X):.6g}",
        "",
        *_component_table(model, names),
    ]


def _model_columns(
    X: Any, data_names: list[str] | None, metadata: dict[str, Any], columns: str | None
) -> Any:
    """The data columns a saved model was fitted on (by name when both sides have names)."""
    summary = metadata.get("summary", {})
    model_names = summary.get("feature_names")
    n_features = summary.get("n_features")
    from gmmkit.data import take_columns

    if columns is None and model_names and data_names:
        if all(name in data_names for name in model_names):
            return take_columns(X, [data_names.index(name) for name in model_names])
    width = X.shape[1] if hasattr(X, "shape") else X.n_features  # an array or a source
    if n_features is not None and width != n_features:
        expected = f" ({', '.join(model_names)})" if model_names else ""
        raise click.UsageError(
            f"the model expects {n_features} columns{expected} but the data has "
            f"{width}; choose them with --columns"
        )
    return X


def _prediction_columns(model: Any, X: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """``predict``'s output columns for the rows of ``X``, and their names."""
    import numpy as np

    log_density = model.score_samples(X)
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        labels = model.predict(X)
        names = ["label", *(f"p{k}" for k in range(proba.shape[1])), "log_density"]
        return [labels, *proba.T, log_density], names
    if hasattr(model, "decision_function"):
        outlier = (model.predict(X) == -1).astype(np.int64)
        return [log_density, model.decision_function(X), outlier], [
            "log_density", "decision", "outlier"]
    # a density model without components to report (PCA generator)
    return [log_density], ["log_density"]


def _parse_k(text: str) -> list[range]:
    """``"1-10"``, ``"2,4,8"`` or ``"3"`` -> ranges of component counts.

    Ranges, not a list: ``1-100000000`` is checked against the number of rows
    (:func:`_k_values`) before anything that large is built.
    """
    spans: list[range] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(p) for p in part.split("-", 1))
                if high < low:
                    raise ValueError
                spans.append(range(low, high + 1))
            elif part:
                spans.append(range(int(part), int(part) + 1))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a list of component counts like '1-10' or '2,4,8'"
        ) from None
    if not spans or min(span[0] for span in spans) < 1:
        raise click.BadParameter(f"{text!r}: component counts must be at least 1")
    return spans


def _k_values(spans: list[range], text: str, n_rows: int, source: Path) -> list[int]:
    """The component counts of ``--k``, sorted, once none exceeds the number of rows."""
    largest = max(span[-1] for span in spans)
    if largest > n_rows:
        raise click.BadParameter(
            f"{text!r} asks for up to K={largest} components but {source} has {n_rows} "
            "rows; K cannot exceed the number of rows",
            param_hint="'--k'",
        )
    return sorted({k for span in spans for k in span})


def _parse_covariances(text: str) -> list[str] | None:
    """``"all"`` -> None (select's default: mclust's fourteen models, E and V for one
    column), else the comma-separated names, spelled as listed (``VVV``, ``full``)."""
    if text.strip().lower() == "all":
        return None
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in COVARIANCE_TYPES]
    if unknown or not chosen:
        hints = [
            f"{t} (did you mean {t.upper() if t.upper() in COVARIANCE_TYPES else t.lower()}?)"
            if t.upper() in COVARIANCE_TYPES or t.lower() in COVARIANCE_TYPES
            else t
            for t in unknown
        ]
        raise click.BadParameter(
            f"unknown covariance model {', '.join(hints) or repr(text)}; use 'all' or a "
            f"comma-separated list of {', '.join(COVARIANCE_TYPES)}"
        )
    return chosen


# ---------------------------------------------------------------------------- outputs
def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through ``./``, ``..``, symbolic or hard links)."""
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _output_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written, or None when it can."""
    if path.is_dir():
        return f"{path} is a directory"
    if path.exists() and not path.is_file():  # a device or a pipe, written in place
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    # the file is written beside it (where it points, for a symbolic link), then renamed
    parent = path.resolve().parent if path.is_symlink() else path.parent
    if not parent.is_dir():
        if parent.exists():
            return f"cannot write {path}: {parent} is not a directory"
        return f"cannot write {path}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write {path}: directory {parent} is not writable"
    return None


def _check_outputs(
    inputs: Sequence[Path | None], outputs: Sequence[tuple[str, Path | None]]
) -> None:
    """Fail before any work if an output cannot be written.

    Parameters
    ----------
    inputs : sequence of Path or None
        The command's input files; no output may be one of them.
    outputs : sequence of (option, Path or None)
        Each output option and its path (None or ``-``: not written / stdout); the
        paths must differ from each other.

    Raises
    ------
    click.BadParameter
        Naming the option, the path and the problem.
    """
    given = [(option, path) for option, path in outputs if path is not None and str(path) != "-"]
    for option, path in given:
        problem = _output_problem(path)
        if problem is None:
            source = next((p for p in inputs if p is not None and _same_file(path, p)), None)
            if source is not None:
                problem = f"{path} is the input file {source}; writing it would replace the input"
        if problem is not None:
            raise click.BadParameter(problem, param_hint=f"'{option}'")
    for i, (option, path) in enumerate(given):
        for other_option, other in given[:i]:
            if _same_file(path, other):
                raise click.UsageError(
                    f"{other_option} {other} and {option} {path} are the same file; "
                    "give each output its own file"
                )


@contextmanager
def _writing(*targets: Path | None) -> Iterator[OutputSet]:
    """Stage a command's output files: all of them are written, or none is.

    Yields
    ------
    OutputSet
        Hands out temporary paths / handles for ``targets``; renamed over them together
        when the block ends. An OSError (a full disk, ...) becomes one line naming them.
    """
    names = ", ".join(str(t) for t in targets if t is not None and str(t) != "-")
    try:
        with staged_outputs() as outputs:
            yield outputs
    except OSError as exc:
        if not names:
            raise
        reason = exc.strerror or str(exc)
        raise click.ClickException(
            f"could not write {names}: {reason}; no output file was changed"
        ) from exc


def _image_format(path: Path, option: str) -> str:
    """Pillow's format for an image output, or a usage error before any work."""
    from gmmkit.apps.segmentation import image_format

    try:
        return image_format(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None


# ---------------------------------------------------------------------------- commands
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="gmmkit", prog_name="gmmkit")
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show the full traceback of an error.",
)
def cli() -> None:
    """Gaussian mixture models from the command line.

    Data files are .csv/.tsv/.txt (header detected), .npy or .parquet; model files are
    gmmkit's safe .gmm format (no pickle).
    """


@cli.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-k", "--n-components", type=click.IntRange(min=1), required=True,
              help="Number of mixture components.")
@click.option("--covariance", type=click.Choice(COVARIANCE_TYPES), default="full",
              metavar="MODEL", show_default=True, help=_COVARIANCE_OPTION_HELP)
@click.option("--columns", default=None, help=f"{_COLUMNS_HELP} (default: all).")
@click.option("--n-init", type=click.IntRange(min=1), default=None,
              show_default=_gm_default("n_init"),
              help="EM runs from different starts; the best is kept.")
@click.option("--max-iter", type=click.IntRange(min=1), default=None,
              show_default=_gm_default("max_iter"))
@click.option("--tol", type=click.FloatRange(min=0), default=None,
              show_default=_gm_default("tol"),
              help="Stop when the mean log-likelihood changes by less (scikit-learn's rule); "
              "by default GaussianMixture's own rule.")
@click.option("--reg-covar", type=click.FloatRange(min=0), default=None,
              show_default=_gm_default("reg_covar"))
@click.option("--init", "init_params", type=click.Choice(INIT_METHODS), default=None,
              show_default=_gm_default("init_params"))
@click.option("--online", is_flag=True,
              help="One pass of stepwise EM over mini-batches (partial_fit) instead of exact "
              "EM: for files too large to read many times; --n-init, --max-iter and --tol do "
              "not apply.")
@click.option("--batch-size", type=click.IntRange(min=2), default=10_000, show_default=True,
              help="Rows per mini-batch with --online.")
@click.option("--learning-rate", type=click.FloatRange(min=0, max=1, min_open=True),
              default=None,
              help="With --online: a constant step (forgetting old batches, for drifting "
              "data) instead of the decaying schedule.")
@click.option("--missing", type=click.Choice(["error", "marginalize"]), default="error",
              show_default=True, help=_MISSING_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the fitted model here (.gmm).")
@_common()
def fit(
    data: Path,
    n_components: int,
    covariance: str,
    columns: str | None,
    n_init: int | None,
    max_iter: int | None,
    tol: float | None,
    reg_covar: float | None,
    init_params: str | None,
    online: bool,
    batch_size: int,
    learning_rate: float | None,
    missing: str,
    output: Path | None,
    quiet: bool,
    progress: str,
    seed: int | None,
) -> None:
    """Fit a Gaussian mixture to DATA and print a summary."""
    from gmmkit.mixture import GaussianMixture

    if online:
        exact_only = [name for name, value in (("--n-init", n_init), ("--max-iter", max_iter),
                                              ("--tol", tol)) if value is not None]
        if exact_only:
            raise click.UsageError(f"{', '.join(exact_only)} do(es) not apply with --online")
    elif learning_rate is not None:
        raise click.UsageError("--learning-rate applies only with --online")
    _check_outputs([data], [("--output", output)])
    show = _display(quiet, progress)
    show.step(f"reading {data}")
    with _missing_hint(_FIT_HINT):
        X, names = _read(data, columns, allow_missing=missing == "marginalize")
    given: dict[str, Any] = {"n_init": n_init, "max_iter": max_iter, "tol": tol,
                             "reg_covar": reg_covar, "init_params": init_params}
    model = GaussianMixture(
        n_components,
        covariance_type=covariance,
        random_state=seed,
        **{name: value for name, value in given.items() if value is not None},
    )
    if missing != "error":
        model.set_params(missing=missing)
    if online:
        model.set_params(learning_rate=learning_rate)
        n_rows = X.shape[0] if hasattr(X, "shape") else getattr(X, "n_rows", None)
        with show.em("fit --online", 1, -(-n_rows // batch_size) if n_rows else 0), \
                _missing_hint(_FIT_HINT):
            for batch in _batches(X, batch_size):
                model.partial_fit(batch)
        if not hasattr(model, "n_steps_"):
            raise click.ClickException(f"{data} holds no rows")
    else:
        with show.em("fit", model.n_init, model.max_iter), _missing_hint(_FIT_HINT):
            model.fit(X)
    if output is not None:
        show.step(f"writing {output}")
        with _writing(output):
            model.save(output, feature_names=names)
    show.stop()
    for line in _summary(model, X, names, str(data)):
        _echo(quiet, line)
    if output is not None:
        _echo(quiet, f"\nmodel saved to {output}")


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--columns", default=None,
              help=f"{_COLUMNS_HELP} (default: the model's columns by name when both files "
              "have names, else all).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV file to write (default: stdout).")
@_common(seed=False)
def predict(
    model_path: Path,
    data: Path,
    columns: str | None,
    output: Path | None,
    quiet: bool,
    progress: str,
) -> None:
    """Label every row of DATA with a saved MODEL.

    Writes one CSV row per data row: the most probable component, the probability of each
    component and the log-density (for an anomaly detector: log-density, decision value and
    an outlier flag; for a PCA generator: the log-density).  A model fitted with
    `fit --missing marginalize` (or saved by `select --missing marginalize`) reads missing
    cells (empty, NA, NaN, ... as that option says) and predicts from each row's observed
    cells.
    """
    import contextlib

    from gmmkit.data import TableWriter, row_blocks
    from gmmkit.modelfile import load, read_metadata

    _check_outputs([model_path, data], [("--output", output)])
    show = _display(quiet, progress)
    show.step(f"reading {model_path}")
    metadata = read_metadata(model_path)
    model = load(model_path)
    show.step(f"reading {data}")
    marginalize = getattr(model, "missing", "error") == "marginalize"
    hint = ("a model fitted with `gmmkit fit --missing marginalize` (or selected with "
            "`gmmkit select --missing marginalize`, or a detector of `gmmkit anomalies "
            "--missing marginalize`) predicts rows with missing cells; this one was fitted "
            "without it")
    with _missing_hint(hint):
        X, data_names = _read(data, columns, allow_missing=marginalize)
    X = _model_columns(X, data_names, metadata, columns)
    if output is None or str(output) == "-":
        show.stop()  # the rows go to stdout: the display must not run through them
    else:
        show.step(f"predicting and writing {output}")
    n_rows = 0
    names: list[str] = []
    with _writing(output), contextlib.ExitStack() as stack, _missing_hint(hint):
        writer = None
        for block in row_blocks(X, 1 << 18):  # flat memory for a streamed file
            cols, names = _prediction_columns(model, block)
            if writer is None:
                writer = stack.enter_context(TableWriter(output, names))
            writer.write(cols)
            n_rows += len(block)
    show.stop()
    if output is not None:
        where = "stdout" if str(output) == "-" else str(output)
        note = " (labels: components numbered from 0)" if "label" in names else ""
        message = f"{_plural(n_rows, 'row')} written to {where}, one per data row in order{note}"
        if where == "stdout":
            if not quiet:
                click.echo(message, err=True)  # stdout holds the rows
        else:
            _echo(quiet, message)


@cli.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--k", "k_text", default="1-9", show_default=True,
              help="Component counts to try: a range '1-10' or a list '2,4,8'.")
@click.option("--covariance", "covariance_text", default="all", show_default=True,
              metavar="MODELS",
              help="Covariance models to try: 'all' (as mclust: the fourteen models, or E and "
              f"V for one column) or a comma-separated list of {COVARIANCE_HELP}.")
@click.option("--criterion", type=click.Choice(["bic", "aic", "icl"]), default="bic",
              show_default=True)
@click.option("--columns", default=None, help=f"{_COLUMNS_HELP} (default: all).")
@click.option("--n-init", type=click.IntRange(min=1), default=None,
              show_default=_gm_default("n_init"))
@click.option("--max-iter", type=click.IntRange(min=1), default=None,
              show_default=_gm_default("max_iter"))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the best model here (.gmm).")
@click.option("--table", "table_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the selection table as CSV.")
@click.option("--missing", type=click.Choice(["error", "marginalize"]), default="error",
              show_default=True,
              help=_MISSING_HELP + "  With 'marginalize' every candidate is fitted to the "
              "observed cells and the criteria are theirs (BIC's n: the rows with an "
              "observed cell).")
@_common()
def select(
    data: Path,
    k_text: str,
    covariance_text: str,
    criterion: str,
    columns: str | None,
    n_init: int | None,
    max_iter: int | None,
    output: Path | None,
    table_path: Path | None,
    missing: str,
    quiet: bool,
    progress: str,
    seed: int | None,
) -> None:
    """Choose the number of components and covariance model for DATA by BIC/AIC/ICL,
    as mclust's Mclust() does (by default K = 1..9 and all fourteen models).

    Prints the criterion as mclust prints it (rows K, columns models, mclust's sign:
    larger is better; NA where a fit failed or is degenerate) and the top three models;
    --table writes every candidate's row (gmmkit's sign: lower is better).
    With --missing marginalize DATA may have missing cells: every candidate is fitted
    to the observed cells and the criteria are theirs.
    """
    import numpy as np

    import gmmkit
    from gmmkit.apps._common import default_covariance_types

    k_spans = _parse_k(k_text)
    covariances = _parse_covariances(covariance_text)
    _check_outputs([data], [("--output", output), ("--table", table_path)])
    show = _display(quiet, progress)
    show.step(f"reading {data}")
    hint = _FIT_HINT.replace("to fit", "to select")
    with _missing_hint(hint):
        # every model fits in memory
        X, names = _read(data, columns, stream=False, allow_missing=missing == "marginalize")
    ks = _k_values(k_spans, k_text, X.shape[0], data)
    n_models = len(covariances or default_covariance_types(X.shape[1] if X.ndim == 2 else 1))
    n_fits = len(ks) * n_models * (n_init or _GM_DEFAULTS["n_init"])
    with show.em("select", n_fits, max_iter or _GM_DEFAULTS["max_iter"]), _missing_hint(hint):
        result = gmmkit.select(
            X,
            n_components=ks,
            covariance_types=covariances,
            criterion=criterion,
            n_init=n_init,
            max_iter=max_iter,
            random_state=seed,
            missing=missing,
        )
    show.stop()
    header, rows = _selection_rows(result)
    _echo(quiet, result.format_table(criterion))
    dropped = [row for row in result.rows if row["degenerate"]]
    if dropped:
        failed = sum(str(row["reason"]).startswith("fit failed") for row in dropped)
        _echo(quiet, "")
        _echo(quiet, f"NA: {len(dropped) - failed} degenerate and {failed} failed fits "
                     "(--table writes the reasons)")
    best = result.best
    _echo(quiet, "")
    _echo(
        quiet,
        f"best by {criterion.upper()}: {best.n_components} components, covariance "
        f"'{best.covariance_type}'",
    )
    from gmmkit.data import write_table

    with _writing(table_path, output) as outputs:
        if table_path is not None:
            write_table(outputs.path(table_path),
                        [np.asarray([row[i] for row in rows]) for i in range(len(header))],
                        header)
        if output is not None:
            best.save(outputs.path(output), feature_names=names)
    if output is not None:
        _echo(quiet, f"best model saved to {output}")


# printed after the other columns of gmmkit.apps.selection.TABLE_COLUMNS
_TRAILING_COLUMNS = ("min_weight", "reason", "best")


def _selection_rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a selection result's table (whichever columns it has)."""
    import numpy as np

    from gmmkit.apps.selection import TABLE_COLUMNS

    rows = [dict(row) for row in result.rows]
    leading = [c for c in TABLE_COLUMNS if c not in _TRAILING_COLUMNS]
    header = [c for c in leading if any(c in row for row in rows)]
    header += [c for c in rows[0] if c not in header and not isinstance(rows[0][c], dict)]
    table = []
    for row in rows:
        values = []
        for column in header:
            value = row.get(column)
            if isinstance(value, (np.floating, np.integer, np.bool_)):
                value = value.item()
            values.append(value)
        table.append(values)
    return header, table


@cli.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--contamination", type=float, default=None,
              help="Expected fraction of outliers, in (0, 0.5] (default 0.01).")
@click.option("--threshold", type=float, default=None,
              help="Flag rows whose log-density is below this value (instead of a fraction).")
@click.option("-k", "--n-components", type=click.IntRange(min=1), default=None,
              help="Mixture components (default: the detector's default).")
@click.option("--covariance", type=click.Choice(COVARIANCE_TYPES), default="full",
              metavar="MODEL", show_default=True, help=_COVARIANCE_OPTION_HELP)
@click.option("--columns", default=None, help=f"{_COLUMNS_HELP} (default: all).")
@click.option("--all-rows", is_flag=True, help="Write every row with its flag, not only outliers.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV of flagged rows (default: stdout).")
@click.option("--save-model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the fitted detector here (.gmm).")
@click.option("--missing", type=click.Choice(["error", "marginalize"]), default="error",
              show_default=True, help=_ANOMALIES_MISSING_HELP)
@_common()
def anomalies(
    data: Path,
    contamination: float | None,
    threshold: float | None,
    n_components: int | None,
    covariance: str,
    columns: str | None,
    all_rows: bool,
    output: Path | None,
    save_model: Path | None,
    missing: str,
    quiet: bool,
    progress: str,
    seed: int | None,
) -> None:
    """Flag the rows of DATA that a mixture finds least likely."""
    import numpy as np

    import gmmkit
    from gmmkit.data import TableWriter, row_blocks

    if contamination is not None and threshold is not None:
        raise click.UsageError("give --contamination or --threshold, not both")
    marginalize = missing == "marginalize"
    hint = "to flag rows with missing values (judged by their observed cells) pass " \
        "--missing marginalize"
    _check_outputs([data], [("--output", output), ("--save-model", save_model)])
    show = _display(quiet, progress)
    show.step(f"reading {data}")
    with _missing_hint(hint):
        X, names = _read(data, columns, allow_missing=marginalize)
    options: dict[str, Any] = {"covariance_type": covariance, "random_state": seed,
                               "missing": missing}
    if n_components is not None:
        options["n_components"] = n_components
    if threshold is not None:
        options["threshold"] = threshold
    elif contamination is not None:
        options["contamination"] = contamination
    detector = gmmkit.AnomalyDetector(**options)
    with show.em("anomalies", detector.n_init, detector.max_iter), _missing_hint(hint):
        detector.fit(X)
    header = ["row", "log_density", *(["decision"] if marginalize else []),
              *(["outlier"] if all_rows else []),
              *_feature_names(names, detector.n_features_in_)]
    if output is None:
        show.stop()  # the rows go to stdout: the display must not run through them
    else:
        show.step(f"scoring and writing {output}")
    n_rows = n_flagged = 0
    with _writing(output, save_model) as outputs:
        if save_model is not None:
            detector.save(outputs.path(save_model), feature_names=names)
        # stdout (no --output) last: once the model is staged
        with TableWriter(None if output is None else outputs.path(output), header) as writer:
            for block in row_blocks(X, 1 << 18):  # flat memory for a streamed file
                log_density = detector.score_samples(block)
                decision = detector.decision_function(block)
                outlier = decision < 0  # predict's rule
                keep = np.ones(len(block), bool) if all_rows else outlier
                columns_out = [np.flatnonzero(keep) + 1 + n_rows, log_density[keep]]
                if marginalize:
                    columns_out.append(decision[keep])
                if all_rows:
                    columns_out.append(outlier.astype(np.int64))
                columns_out.extend(block[keep].T)
                writer.write(columns_out)
                n_rows += len(block)
                n_flagged += int(outlier.sum())
    message = (f"{n_flagged} of {_plural(n_rows, 'row')} flagged as outliers "
               "(column 'row' counts data rows from 1)")
    if output is not None:
        _echo(quiet, f"{message}; written to {output}")
    elif not quiet:
        click.echo(message, err=True)  # stdout holds the CSV


@cli.command()
@click.argument("image_path", metavar="IMAGE", type=click.Path(path_type=Path))
@click.option("-k", "--n-components", type=click.IntRange(min=1), required=True,
              help="Number of colour segments.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Segmented image to write (.png, .jpg, ...).")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="Also write the label map: .npy, .csv, or an image (.png: pixel value = "
              "label, shown in distinct colours up to 256 labels).")
@click.option("--covariance", type=click.Choice(COVARIANCE_TYPES), default="full",
              metavar="MODEL", show_default=True, help=_COVARIANCE_OPTION_HELP)
@click.option("--spatial", type=click.FloatRange(min=0), default=None,
              help="Weight of pixel-position features, for spatially coherent segments.")
@_common()
def segment(
    image_path: Path,
    n_components: int,
    output: Path,
    labels_path: Path | None,
    covariance: str,
    spatial: float | None,
    quiet: bool,
    progress: str,
    seed: int | None,
) -> None:
    """Segment IMAGE into colour components and write the recoloured image."""
    import numpy as np

    import gmmkit
    from gmmkit.apps.segmentation import check_writable

    if not image_path.exists():
        raise FileNotFoundError(f"image file not found: {image_path}")
    _check_outputs([image_path], [("--output", output), ("--labels", labels_path)])
    output_format = _image_format(output, "--output")
    labels_suffix = None if labels_path is None else labels_path.suffix.lower()
    labels_format = None
    if labels_path is not None and labels_suffix not in (".npy", ".csv"):
        labels_format = _image_format(labels_path, "--labels")
        if n_components > 65536:
            raise click.BadParameter(
                f"a label image holds at most 65536 labels, not {n_components}; "
                "write the labels as .npy or .csv",
                param_hint="'--labels'",
            )
    show = _display(quiet, progress)
    show.step(f"reading {image_path}")
    image = gmmkit.read_image(image_path)
    check_writable(image, output_format)  # e.g. RGBA as JPEG: fail before the fit
    label_dtype = np.uint8 if n_components <= 256 else np.uint16
    if labels_format is not None:  # e.g. 16-bit labels as JPEG
        try:
            check_writable(np.zeros((1, 1), label_dtype), labels_format)
        except ValueError as exc:
            raise click.BadParameter(
                f"{labels_path}: {exc}".replace("segmented image", "label image"),
                param_hint="'--labels'",
            ) from None
    options: dict[str, Any] = {"covariance_type": covariance, "random_state": seed}
    if spatial is not None:
        options["spatial_weight"] = spatial
    with show.em("segment", 1, 100):
        result = gmmkit.segment_image(image, n_components, **options)
    labels = np.asarray(result.labels)
    show.step(f"writing {output}" + ("" if labels_path is None else f" and {labels_path}"))
    with _writing(output, labels_path) as outputs:
        with outputs.open(output) as handle:
            gmmkit.write_image(handle, result.image, format=output_format)
        if labels_path is not None:
            with outputs.open(labels_path) as handle:
                if labels_suffix == ".npy":
                    np.save(handle, labels, allow_pickle=False)
                elif labels_suffix == ".csv":
                    np.savetxt(handle, labels, fmt="%d", delimiter=",")
                else:
                    gmmkit.write_image(handle, labels.astype(label_dtype), format=labels_format,
                                       palette=True)
    show.stop()
    _echo(quiet, f"{image.shape[1]}x{image.shape[0]} image in {n_components} segments "
                 f"written to {output}")


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option("-n", "--n-samples", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV file to write (default: stdout).")
@click.option("--with-labels", is_flag=True, help="Add the component each row was drawn from.")
@_common()
def sample(
    model_path: Path,
    n_samples: int,
    output: Path | None,
    with_labels: bool,
    quiet: bool,
    progress: str,
    seed: int | None,
) -> None:
    """Draw rows from a saved MODEL (grouped by component, as scikit-learn does)."""
    import numpy as np

    from gmmkit.data import write_table
    from gmmkit.modelfile import load, read_metadata

    _check_outputs([model_path], [("--output", output)])
    metadata = read_metadata(model_path)
    model = load(model_path)
    if not hasattr(model, "sample"):
        raise click.UsageError(f"a {type(model).__name__} cannot generate samples")
    if seed is not None and "random_state" in model.get_params():
        model.set_params(random_state=seed)
    X, y = model.sample(n_samples)
    names = _feature_names(metadata["summary"].get("feature_names"), X.shape[1])
    cols = [*X.T]
    if with_labels:
        cols.append(np.asarray(y, dtype=np.int64))
        names.append("component")
    with _writing(output):
        write_table(output, cols, names)
    if output is not None:
        _echo(quiet, f"{n_samples} samples written to {output}")


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@_common(seed=False)
def info(model_path: Path, quiet: bool, progress: str) -> None:
    """Check a saved MODEL file and describe it."""
    from gmmkit.modelfile import load, read_metadata

    metadata = read_metadata(model_path)
    model = load(model_path)  # full validation
    if quiet:
        return
    summary = metadata["summary"]
    name = type(model).__name__
    click.echo(f"{model_path}: {_article(name)} (format {metadata['format']} "
               f"v{metadata['format_version']}, written by gmmkit {metadata['gmmkit_version']})")
    for key in ("n_components", "covariance_type", "n_features", "feature_names"):
        if summary.get(key) is not None:
            value = summary[key]
            click.echo(f"  {key}: {', '.join(value) if isinstance(value, list) else value}")
    for line in _model_details(model):
        click.echo(f"  {line}")
    mixture = _find_mixture(model)
    if mixture is not None and hasattr(mixture, "means_"):
        click.echo("")
        for line in _component_table(mixture, summary.get("feature_names")):
            click.echo(line)


def _find_mixture(model: Any) -> Any:
    """The GaussianMixture a model is or holds, or None."""
    from gmmkit.modelfile import _find_mixture as find

    return find(model)


def _model_details(model: Any) -> list[str]:
    """``info``'s lines on a model's fit: convergence, criteria, a detector's threshold."""
    lines = []
    mixture = _find_mixture(model)
    fitted = model if hasattr(model, "converged_") else mixture
    if fitted is not None and hasattr(fitted, "converged_"):
        state = "converged" if fitted.converged_ else "did NOT converge"
        lines.append(f"EM: {state} after {_plural(int(fitted.n_iter_), 'iteration')}")
    if mixture is not None and getattr(mixture, "lower_bound_", None) is not None:
        lines.append(f"mean log-likelihood per training row: {mixture.lower_bound_:.6g}")
    if mixture is not None and hasattr(mixture, "_n_parameters"):
        lines.append(f"free parameters: {mixture._n_parameters()}")
        lines.extend(_criteria_lines(model, mixture))
    if hasattr(model, "offset_"):
        how = (f"fixed (threshold={model.threshold:g})" if getattr(model, "threshold", None)
               is not None else f"contamination {getattr(model, 'contamination', 0):g} "
               "of the training rows below it")
        lines.append(f"threshold: log-density {model.offset_:.6g} ({how}); a row below it "
                     "is an outlier")
    return lines


def _criteria_lines(model: Any, mixture: Any) -> list[str]:
    """``info``'s lines on BIC, AIC and ICL (lower is better) of a saved model.

    A selector's come from its table (computed on the training data after the fit);
    otherwise BIC and AIC come from the mean log-likelihood of the last EM iteration
    (``lower_bound_``) and the training data's size, recorded since the model files
    this version writes (ICL would need each row's classification: not stored).
    """
    from gmmkit.core import criteria

    selection = getattr(model, "selection_", None)
    if selection is not None and hasattr(selection, "best_row"):
        row = selection.best_row
        return [f"BIC {float(row['bic']):.6g}   AIC {float(row['aic']):.6g}   ICL "
                f"{float(row['icl']):.6g}   (lower is better; from the selection table)"]
    if not hasattr(mixture, "n_samples_fit_"):
        if hasattr(mixture, "n_steps_"):
            return ["BIC, AIC: not defined for a model trained online (partial_fit): its "
                    "log-likelihood is a mini-batch's, not the training data's"]
        if type(mixture).__name__ == "SemiSupervisedGaussianMixture":
            return ["BIC, AIC: not defined for a semi-supervised fit here (its likelihood "
                    "mixes labelled and unlabelled rows)"]
        return ["BIC, AIC: unavailable: this file was written by an older gmmkit, which did "
                "not record the number of training rows (refit, or 'gmmkit fit' prints them)"]
    n_rows, total = int(mixture.n_samples_fit_), float(mixture.sample_weight_sum_)
    log_likelihood = float(mixture.lower_bound_) * total
    n_params = mixture._n_parameters()
    size = _plural(n_rows, "training row")
    if total != n_rows:
        size += f", total sample weight {total:.6g}"
    try:
        bic = f"BIC {criteria.bic(log_likelihood, n_params, total):.6g}   "
    except ValueError:  # weights summing below one observation
        bic = "BIC unavailable (sample weights sum below 1)   "
    return [f"{bic}AIC {criteria.aic(log_likelihood, n_params):.6g}   (lower is better)",
            f"  from {size} and the log-likelihood at the last EM iteration, "
            f"{log_likelihood:.6g}"]


@cli.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo-report"), show_default=True, help="Folder for the report.")
@click.option("--fast", is_flag=True, help="Smaller data and fewer sections' repetitions "
              "(for tests); the figures are the same kinds.")
@_common()
def demo(out_dir: Path, fast: bool, quiet: bool, progress: str, seed: int | None) -> None:
    """Build the HTML demo report (figures on bundled and generated data)."""
    from gmmkit.demo import build_report

    existing = out_dir  # the report folder is created below its nearest existing ancestor
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise click.BadParameter(f"cannot create {out_dir}: {existing} is not a directory",
                                 param_hint="'--out'")
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write into {existing}: not writable",
                                 param_hint="'--out'")
    start = time.perf_counter()
    index = build_report(
        out_dir,
        fast=fast,
        seed=0 if seed is None else seed,
        log=None if quiet else (lambda message: click.echo(message, err=True)),
    )
    _echo(quiet, f"demo report written to {index.resolve()} "
                 f"({time.perf_counter() - start:.0f} s)")


# ---------------------------------------------------------------------------- entry point
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    text = f"gmmkit: warning: {_one_line(str(message))}"
    if _State.console is not None:  # above the progress display, never glued onto it
        _State.console.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        click.echo(text, err=True)


class _Terminated(BaseException):
    """SIGTERM, raised so that staged output files are removed on the way out."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; exit status 0 on success, 1 on an error, 2 on a usage error,
    130 when interrupted (Ctrl-C) and 143 when terminated (SIGTERM)."""
    args = list(sys.argv[1:] if argv is None else argv)
    previous_sigterm: Any = None
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        previous_sigterm = signal.signal(signal.SIGTERM, _terminate)
    # decided afresh on every call: main() may run several times in one process
    _State.debug = bool(os.environ.get("GMMKIT_DEBUG")) or "--debug" in args
    quiet = "-q" in args or "--quiet" in args
    code = 0
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        if quiet:
            warnings.simplefilter("ignore")
        try:
            result = cli.main(args=args, prog_name="gmmkit", standalone_mode=False)
            code = result if isinstance(result, int) else 0
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            code = 0
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.exceptions.Abort:
            click.echo("gmmkit: aborted", err=True)
            code = 130
        except click.UsageError as exc:
            if _State.debug:
                traceback.print_exc()
            command = exc.ctx.command_path if exc.ctx else "gmmkit"
            click.echo(
                f"{command}: error: {_one_line(exc.format_message())} "
                f"(see '{command} --help')",
                err=True,
            )
            code = exc.exit_code
        except click.ClickException as exc:
            click.echo(f"gmmkit: error: {_one_line(exc.format_message())}", err=True)
            code = exc.exit_code
        except KeyboardInterrupt:
            click.echo("gmmkit: interrupted", err=True)
            code = 130
        except _Terminated:
            click.echo("gmmkit: terminated", err=True)
            code = 143
        except Exception as exc:
            if _State.debug:
                traceback.print_exc()
            message = _one_line(str(exc)) or type(exc).__name__
            if isinstance(exc, (KeyError, AttributeError, IndexError, AssertionError)):
                message = f"{type(exc).__name__}: {message} (run with --debug for details)"
            click.echo(f"gmmkit: error: {message}", err=True)
            code = 1
    if previous_sigterm is not None:  # main() may be called in-process (tests, notebooks)
        signal.signal(signal.SIGTERM, previous_sigterm)
    sys.exit(code)


if __name__ == "__main__":
    main()
