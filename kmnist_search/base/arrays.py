"""Reading .npy and .npz array files with bounded memory and time, never unpickling anything.

The header is read and checked before any data: an array whose header claims more than ``max_bytes``
(or an .npz member that would unpack to more) is refused before it is decompressed or allocated, so
a small crafted file (a zip bomb, a header claiming 10^12 items) costs nothing. Pipes and devices are
refused: only regular files are opened.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from kmnist_search.base.errors import KmnistSearchError

NPY_HEADER_SLACK_BYTES = 1 << 16  # a .npy header is at most this long


def read_bounded_array(path: Path, max_bytes: int, error: type[KmnistSearchError], member: str | None = None,
                       fix: str = "") -> np.ndarray:
    """The array in an .npy file, or ``member`` of an .npz (its first array when None), holding at most
    ``max_bytes`` of data. Every failure raises ``error`` in one line ending with ``fix``."""
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "missing" if not path.exists() else "not a regular file"
        raise error(f"{path} is {kind}{fix}")
    try:
        if path.suffix.lower() == ".npz" or zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith(".npy")]
                wanted = names[0] if member is None and names else f"{member}.npy"
                if wanted not in archive.namelist():
                    found = [n.removesuffix(".npy") for n in names]
                    raise error(f"{path} has no array {member!r} (found {found}){fix}" if member
                                else f"{path} holds no arrays{fix}")
                info = archive.getinfo(wanted)
                if info.file_size > max_bytes + NPY_HEADER_SLACK_BYTES:
                    raise error(f"{path} unpacks to {info.file_size:,} bytes, over the {max_bytes:,}-byte limit{fix}")
                with archive.open(info) as stream:
                    return _read_npy(stream, path, max_bytes, error, fix)
        with path.open("rb") as stream:
            return _read_npy(stream, path, max_bytes, error, fix)
    except KmnistSearchError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as problem:
        first = str(problem).strip().splitlines()[0][:120] if str(problem).strip() else type(problem).__name__
        raise error(f"{path} cannot be read ({first}): the file is truncated or corrupt{fix}") from None


def _read_npy(stream: IO[bytes], path: Path, max_bytes: int, error: type[KmnistSearchError], fix: str) -> np.ndarray:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise error(f"{path} is an .npy file of version {version}, which is not read here{fix}")
    if dtype.hasobject:
        raise error(f"{path} holds a pickled object array, which is refused for safety{fix}")
    if any(d < 0 for d in shape):
        raise error(f"{path} has a malformed header (shape {shape}){fix}")
    count = math.prod(shape)
    size_bytes = count * dtype.itemsize
    if size_bytes > max_bytes:
        raise error(f"{path} claims {count:,} items ({size_bytes:,} bytes), over the {max_bytes:,}-byte limit{fix}")
    data = stream.read(size_bytes)
    if len(data) < size_bytes:
        raise error(f"{path} holds {len(data):,} of the {size_bytes:,} bytes its header promises: the file is "
                    f"truncated{fix}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C").copy()
