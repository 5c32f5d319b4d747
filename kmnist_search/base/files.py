"""Atomic file writes (a crash never leaves a half-written file that looks complete), writable-directory
checks and file hashing.

Every file this package writes is first created under a fresh, unguessable name (``O_CREAT|O_EXCL``,
as :func:`tempfile.mkstemp` and :func:`tempfile.mkdtemp` do) and then renamed over its target, which
replaces a link rather than following it: a symlink planted in a shared folder can never redirect a
write. Those temporary names all start with :data:`PARTIAL_PREFIX` and the target's name, so what a
killed write left behind is told apart from anything else in the folder.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kmnist_search.base.errors import RunError

PARTIAL_PREFIX = ".kmnist-search-partial-"  # every temporary file or folder this package creates


def _partial_prefix(path: Path) -> str:
    return f"{PARTIAL_PREFIX}{path.name}-"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a new temporary file in the same directory, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=_partial_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def staged_path(path: Path) -> Iterator[Path]:
    """A path with ``path``'s name inside a new private folder beside it, for writers that insist on a
    file name (Keras, h5py, matplotlib). When the block ends, the file is fsynced and renamed over
    ``path``; if the block fails, the folder is removed and ``path`` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_partial_prefix(path), dir=path.parent))
    try:
        staged = staging / path.name
        yield staged
        with staged.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_set(marker: Path, targets: list[Path]) -> Iterator[dict[Path, Path]]:
    """Write several files that belong together (a model, its reference, its card) so that a reader
    finds either the old set or the new one, never a mix.

    The block writes each target's content to the staged path it is given (in a private folder beside
    the targets). When the block ends, ``marker`` records which staged file replaces which target, then
    each is renamed over its target and the marker is removed. A kill before the marker is written leaves
    the old set; a kill after it leaves a marker that :func:`finish_staged_set` (called before any read
    or write of the set) completes. If the block fails, nothing is replaced."""
    folder = marker.parent
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_partial_prefix(targets[0]), dir=folder))
    try:
        staged = {target: staging / target.name for target in targets}
        yield staged
        for path in staged.values():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        atomic_write_json(marker, {target.name: str(path.relative_to(folder)) for target, path in staged.items()})
        finish_staged_set(marker)
    finally:
        if not marker.exists():  # replaced, or never committed; with the marker, the staged files stay for it
            shutil.rmtree(staging, ignore_errors=True)


def finish_staged_set(marker: Path) -> bool:
    """Complete the replacement a marker of :func:`staged_set` records (a kill interrupted it): rename every
    staged file still there over its target, then remove the marker. False when there is no marker."""
    try:
        pairs = json.loads(marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as error:
        raise RunError(f"{marker} records an interrupted export but cannot be read ({error}): delete it and "
                       f"export again") from None
    for target, staged in pairs.items():
        source = marker.parent / staged
        if not staged.startswith(PARTIAL_PREFIX) or ".." in Path(staged).parts or Path(staged).is_absolute():
            raise RunError(f"{marker} names {staged!r}, which no export of this package stages: delete it")
        if source.is_file() and not source.is_symlink():
            os.replace(source, marker.parent / Path(target).name)
    directory = os.open(marker.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    marker.unlink()
    for staged in pairs.values():
        shutil.rmtree(marker.parent / Path(staged).parts[0], ignore_errors=True)  # the emptied staging folder
    return True


def leftover_temporary_files(path: Path) -> list[Path]:
    """The temporary files and folders that writes of ``path`` killed before their rename left beside it."""
    return sorted(path.parent.glob(f"{glob.escape(_partial_prefix(path))}*"))


def remove_leftovers_of(path: Path) -> list[Path]:
    """Delete what killed writes of ``path`` left beside it, and nothing else; return what was deleted."""
    return [leftover for leftover in leftover_temporary_files(path) if _remove(leftover)]


def remove_leftovers(directory: Path) -> list[Path]:
    """Delete every temporary file or folder that a killed write of this package left in ``directory``
    or below it, and nothing else; return what was deleted."""
    return [path for path in sorted(directory.rglob(f"{PARTIAL_PREFIX}*")) if _remove(path)]


def _remove(path: Path) -> bool:
    """Delete a file, a link (not what it points to) or a folder; False if it is already gone."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
        return True
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
        return True
    return False


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def check_writable_directory(directory: Path, what: str) -> None:
    """Create ``directory`` if needed and prove a file can be written in it, or raise a one-line
    :class:`~kmnist_search.base.errors.RunError` naming ``what`` (such as ``--exports-dir``)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(prefix=PARTIAL_PREFIX, dir=directory) as probe:  # a new file, never a link
            probe.write(b"ok")
    except OSError as error:
        raise RunError(f"cannot write to {directory} ({error.strerror or error}): choose another {what}") from None


_HELD_LOCKS: dict[Path, int] = {}  # lock file -> how many nested holders in this process


@contextmanager
def exclusive_lock(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if missing, never through a link) for the block, or
    raise a one-line RunError naming the process that holds it. The operating system releases the lock
    when its process ends, however it ends: a killed run never blocks the next. Nested holds in one
    process are allowed."""
    key = lock_path.absolute()
    if key in _HELD_LOCKS:
        _HELD_LOCKS[key] += 1
        try:
            yield
        finally:
            _HELD_LOCKS[key] -= 1
        return
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            reason = "a link is planted in its place: remove it"
        elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason = "its folder cannot be written: copy it to a folder you can write, or fix its permissions"
        else:
            reason = "check the folder"
        raise RunError(f"cannot lock {what} at {lock_path} ({error.strerror or error}): {reason}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunError(f"{what} is in use by {holder}: wait for it to finish, or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (f"process {os.getpid()} (started {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: "
                       f"{' '.join(sys.argv)[:300]})\n").encode(), 0)
        _HELD_LOCKS[key] = 1
        try:
            yield
        finally:
            del _HELD_LOCKS[key]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def waiting_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` for the block, waiting for any other holder: for short
    critical sections that processes of one run take in turn. Released when the process ends."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
