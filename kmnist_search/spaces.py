"""Read and validate ``search_spaces/*.toml`` into a typed :class:`SearchSpace`.

A space file has three parts::

    name = "report"
    description = "The study's ranges"

    [hyperparameters]          # each a non-empty list; every combination is one configuration
    learning_rate = [0.1, 0.01]
    batch_size = [8, 128]
    loss = ["categorical_crossentropy", "mean_squared_error"]

    [training]                 # fixed for every trial
    optimizer = "adadelta"
    epochs = 12
    validation_images = 6000   # held out, stratified, from the official training set
    train_images = 12000       # optional: a stratified subset of the rest (default: all of it)

Every error names the file, the key and the problem.
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kmnist_search.errors import SpaceError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOSSES = ("categorical_crossentropy", "mean_squared_error")
OPTIMIZERS = ("adadelta", "adam", "sgd", "rmsprop")
HYPERPARAMETERS = ("learning_rate", "batch_size", "loss")
TOP_LEVEL_KEYS = ("name", "description", "hyperparameters", "training")
TRAINING_KEYS = ("optimizer", "epochs", "validation_images", "train_images")
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "search_spaces"


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: the values to try and the fixed training budget."""

    name: str
    description: str
    learning_rates: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    losses: tuple[str, ...]
    optimizer: str
    epochs: int
    validation_images: int
    train_images: int | None
    source: str = ""

    @property
    def num_configurations(self) -> int:
        return len(self.learning_rates) * len(self.batch_sizes) * len(self.losses)

    def values(self) -> dict[str, tuple[Any, ...]]:
        """Hyperparameter name -> the values to try, in file order."""
        return {"learning_rate": self.learning_rates, "batch_size": self.batch_sizes, "loss": self.losses}

    def configurations(self) -> list[dict[str, Any]]:
        """Every combination, in grid order."""
        names = list(self.values())
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*self.values().values())]

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a run and its resumption."""
        data = asdict(self)
        data.pop("source")
        data.pop("description")
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    def with_epochs(self, epochs: int) -> SearchSpace:
        """A copy with another epoch budget (the ``--epochs`` override)."""
        if epochs < 1:
            raise SpaceError(f"--epochs {epochs}: must be at least 1")
        return SearchSpace(**{**asdict(self), "epochs": epochs})


def resolve_space_path(name_or_path: str) -> Path:
    """A path as given, or a built-in space name such as ``quick`` or ``report``."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if not candidate.is_file():
            raise SpaceError(f"search space file {candidate} does not exist: pass an existing .toml file "
                             f"or one of the built-in names ({', '.join(builtin_space_names())})")
        return candidate
    for directory in (Path.cwd() / "search_spaces", BUILTIN_DIR):
        path = directory / f"{name_or_path}.toml"
        if path.is_file():
            return path
    raise SpaceError(f"unknown search space {name_or_path!r}: use one of {', '.join(builtin_space_names())} "
                     f"or a path to a .toml file")


def builtin_space_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def load_space(name_or_path: str) -> SearchSpace:
    """Read and validate a search-space file (or built-in name)."""
    path = resolve_space_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise SpaceError(f"search space {path}: malformed TOML ({error}): fix the syntax") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpaceError(f"search space {path}: cannot be read ({error})") from None
    return parse_space(data, source=str(path))


def parse_space(data: dict[str, Any], source: str = "<memory>") -> SearchSpace:
    """Validate the parsed TOML of a space file."""
    where = f"search space {source}"
    _reject_unknown(data, TOP_LEVEL_KEYS, where, "")
    hyper = _table(data, "hyperparameters", where)
    training = _table(data, "training", where)
    _reject_unknown(hyper, HYPERPARAMETERS, where, "[hyperparameters].")
    _reject_unknown(training, TRAINING_KEYS, where, "[training].")
    for key in HYPERPARAMETERS:
        if key not in hyper:
            raise SpaceError(f"{where}: [hyperparameters].{key} is missing: give a list of values to try")

    learning_rates = _list(hyper, "learning_rate", where, _positive_float)
    batch_sizes = _list(hyper, "batch_size", where, _positive_int)
    losses = _list(hyper, "loss", where, _one_of(LOSSES))
    optimizer = _one_of(OPTIMIZERS)(training.get("optimizer", "adadelta"))
    if optimizer is None:
        raise SpaceError(f"{where}: [training].optimizer must be one of {', '.join(OPTIMIZERS)}")
    epochs = _required_int(training, "epochs", where, minimum=1)
    validation_images = _required_int(training, "validation_images", where, minimum=1, default=6000)
    train_images = None
    if "train_images" in training:
        train_images = _required_int(training, "train_images", where, minimum=1)
        if train_images < max(batch_sizes):
            raise SpaceError(f"{where}: [training].train_images = {train_images} is smaller than the largest "
                             f"batch_size {max(batch_sizes)}: raise train_images or lower the batch size")
    name = data.get("name", Path(source).stem)
    description = data.get("description", "")
    if not isinstance(name, str) or not name or not isinstance(description, str):
        raise SpaceError(f"{where}: name and description must be strings")
    return SearchSpace(name, description, learning_rates, batch_sizes, losses, optimizer, epochs,
                       validation_images, train_images, source)


def _reject_unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise SpaceError(f"{where}: unknown key {prefix}{key}: allowed keys are {', '.join(allowed)}")


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    table = data.get(key)
    if not isinstance(table, dict):
        raise SpaceError(f"{where}: the [{key}] table is missing")
    return table


def _list(table: dict[str, Any], key: str, where: str, convert: Any) -> tuple[Any, ...]:
    raw = table[key]
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise SpaceError(f"{where}: [hyperparameters].{key} is an empty list: give at least one value")
    converted = []
    for value in values:
        result = convert(value)
        if result is None:
            raise SpaceError(f"{where}: [hyperparameters].{key} has invalid value {value!r}: "
                             f"{_EXPECTATIONS.get(key, 'see the README')}")
        converted.append(result)
    if len(set(converted)) != len(converted):
        raise SpaceError(f"{where}: [hyperparameters].{key} lists a value twice: list each value once")
    return tuple(converted)


_EXPECTATIONS = {
    "learning_rate": "expected a positive number",
    "batch_size": "expected a positive whole number",
    "loss": f"expected one of {', '.join(LOSSES)}",
}


def _positive_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if number > 0 and math.isfinite(number) else None


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value > 0 else None


def _one_of(choices: tuple[str, ...]) -> Any:
    def convert(value: Any) -> str | None:
        return value if isinstance(value, str) and value in choices else None

    return convert


def _required_int(table: dict[str, Any], key: str, where: str, minimum: int, default: int | None = None) -> int:
    if key not in table:
        if default is None:
            raise SpaceError(f"{where}: [training].{key} is missing")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpaceError(f"{where}: [training].{key} = {value!r}: expected a whole number >= {minimum}")
    return value
