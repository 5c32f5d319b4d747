"""What a user names or numbers, checked before anything is created or deleted: names (runs, spaces,
exports, workers) become one file or directory name inside the folder they belong to, never a path;
seeds fit the 32-bit range every random generator here takes."""

from __future__ import annotations

import re

from kmnist_search.base.errors import BadNameError

MAX_NAME_LENGTH = 100
NAME_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}")
NAME_RULE = f"1 to {MAX_NAME_LENGTH} letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_name(value: str, what: str) -> str:
    """``value`` if it is a plain name (see :data:`NAME_RULE`), else a one-line :class:`BadNameError`
    naming ``what`` (such as ``--name``) and the rule."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise BadNameError(f"{what} {value!r} is not a plain name: use {NAME_RULE} (no paths)")
    return value


SEED_LIMIT = 2**32 - 1


def check_seed(value: int, what: str) -> int:
    """``value`` if it is a seed in 0..2**32-1, else a one-line :class:`BadNameError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_LIMIT:
        raise BadNameError(f"{what} {value!r} is out of range: use a whole number from 0 to {SEED_LIMIT:,}")
    return value
