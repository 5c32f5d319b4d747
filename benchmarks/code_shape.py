"""The package's shape at two commits: modules, their lines, and the longest functions.

Run: python benchmarks/code_shape.py [--before COMMIT] [--after COMMIT]

Reads every ``kmnist_search/**/*.py`` file of each commit from git (no checkout) and parses it with
``ast``: how many modules there are and how many sit flat in the package's top folder, lines per
module (mean, median, the largest), the longest function or method, and the two pieces of code that
read worst before the package was split by stage (``run_search`` and the ``RunDir`` class). Writes
benchmarks/records/code_shape.json and the BENCHMARKS.md section rendered from it.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys
from typing import Any

from records import BENCHMARKS, ROOT, description, publish, write_record

RECORD = ROOT / "benchmarks" / "records" / "code_shape.json"
DOCUMENT = BENCHMARKS
MARKER = "figures:code-shape"
PACKAGE = "kmnist_search"
BEFORE = "95766a7"  # the last commit with the flat layout
WATCHED = ("run_search", "RunDir")


def git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def sources(commit: str) -> dict[str, str]:
    """Every Python module of the package at ``commit``: its path and text."""
    paths = [p for p in git("ls-tree", "-r", "--name-only", commit, PACKAGE).split() if p.endswith(".py")]
    return {path: git("show", f"{commit}:{path}") for path in paths}


def definitions(tree: ast.Module, path: str) -> list[tuple[str, str, int]]:
    """Every function, method and class of a module: (kind, qualified name, lines)."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                kind = "class" if isinstance(child, ast.ClassDef) else "function"
                found.append((kind, f"{path}:{name}", (child.end_lineno or child.lineno) - child.lineno + 1))
                visit(child, f"{name}.")

    visit(tree, "")
    return found


def measure(commit: str) -> dict[str, Any]:
    """The shape of the package at ``commit``."""
    texts = sources(commit)
    lines = {path: len(text.splitlines()) for path, text in texts.items()}
    found = [d for path, text in texts.items() for d in definitions(ast.parse(text), path)]
    functions = [(name, length) for kind, name, length in found if kind == "function"]
    longest = max(functions, key=lambda item: item[1])
    largest = max(lines, key=lines.__getitem__)
    watched = {short: max((length for _, name, length in found if name.rsplit(":", 1)[1] == short), default=None)
               for short in WATCHED}
    return {"commit": git("rev-parse", "--short=7", commit).strip(), "modules": len(texts),
            "flat_modules": sum(path.count("/") == 1 for path in texts),
            "packages": len({path.rsplit("/", 1)[0] for path in texts}),
            "lines": sum(lines.values()), "lines_per_module_mean": round(statistics.fmean(lines.values()), 1),
            "lines_per_module_median": statistics.median(lines.values()),
            "largest_module": {"path": largest, "lines": lines[largest]},
            "longest_function": {"name": longest[0], "lines": longest[1]},
            "functions_over_50_lines": sum(length > 50 for _, length in functions), "watched": watched}


def named(name: str, lines: int) -> str:
    return f"`{name}`, {lines} lines"


def render(record: dict[str, Any]) -> str:
    before, after = record["before"], record["after"]
    rows = [("modules (packages)", lambda s: f"{s['modules']} ({s['packages']})"),
            ("modules flat in `kmnist_search/`", lambda s: str(s["flat_modules"])),
            ("lines of code", lambda s: f"{s['lines']:,}"),
            ("lines per module: mean / median", lambda s: f"{s['lines_per_module_mean']:.0f} / "
                                                          f"{s['lines_per_module_median']:.0f}"),
            ("largest module", lambda s: named(s["largest_module"]["path"], s["largest_module"]["lines"])),
            ("longest function", lambda s: named(s["longest_function"]["name"], s["longest_function"]["lines"])),
            ("functions over 50 lines", lambda s: str(s["functions_over_50_lines"])),
            *((f"`{name}`", lambda s, name=name: "absent" if s["watched"][name] is None
               else f"{s['watched'][name]} lines") for name in WATCHED)]
    lines = [f"`{record['command']}` ({record['date']}), read from git with `ast`:", "",
             f"| | before (`{before['commit']}`) | after (`{after['commit']}`) |", "|---|---|---|"]
    lines += [f"| {label} | {cell(before)} | {cell(after)} |" for label, cell in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--before", default=BEFORE, help=f"the commit to compare with (default {BEFORE})")
    parser.add_argument("--after", default="HEAD", help="the commit measured as now (default HEAD)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the BENCHMARKS.md section from the record")
    args = parser.parse_args()
    if not args.render_only:
        command = "python benchmarks/code_shape.py" + (f" --before {args.before}" if args.before != BEFORE else "")
        write_record(RECORD, command, {"before": measure(args.before), "after": measure(args.after)})
    publish(RECORD, DOCUMENT, MARKER, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
