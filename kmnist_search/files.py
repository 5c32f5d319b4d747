"""Atomic file writes (a crash never leaves a half-written file that looks complete), writable-directory
checks and file hashing."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from kmnist_search.errors import RunError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def leftover_temporary_files(path: Path) -> list[Path]:
    """The temporary files that atomic writes of ``path`` killed before their rename left beside it."""
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def check_writable_directory(directory: Path, what: str) -> None:
    """Create ``directory`` if needed and prove a file can be written in it, or raise a one-line
    :class:`~kmnist_search.errors.RunError` naming ``what`` (such as ``--exports-dir``)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"  # one per process: a chief and workers share a run
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise RunError(f"cannot write to {directory} ({error.strerror or error}): choose another {what}") from None


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
