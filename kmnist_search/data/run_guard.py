"""Which folders a search may write in, and holding them: a run folder is created, resumed, emptied or
cleaned only when it is a kmnist-search run (its ``space.json``) or empty, never through a link, and only
by the one process that holds its lock.

A resumed run must search what its ``space.json`` records; a run whose state files are damaged is named
as such, in one line, before anything in it is read or changed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from kmnist_search.base.errors import RunError
from kmnist_search.base.files import atomic_write_json, check_writable_directory, exclusive_lock, remove_leftovers
from kmnist_search.data.rundir import LOCK_FILE, SPACE_RECORD_FILE, TRIAL_DIR_PATTERN, RunDir, read_json
from kmnist_search.data.spaces import recorded_pruning

SEARCH_SETTINGS = ("strategy", "seed", "init_seed", "teacher")  # besides the space, what a resumed run must keep


def is_run(run_dir: RunDir) -> bool:
    """True for a real directory (not a link) holding this package's record of what it searches, or
    empty (a run killed before it wrote its record)."""
    if not run_dir.path.is_dir() or run_dir.path.is_symlink():
        return False
    record = read_json(run_dir.path / SPACE_RECORD_FILE)
    return (record is not None and {"space", "strategy", "seed"} <= record.keys()) or not any(
        path.name != LOCK_FILE for path in run_dir.path.iterdir())


def prepare(run_dir: RunDir, record: dict[str, Any], overwrite: bool) -> None:
    """Create the run folder (emptied first with ``overwrite``), or check that a resumed run searches what
    ``record`` says (the space's fingerprint, strategy, seeds, teacher)."""
    if overwrite and (run_dir.path.exists() or run_dir.path.is_symlink()):
        if not is_run(run_dir):
            raise RunError(f"--overwrite refuses to delete {run_dir.path}: it is not a kmnist-search run "
                           f"directory; choose another --name or remove it yourself")
        for child in run_dir.path.iterdir():  # the lock stays: this process holds it
            if child.name != LOCK_FILE:
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if run_dir.path.is_symlink() or (run_dir.path.exists() and not is_run(run_dir)):
        refuse_non_run(run_dir)
    check_writable_directory(run_dir.path, "--project-dir")
    check_state_files(run_dir)
    record_path = run_dir.path / SPACE_RECORD_FILE
    if not record_path.exists() or read_json(record_path) is None:
        atomic_write_json(record_path, record)
        return
    check_same_search(run_dir, record)


def check_same_search(run_dir: RunDir, record: dict[str, Any]) -> None:
    """Refuse, in one line naming what changed, a search other than the one the run records."""
    previous = run_dir.search_record()
    if "pruning" in previous.get("space", {}):
        previous = {**previous, "space": {**previous["space"],
                                          "pruning": recorded_pruning(previous["space"]["pruning"])}}
    if previous == record:
        return
    changed = sorted(k for k in record["space"] if previous.get("space", {}).get(k) != record["space"][k])
    changed += [k for k in SEARCH_SETTINGS if previous.get(k) != record.get(k)]
    previous_pruning = previous.get("space", {}).get("pruning", {})
    pruning = record["space"].get("pruning", {})
    if changed == ["pruning"] and previous_pruning.get("strategy") not in (None, pruning.get("strategy")):
        raise RunError(f"{run_dir.path} holds a run searched with {previous_pruning['strategy']} pruning: pass "
                       f"--prune {previous_pruning['strategy']} to resume it (and its warm-up and minimum trials "
                       f"if they were set), --overwrite to start afresh, or --name to start a new run")
    if changed == ["pruning"] and previous_pruning:
        settings = ", ".join(f"{key} = {json.dumps(previous_pruning.get(key))}" for key in sorted(
            set(previous_pruning) | set(pruning)) if previous_pruning.get(key) != pruning.get(key))
        raise RunError(f"{run_dir.path} holds a run searched with other {previous_pruning['strategy']} settings "
                       f"({settings or 'their defaults'}): put them in the space's [pruning] table to resume it, "
                       f"--overwrite to start afresh, or --name to start a new run")
    raise RunError(f"{run_dir.path} holds a run with a different search ({', '.join(changed) or 'settings'} "
                   f"changed): pass --overwrite to start afresh or --name to start a new run")


def refuse_non_run(run_dir: RunDir) -> NoReturn:
    """Refuse a folder that is not a run (or a link), naming a damaged state file if it is a damaged run."""
    if not run_dir.path.is_symlink() and (run_dir.path / SPACE_RECORD_FILE).is_file():
        check_state_files(run_dir)  # a run whose record is damaged: name the damaged file
    raise RunError(f"{run_dir.path} holds files that are not a kmnist-search run: choose another --name or "
                   f"--project-dir (nothing in it was changed)")


def check_state_files(run_dir: RunDir) -> None:
    """Refuse, in one line naming the file, a run whose state files (space.json, oracle.json, the tuners'
    files, every trial.json) are not whole JSON objects (results.json: see :func:`~kmnist_search.data.record.
    read_results`). They are written atomically, so only something outside this package truncates them."""
    candidates = [run_dir.path / SPACE_RECORD_FILE, run_dir.path / "oracle.json",
                  *run_dir.path.glob("trial_*/trial.json"), *run_dir.path.glob("*.json")]
    for path in dict.fromkeys(candidates):
        if path != run_dir.results_path and path.is_file() and read_json(path) is None:
            raise RunError(f"{path} is truncated or not a JSON object: restore it, or pass --overwrite to start "
                           f"the run afresh")


@contextmanager
def locked(run_dir: RunDir) -> Iterator[None]:
    """Hold the run for this process (searching, exporting, reporting): a second process that runs the same
    name at once is refused in one line naming the first. Created, if need be, only as a run."""
    if run_dir.path.is_symlink() or (run_dir.path.exists() and not is_run(run_dir)):
        refuse_non_run(run_dir)
    run_dir.path.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(run_dir.path / LOCK_FILE, f"run {run_dir.path}"):
        yield


def remove_run_leftovers(run_dir: RunDir) -> list[Path]:
    """Delete what killed writers of the run left behind, and nothing else: this package's temporary files
    and folders (see :mod:`kmnist_search.base.files`) and Keras Tuner trial folders that never received
    their ``trial.json``. Only in a run folder, while no other process writes there."""
    if not is_run(run_dir):
        raise RunError(f"{run_dir.path} is not a kmnist-search run directory: nothing in it is removed")
    removed = remove_leftovers(run_dir.path)
    for trial_dir in run_dir.path.glob("trial_*"):
        if (TRIAL_DIR_PATTERN.fullmatch(trial_dir.name) and trial_dir.is_dir() and not trial_dir.is_symlink()
                and not (trial_dir / "trial.json").exists()):
            shutil.rmtree(trial_dir, ignore_errors=True)
            removed.append(trial_dir)
    return removed
