"""Nothing lost: every file gmmkit writes is complete or untouched, a command writes all of
its outputs or none, and a K that cannot fit the data fails at once.

Full disks are simulated by a file handle (or ``os.fsync``) that raises ``ENOSPC``; Ctrl-C by
a real SIGINT sent to a command while its output is on its way (the subprocess is slowed
down by a wrapper script, never by a hook in gmmkit). Output paths are checked "before any
work": the readers and the fit are replaced by tripwires that end the test if reached.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gmmkit
import gmmkit.apps.segmentation
import gmmkit.data
import gmmkit.mixture
import gmmkit.modelfile
from _helpers import run_cli
from gmmkit import cli
from gmmkit._atomic import _interrupts_deferred, atomic_write, staged_outputs
from gmmkit.data import write_table

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


# ----------------------------------------------------------------------------- fixtures
def _blobs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [5.0, 5.0]])
    return centres[rng.integers(0, 2, size=n)] + rng.normal(size=(n, 2))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A data table (CSV), a saved model and an image, in a folder of their own."""
    folder = tmp_path_factory.mktemp("inputs")
    data = folder / "data.csv"
    write_table(data, list(_blobs(200).T), ["a", "b"])
    model = folder / "model.gmm"
    gmmkit.GaussianMixture(2, random_state=0).fit(_blobs(200)).save(model,
                                                                     feature_names=["a", "b"])
    image = np.zeros((12, 16, 3), dtype=np.uint8)
    image[:, 8:] = (200, 40, 40)
    photo = folder / "photo.png"
    gmmkit.write_image(photo, image)
    return {"folder": folder, "data": data, "model": model, "image": photo}


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content (hidden temporaries included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def _gmmkit(*args: object, cwd: Path | None = None, timeout: float = 120,
            wrapper: str = "") -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess; ``wrapper`` is Python run first (to patch the OS)."""
    code = wrapper + "\nimport sys\nfrom gmmkit.cli import main\nmain(sys.argv[1:])\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


class WorkStarted(BaseException):
    """Raised by a tripwire: a command started reading or fitting (not caught by main)."""


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every reader and every fit end the test if a command reaches it."""

    def trip(*args: Any, **kwargs: Any) -> Any:
        raise WorkStarted("the command read or fitted before checking its outputs")

    monkeypatch.setattr(gmmkit.data, "read_table", trip)
    monkeypatch.setattr(gmmkit.data, "open_table", trip)
    monkeypatch.setattr(gmmkit.modelfile, "load", trip)
    monkeypatch.setattr(gmmkit.modelfile, "read_metadata", trip)
    monkeypatch.setattr(gmmkit, "read_image", trip)
    monkeypatch.setattr(gmmkit.apps.segmentation, "read_image", trip)
    monkeypatch.setattr(gmmkit.mixture.GaussianMixture, "fit", trip)


def _main(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``gmmkit.cli.main`` in-process; its exit status and stderr."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in args])
    code = exit_info.value.code
    return int(code) if code is not None else 0, capsys.readouterr().err


# ----------------------------------------------------------------------------- the writer
class FullDisk:
    """A file handle that takes ``budget`` characters (or bytes) and then raises ENOSPC."""

    def __init__(self, handle: Any, budget: int) -> None:
        self.handle = handle
        self.budget = budget
        self.raised = False

    def write(self, data: Any) -> int:
        if len(data) > self.budget:
            self.handle.write(data[: self.budget])
            self.budget = 0
            self.raised = True
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= len(data)
        return int(self.handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], list[FullDisk]]:
    """Make every file gmmkit opens for output fill up after ``budget`` units."""
    opened: list[FullDisk] = []
    real_fdopen = os.fdopen

    def install(budget: int) -> list[FullDisk]:
        def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
            handle = FullDisk(real_fdopen(fd, *args, **kwargs), budget)
            opened.append(handle)
            return handle

        monkeypatch.setattr(os, "fdopen", fdopen)
        return opened

    return install


def _model_writer(path: Path) -> None:
    gmmkit.GaussianMixture(3, random_state=0).fit(_blobs(300, seed=1)).save(path)


def _csv_writer(path: Path) -> None:
    write_table(path, list(_blobs(500, seed=2).T), ["x", "y"])


def _image_writer(path: Path) -> None:
    rng = np.random.default_rng(3)
    gmmkit.write_image(path, rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))


WRITERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "model": ("out.gmm", _model_writer),
    "csv": ("out.csv", _csv_writer),
    "image": ("out.png", _image_writer),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_disk_full_midway_keeps_the_old_file(
    kind: str, tmp_path: Path, full_disk: Callable[[int], list[FullDisk]]
) -> None:
    name, writer = WRITERS[kind]
    target = tmp_path / name
    target.write_bytes(b"previous content\n")
    os.chmod(target, 0o640)
    opened = full_disk(100)
    with pytest.raises(OSError) as info:
        writer(target)
    assert info.value.errno == errno.ENOSPC
    assert any(handle.raised for handle in opened), "the write never reached the full disk"
    assert target.read_bytes() == b"previous content\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_disk_full_at_sync_keeps_the_old_file_or_none(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, writer = WRITERS[kind]
    calls = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    new = tmp_path / "new" / name
    new.parent.mkdir()
    with pytest.raises(OSError):
        writer(new)
    assert calls and not new.parent.joinpath(name).exists()
    assert list(new.parent.iterdir()) == []
    old = tmp_path / name
    old.write_bytes(b"old")
    with pytest.raises(OSError):
        writer(old)
    assert old.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", name]


def test_writers_do_write_when_the_disk_has_room(tmp_path: Path) -> None:
    """Guard for the tests above: the same writers replace the file when nothing fails."""
    for name, writer in WRITERS.values():
        target = tmp_path / name
        target.write_bytes(b"previous content\n")
        writer(target)
        assert target.read_bytes() != b"previous content\n"
    assert gmmkit.load(tmp_path / "out.gmm").n_components == 3
    assert gmmkit.read_image(tmp_path / "out.png").shape == (64, 64, 3)
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "x,y"
    assert _temporaries(tmp_path) == []


# ----------------------------------------------------------------------------- staging
def test_staged_outputs_all_or_nothing(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.gmm"
    first.write_text("old a")
    with pytest.raises(RuntimeError, match="second output failed"), staged_outputs() as out:
        with out.open(first, "w", encoding="utf-8") as handle:
            handle.write("new a")
        assert len(_temporaries(tmp_path)) == 1  # the first output waits, staged
        _model_writer(out.path(second))
        raise RuntimeError("second output failed")
    assert first.read_text() == "old a" and not second.exists()
    assert _temporaries(tmp_path) == []
    with staged_outputs() as out:
        with out.open(first, "w", encoding="utf-8") as handle:
            handle.write("new a")
        _model_writer(out.path(second))
        assert first.read_text() == "old a"  # nothing is renamed before the end
    assert first.read_text() == "new a"
    assert gmmkit.load(second).n_components == 3
    assert _temporaries(tmp_path) == []


def test_interrupt_during_the_renames_is_held_back() -> None:
    events = []
    with pytest.raises(KeyboardInterrupt):
        with _interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal is delivered by now
            events.append("renames finished")
    assert events == ["renames finished"]


def test_symlink_is_written_through_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    _csv_writer(link)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert real.read_text().startswith("x,y\n")
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_named_pipe_is_written_in_place(tmp_path: Path) -> None:
    """A pipe (or /dev/null, /dev/stdout) must not be replaced by a regular file."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()))
    reader.start()
    with atomic_write(pipe, "wb") as handle:
        handle.write(b"through the pipe")
    reader.join(timeout=10)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)


# ----------------------------------------------------------------------------- permissions
@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_permissions(kind: str, umask: int, tmp_path: Path) -> None:
    name, writer = WRITERS[kind]
    new = tmp_path / name
    writer(new)
    assert stat.S_IMODE(new.stat().st_mode) == {0o022: 0o644, 0o077: 0o600}[umask]
    kept = tmp_path / f"kept{Path(name).suffix}"
    kept.write_bytes(b"old")
    os.chmod(kept, 0o640)
    writer(kept)
    assert kept.read_bytes() != b"old"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640


def test_permissions_of_staged_cli_outputs(inputs: dict[str, Path], tmp_path: Path) -> None:
    """``segment`` stages two outputs: under umask 077 a new one is 0600, a replaced 0640
    one stays 0640."""
    labels = tmp_path / "labels.npy"
    labels.write_bytes(b"old")
    os.chmod(labels, 0o640)
    out = tmp_path / "seg.png"
    umask = os.umask(0o077)
    try:
        result = run_cli("segment", inputs["image"], "-k", 2, "-o", out, "--labels", labels,
                         "--seed", 0, "-q")
    finally:
        os.umask(umask)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(labels.stat().st_mode) == 0o640
    assert np.load(labels).shape == (12, 16)
    assert _temporaries(tmp_path) == []


# ----------------------------------------------------------------------------- preflight
# every command with the outputs it writes: OUT (and OUT2) are replaced by each case
COMMANDS: dict[str, tuple[list[str], str, str | None, str]] = {
    # name: (arguments, suffix of OUT, suffix of OUT2, the input OUT must not be)
    "fit": (["fit", "{data}", "-k", "2", "-o", "{out}"], ".gmm", None, "data"),
    "predict": (["predict", "{model}", "{data}", "-o", "{out}"], ".csv", None, "data"),
    "anomalies": (["anomalies", "{data}", "-o", "{out}", "--save-model", "{out2}"],
                  ".csv", ".gmm", "data"),
    "select": (["select", "{data}", "--k", "1-2", "--covariance", "VVV", "--table", "{out}",
                "-o", "{out2}"], ".csv", ".gmm", "data"),
    "sample": (["sample", "{model}", "-o", "{out}"], ".csv", None, "model"),
    "segment": (["segment", "{image}", "-k", "2", "-o", "{out}", "--labels", "{out2}"],
                ".png", ".npy", "image"),
}


def _args(command: str, inputs: dict[str, Path], out: object, out2: object = None) -> list[str]:
    arguments, _, suffix2, _ = COMMANDS[command]
    folder = inputs["folder"]
    if out2 is None and suffix2 is not None:
        out2 = folder / f"second{suffix2}"
    values = {"data": inputs["data"], "model": inputs["model"], "image": inputs["image"],
              "out": out, "out2": out2}
    return [a.format(**values) for a in arguments]


def _refused(command: str, args: list[str], inputs: dict[str, Path],
             capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    before = _snapshot(inputs["folder"])
    code, err = _main(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "error" in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert _snapshot(inputs["folder"]) == before  # no output, no temporary, inputs intact
    return lines[0]


def test_tripwires_are_effective(inputs: dict[str, Path], tripwires: None,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Guard: a valid command does reach the readers, so the cases below can fail."""
    for command in COMMANDS:
        out = inputs["folder"] / f"fine{COMMANDS[command][1]}"
        with pytest.raises(WorkStarted):
            cli.main(_args(command, inputs, out))
        assert not out.exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_preflight_missing_directory(command: str, inputs: dict[str, Path], tripwires: None,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = inputs["folder"] / "missing" / f"out{COMMANDS[command][1]}"
    _refused(command, _args(command, inputs, out), inputs, capsys,
             str(out.parent), "does not exist")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_preflight_parent_is_a_file(command: str, inputs: dict[str, Path], tripwires: None,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = inputs["data"] / f"out{COMMANDS[command][1]}"
    _refused(command, _args(command, inputs, out), inputs, capsys,
             str(inputs["data"]), "not a directory")


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_preflight_read_only_directory(command: str, inputs: dict[str, Path], tripwires: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    locked = inputs["folder"] / "locked"
    locked.mkdir(exist_ok=True)
    locked.chmod(0o555)
    try:
        out = locked / f"out{COMMANDS[command][1]}"
        _refused(command, _args(command, inputs, out), inputs, capsys,
                 str(locked), "not writable")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_preflight_output_is_a_directory(command: str, inputs: dict[str, Path],
                                         tripwires: None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = inputs["folder"] / f"folder{COMMANDS[command][1]}"
    folder.mkdir(exist_ok=True)
    _refused(command, _args(command, inputs, folder), inputs, capsys, "directory")


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "symlink", "hard link"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_preflight_output_is_an_input(command: str, spelling: str, inputs: dict[str, Path],
                                      tripwires: None, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    source = inputs[COMMANDS[command][3]]
    monkeypatch.chdir(inputs["folder"])
    alias = inputs["folder"] / f"alias-{command}{source.suffix}"
    if spelling == "symlink" and not alias.is_symlink():
        alias.symlink_to(source)
    if spelling == "hard link":
        alias = inputs["folder"] / f"hard-{command}{source.suffix}"
        if not alias.exists():
            os.link(source, alias)
    out = {"same": source, "dot-slash": f"./{source.name}"}.get(spelling, alias)
    _refused(command, _args(command, inputs, out), inputs, capsys, Path(out).name, "input")


@pytest.mark.parametrize("command", [c for c in sorted(COMMANDS) if COMMANDS[c][2]])
def test_preflight_two_outputs_the_same(command: str, inputs: dict[str, Path],
                                        tripwires: None, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(inputs["folder"])
    out = inputs["folder"] / f"both{COMMANDS[command][1]}"
    _refused(command, _args(command, inputs, out, f"./{out.name}"), inputs, capsys,
             "same file", out.name)


def test_preflight_unwritable_image_format(inputs: dict[str, Path], tripwires: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for out, labels in [("seg.xyz", "l.npy"), ("seg.png", "labels.xyz")]:
        _refused("segment", _args("segment", inputs, inputs["folder"] / out,
                                  inputs["folder"] / labels), inputs, capsys, ".xyz")



def test_label_image_too_deep_for_its_format_is_refused_before_the_fit(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """More than 256 segments need 16-bit labels, which JPEG cannot hold: refused before
    the fit (it used to fail after it); PNG holds them."""

    def trip(*args: Any, **kwargs: Any) -> Any:
        raise WorkStarted("segment fitted before checking its label format")

    monkeypatch.setattr(gmmkit, "segment_image", trip)
    code, err = _main(["segment", inputs["image"], "-k", 300, "-o", tmp_path / "s.png",
                       "--labels", tmp_path / "l.jpg"], capsys)
    assert code == 2 and "l.jpg" in err and "JPEG" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WorkStarted):  # a PNG label map passes the check and reaches the fit
        cli.main([str(a) for a in ["segment", inputs["image"], "-k", 300, "-o",
                                   tmp_path / "s.png", "--labels", tmp_path / "l.png"]])

def test_reported_bugs_end_to_end(inputs: dict[str, Path], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's two examples (the first in a subprocess, as a user runs it)."""
    out = tmp_path / "out.csv"
    result = _gmmkit("anomalies", inputs["data"], "-o", out, "--save-model",
                     tmp_path / "missing" / "m.gmm")
    assert result.returncode == 2
    assert "missing" in result.stderr and "does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == []
    data = tmp_path / "data.csv"
    data.write_bytes(inputs["data"].read_bytes())
    monkeypatch.chdir(tmp_path)
    code, err = _main(["fit", "data.csv", "-k", 2, "-o", "data.csv"], capsys)
    assert code == 2 and "input" in err
    assert data.read_bytes() == inputs["data"].read_bytes()


# ----------------------------------------------------------------------------- CLI failures
def test_cli_disk_full_on_the_second_output_changes_nothing(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``anomalies`` stages the model, then the table fills the disk: neither is replaced
    (the model file was complete, but a command writes all of its outputs or none)."""
    table, model = tmp_path / "flagged.csv", tmp_path / "detector.gmm"
    table.write_text("old table")
    model.write_text("old model")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if "flagged.csv" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        result = run_cli("anomalies", inputs["data"], "-k", 1, "-o", table, "--save-model",
                         model)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and "No space left on device" in line
    assert str(table) in line and str(model) in line
    assert table.read_text() == "old table" and model.read_text() == "old model"
    assert _temporaries(tmp_path) == []
    # guard: without the full disk the same command writes both
    code, err = _main(["anomalies", inputs["data"], "-k", 1, "-o", table, "--save-model", model],
                      capsys)
    assert code == 0, err
    assert table.read_text().startswith("row,") and gmmkit.load(model) is not None


SLOW_FSYNC = textwrap.dedent("""
    import os, time
    real_fsync = os.fsync
    def fsync(fd):  # a slow disk: the output stays a temporary file for a minute
        time.sleep(60)
        real_fsync(fd)
    os.fsync = fsync
""")


@pytest.mark.parametrize(("signum", "code", "existing"),
                         [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)],
                         ids=["SIGINT-existing", "SIGTERM-new"])
def test_interrupted_write_leaves_no_trace(inputs: dict[str, Path], tmp_path: Path,
                                           signum: int, code: int, existing: bool) -> None:
    labels = tmp_path / "labels.csv"
    if existing:
        labels.write_text("previous labels\n")
    code_text = SLOW_FSYNC + "\nimport sys\nfrom gmmkit.cli import main\nmain(sys.argv[1:])\n"
    process = subprocess.Popen(
        [sys.executable, "-c", code_text, "predict", str(inputs["model"]), str(inputs["data"]),
         "-o", str(labels)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".labels.csv.*.tmp")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.02)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] in ("gmmkit: interrupted", "gmmkit: aborted",
                                               "gmmkit: terminated")
    if existing:
        assert labels.read_text() == "previous labels\n"
    else:
        assert not labels.exists()
    assert list(tmp_path.iterdir()) == ([labels] if existing else [])


# ----------------------------------------------------------------------------- bounded K
def _fails_fast(call: Callable[[], Any], *needles: str) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError) as info:
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2.0
    assert peak < 20 * 2**20  # a list of 10**12 ints would need terabytes
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_select_huge_k_range_fails_at_once() -> None:
    X = _blobs(50)
    _fails_fast(lambda: gmmkit.select(X, range(1, 10**12)), "K=999999999999", "(50)")
    _fails_fast(lambda: gmmkit.select(X, range(10**12, 0, -3)), "K=1000000000000", "(50)")
    _fails_fast(lambda: gmmkit.GaussianMixtureSelector(n_components=range(1, 10**12)).fit(X),
                "K=999999999999", "(50)")
    _fails_fast(lambda: gmmkit.select(X, [1, 2, 10**9]), "K=1000000000", "(50)")
    # an endless iterator is read only until a K exceeds the rows
    _fails_fast(lambda: gmmkit.select(X, itertools.count(1)), "K=51", "(50)")
    weights = np.r_[np.ones(10), np.zeros(40)]  # only rows of non-zero weight count
    _fails_fast(lambda: gmmkit.select(X, range(1, 12), sample_weight=weights), "K=11", "(10)")


def test_select_k_up_to_the_rows_is_accepted() -> None:
    X = _blobs(6)
    result = gmmkit.select(X, range(6, 0, -5), covariance_types="VII", n_init=1, n_starts=1,
                           random_state=0)
    assert sorted(int(k) for k in result.table["n_components"]) == [1, 6]


def test_cli_huge_k_fails_at_once(inputs: dict[str, Path]) -> None:
    start = time.perf_counter()
    result = _gmmkit("select", inputs["data"], "--k", "1-100000000", "--table",
                     inputs["folder"] / "never.csv", timeout=60)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "K=100000000" in line and "200 rows" in line
    assert "MemoryError" not in line
    assert time.perf_counter() - start < 30  # the interpreter's start-up included
    assert not (inputs["folder"] / "never.csv").exists()


def test_cli_real_full_disk(inputs: dict[str, Path], tmp_path: Path) -> None:
    """A real full disk: a 64 KiB tmpfs in a private mount namespace (skipped where the
    system does not allow mounting one). ``sample`` writes ~0.7 MB of CSV into it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1)")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    script = (
        'mount -t tmpfs -o size=64k tmpfs "$1" || exit 77\n'
        'printf "old content" > "$1/out.csv"\n'
        '"$2" -m gmmkit.cli sample "$3" -n 20000 --seed 0 -o "$1/out.csv" 2>"$1/../stderr"\n'
        'echo "rc=$?"\n'
        'ls -A "$1"\n'
        'cat "$1/out.csv"\n'
    )
    flags = "-m" if ROOT else "-rm"
    result = subprocess.run([unshare, flags, "sh", "-c", script, "sh", str(mount_point),
                             sys.executable, str(inputs["model"])],
                            capture_output=True, text=True, timeout=120)
    if result.returncode == 77 or not result.stdout.startswith("rc="):
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()[:200]}")
    rc_line, *listing = result.stdout.splitlines()
    stderr = (tmp_path / "stderr").read_text().strip()
    assert rc_line == "rc=1", stderr
    assert "\n" not in stderr and "No space left on device" in stderr and "out.csv" in stderr
    # the directory holds only the old file (no temporary), which kept its content
    assert listing == ["out.csv", "old content"]
