"""The import contracts in pyproject.toml cover the whole package: a module added later is held by them too."""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path

import kmnist_search

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
COMMANDS_MAY_IMPORT = {"pipeline", "errors", "files", "names", "formatting", "inference", "commands",
                       "__main__", "run", "export", "ensemble", "quantize", "verify", "predict", "summary", "download"}


def test_the_commands_contract_forbids_every_module_but_the_pipeline_the_base_and_inference() -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = settings["tool"]["importlinter"]["contracts"]
    (through_pipeline,) = [c for c in contracts if c.get("source_modules") == ["kmnist_search.commands"]]
    modules = {module.name for module in pkgutil.iter_modules(kmnist_search.__path__)}
    assert {name.removeprefix("kmnist_search.") for name in through_pipeline["forbidden_modules"]} == (
        modules - COMMANDS_MAY_IMPORT)
