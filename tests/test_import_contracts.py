"""The import contracts in pyproject.toml cover the whole package: a module added later is held by them too."""

from __future__ import annotations

import pkgutil
import re
import sys
from pathlib import Path

import kmnist_search

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"__main__", "run", "ensemble", "quantize", "verify", "predict", "summary", "download"}
COMMANDS_MAY_IMPORT = {"pipeline", "commands", "base", "export", "export.__main__", "export.inference"}


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]


def package_modules() -> set[str]:
    """Every module and subpackage of kmnist_search, named relative to it ("search.tuners")."""
    return {info.name.removeprefix("kmnist_search.")
            for info in pkgutil.walk_packages(kmnist_search.__path__, prefix="kmnist_search.")}


def within(module: str, names: set[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in names)


def test_the_tiers_hold_every_top_level_module_and_subpackage() -> None:
    (tiers,) = [c for c in contracts() if c["type"] == "layers"]
    layered = {name.strip() for layer in tiers["layers"] for name in re.split(r"[|:]", layer)}
    top_level = {module.name for module in pkgutil.iter_modules(kmnist_search.__path__)}
    assert layered == top_level
    assert top_level >= ENTRY_POINTS


def test_the_commands_contract_forbids_every_module_but_the_pipeline_the_base_and_inference() -> None:
    (through_pipeline,) = [c for c in contracts() if c.get("source_modules") == ["kmnist_search.commands"]]
    forbidden = {name.removeprefix("kmnist_search.") for name in through_pipeline["forbidden_modules"]}
    for module in package_modules() - ENTRY_POINTS:
        allowed = within(module, {"pipeline", "commands", "base"}) or module in COMMANDS_MAY_IMPORT
        assert within(module, forbidden) != allowed, module
