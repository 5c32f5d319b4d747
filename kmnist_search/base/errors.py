"""The few error types the command line turns into one-line messages.

Every expected failure (bad data, a bad search-space file, a bad model file, a bad image)
raises a subclass of :class:`KmnistSearchError` whose message names the problem and the fix.
The command-line front ends print that message on one line and exit non-zero; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno

# Failures of the disk a run writes to, with what to do about each: no trial can go on after one, so a search
# stops at once with one line (a trial failed by one is retried by the rerun, from its last good epoch)
DISK_ERRORS = {errno.ENOSPC: "free space on that disk", errno.EDQUOT: "free space within your disk quota",
               errno.EFBIG: "a file size limit stopped the write: raise it (ulimit -f)",
               errno.EROFS: "the folder is on a read-only file system: choose another folder",
               errno.EACCES: "you may not write there: choose another folder or fix its permissions"}


class KmnistSearchError(Exception):
    """An expected failure, reported to the user as one line."""

    exit_code = 2


class DataError(KmnistSearchError):
    """A dataset file is missing, corrupt, or not what the registry says it should be."""


class SpaceError(KmnistSearchError):
    """A search-space file cannot be read or is invalid."""


class RunError(KmnistSearchError):
    """A search cannot start or continue (bad options, unwritable or mismatched run directory)."""


class ModelFileError(KmnistSearchError):
    """A model file (ONNX or Keras) is missing, truncated or not the expected model."""


class ParityError(KmnistSearchError):
    """The ONNX model does not reproduce the Keras model's predictions."""


class InputImageError(KmnistSearchError):
    """An input image or array for prediction cannot be read or used."""


class BadNameError(KmnistSearchError):
    """A name given for a run, a space, an export or a worker is not a plain, safe name (or a seed is
    out of range)."""


class TrialDiskError(OSError):
    """The disk failed a trial's write (one of :data:`DISK_ERRORS`): the search stopped, and the rerun
    continues the trial from its last good epoch."""
