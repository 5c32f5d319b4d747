"""Kills placed at exact instants inside the process: a function raises :class:`Killed` before or after
it does its work, and nothing after that instant runs (as with SIGKILL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Killed(BaseException):
    """Stands for SIGKILL inside the process: nothing catches it, nothing after it runs."""


@contextmanager
def killed_when(target: Any, name: str, condition: Any, after: bool = False) -> Iterator[None]:
    """Replace ``target.name`` so that it raises Killed when ``condition(*args)``: before doing anything,
    or with ``after``, once it has done its work."""
    original = getattr(target, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if condition(*args, **kwargs) and not after:
            raise Killed
        result = original(*args, **kwargs)
        if condition(*args, **kwargs):
            raise Killed
        return result

    setattr(target, name, wrapper)
    try:
        yield
    finally:
        setattr(target, name, original)
