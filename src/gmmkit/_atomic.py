"""Atomic file output: a file gmmkit writes is either complete or not there at all.

Every output (model files, CSV tables, images, the demo report) goes through
:func:`atomic_write`: the content is written to a temporary file in the target's own
directory, flushed and ``fsync``-ed, given the permissions the target should have, then
renamed over the target (an atomic step on POSIX and Windows), and the directory entry is
synced. Until the rename a file that already existed keeps its old content; on any error
(a full disk, Ctrl-C, an exception in the writer) the temporary file is removed and the
target is untouched.

Permissions: a new file gets what any file the user creates gets (``0o666`` less the
umask); a replaced file keeps its mode.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PathLike = str | os.PathLike[str]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _target_mode(target: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def _sync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) and SIGTERM for the duration of the block.

    A signal that arrives meanwhile is re-delivered to its previous handler when the block
    ends, so a group of renames is never cut in half. Only the main thread can install
    handlers; elsewhere the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, frame: Any) -> None:
        received.append((signum, frame))

    for held in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[held] = signal.signal(held, hold)
        except (ValueError, OSError):  # pragma: no cover - e.g. an embedded interpreter
            pass
    try:
        yield
    finally:
        for restored, handler in previous.items():
            signal.signal(restored, handler)
        for signum, frame in received[:1]:
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


@dataclass
class _Staged:
    temporary: Path
    target: Path
    mode: int
    synced: bool = False
    in_place: bool = False  # a device or a pipe, written directly


class OutputSet:
    """Several output files written as one: all of them appear, or none does.

    Each output is first written to a temporary file in its target's directory
    (:meth:`path` or :meth:`open`); :meth:`commit` syncs them, gives them the target's
    permissions and renames them all over their targets; :meth:`discard` removes them.
    Use it through :func:`staged_outputs`, which commits when its block ends normally and
    discards on any exception (including Ctrl-C).

    The renames are the only step left once every byte is on disk; they are done with
    interrupts held back, so a Ctrl-C cannot leave some outputs replaced and others not.

    A target that is a symbolic link is written where the link points (the link stays).
    A target that exists but is not a regular file (``/dev/null``, a named pipe,
    ``/dev/stdout``) is written directly: renaming over it would replace the device.
    """

    def __init__(self) -> None:
        self._staged: list[_Staged] = []

    def _stage(self, path: PathLike) -> tuple[int | None, _Staged]:
        """Record an output; the descriptor of its new temporary file (None: in place)."""
        target = Path(path)
        resolved = target.resolve()
        if any(item.target.resolve() == resolved for item in self._staged):
            raise ValueError(f"{target} is staged twice as an output")
        try:
            is_regular = stat.S_ISREG(os.stat(target).st_mode)
        except FileNotFoundError:
            is_regular = True  # a new file (or a dangling link: created where it points)
        if not is_regular and not target.is_dir():
            staged = _Staged(target, target, 0, synced=True, in_place=True)
            self._staged.append(staged)
            return None, staged
        if target.is_symlink():
            target = resolved
        directory = target.parent if str(target.parent) else Path(".")
        mode = _target_mode(target)
        with _interrupts_deferred():  # a Ctrl-C between creating and recording would leak it
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".tmp", dir=directory
            )
            staged = _Staged(Path(tmp_name), target, mode)
            self._staged.append(staged)
        return fd, staged

    def path(self, target: PathLike) -> Path:
        """A temporary path to write ``target``'s content to, for writers that take a path.

        Parameters
        ----------
        target : str or path-like
            The final file; its directory must exist.

        Returns
        -------
        Path
            An empty file beside the target; the writer may replace it (atomically or not)
            but must not rely on its name's suffix.
        """
        fd, staged = self._stage(target)
        if fd is not None:
            os.close(fd)
        return staged.temporary

    @contextlib.contextmanager
    def open(
        self,
        target: PathLike,
        mode: str = "wb",
        *,
        encoding: str | None = None,
        newline: str | None = None,
    ) -> Iterator[IO[Any]]:
        """Open ``target``'s temporary file for writing.

        Parameters
        ----------
        target : str or path-like
            The final file; its directory must exist.
        mode : {"wb", "w"}
            Binary or text.
        encoding, newline : str, optional
            As for :func:`open` in text mode.

        Yields
        ------
        file object
            Flushed, ``fsync``-ed and closed when the block ends.
        """
        if mode not in ("w", "wb"):
            raise ValueError(f"outputs are opened with mode 'w' or 'wb', got {mode!r}")
        fd, staged = self._stage(target)
        if fd is None:
            fd = os.open(staged.target, os.O_WRONLY)
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            if not staged.in_place:
                os.fsync(handle.fileno())
        staged.synced = True

    def commit(self) -> None:
        """Move every staged file over its target (each target keeps or gets its mode)."""
        renamed = [item for item in self._staged if not item.in_place]
        for item in renamed:
            if not item.synced:
                _sync_file(item.temporary)
            os.chmod(item.temporary, item.mode)
        with _interrupts_deferred():
            for item in renamed:
                os.replace(item.temporary, item.target)
            self._staged = []
        for directory in {item.target.parent if str(item.target.parent) else Path(".")
                          for item in renamed}:
            _sync_directory(directory)

    def discard(self) -> None:
        """Remove every staged temporary file; the targets are left as they were."""
        staged, self._staged = self._staged, []
        for item in staged:
            if not item.in_place:
                with contextlib.suppress(OSError):
                    item.temporary.unlink()


def _sync_file(path: Path) -> None:
    # a writer given a path (not a handle) may not have synced it
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def staged_outputs() -> Iterator[OutputSet]:
    """Write several files so that all of them are replaced, or none is.

    Yields
    ------
    OutputSet
        Hands out temporary paths / handles; committed when the block ends normally,
        discarded (every temporary file removed, no target touched) on any exception.

    Examples
    --------
    >>> with staged_outputs() as outputs:  # doctest: +SKIP
    ...     model.save(outputs.path("model.gmm"))
    ...     with outputs.open("table.csv", "w", encoding="utf-8") as handle:
    ...         write_csv(handle)
    """
    outputs = OutputSet()
    try:
        yield outputs
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise


@contextlib.contextmanager
def atomic_write(
    path: PathLike,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it is replaced only once fully written.

    The one-file case of :func:`staged_outputs`.

    Parameters
    ----------
    path : str or path-like
        The target file. Its directory must exist.
    mode : {"wb", "w"}
        Binary or text.
    encoding, newline : str, optional
        As for :func:`open` in text mode.

    Yields
    ------
    file object
        Write to it inside the ``with`` block; the target appears (or is replaced) when the
        block ends without an exception.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', got {mode!r}")
    with staged_outputs() as outputs, outputs.open(
        path, mode, encoding=encoding, newline=newline
    ) as handle:
        yield handle


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)
