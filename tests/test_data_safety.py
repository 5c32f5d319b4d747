"""Nothing of the user's is lost or overwritten: a run never cleans a folder that is not a run, and no
write follows a link planted in a shared folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kmnist_search import pipeline
from kmnist_search.errors import RunError
from kmnist_search.files import (
    PARTIAL_PREFIX,
    atomic_write_bytes,
    check_writable_directory,
    remove_leftovers,
    staged_path,
)
from kmnist_search.rundir import RunDir
from tests.conftest import EXPORT_TEST_SPACE, FinishedRun

USER_FILES = ("keep.txt", "report.partial.docx", ".notes.txt.tmp", ".partial-config", "trial_photos/holiday.jpg",
              "trial_7/photo.jpg", ".write-test-1")


def plant_user_files(folder: Path) -> dict[Path, bytes]:
    contents = {}
    for name in USER_FILES:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        contents[path] = name.encode()
    return contents


def test_a_search_refuses_a_folder_that_is_not_a_run_and_changes_nothing(tmp_path: Path,
                                                                         finished_run: FinishedRun) -> None:
    _, dataset, _ = finished_run
    user_files = plant_user_files(tmp_path / "proj" / "mydocs")
    with pytest.raises(RunError, match=r"mydocs holds files that are not a kmnist-search run: choose another --name"):
        pipeline.search(EXPORT_TEST_SPACE, "grid", dataset=dataset, project_dir=tmp_path / "proj", name="mydocs")
    assert {path: path.read_bytes() for path in user_files} == user_files
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "proj").rglob("*") if p.is_file()) == sorted(
        p.relative_to(tmp_path) for p in user_files)


def test_a_link_in_place_of_the_run_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "linked").symlink_to(target)
    with pytest.raises(RunError, match="not a kmnist-search run"):
        RunDir(tmp_path / "runs" / "linked").prepare({"space": {}, "strategy": "grid", "seed": 42}, overwrite=False)
    assert not any(target.iterdir())


def test_cleanup_removes_only_what_the_package_wrote_and_only_in_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "mydocs"
    user_files = plant_user_files(folder)
    with pytest.raises(RunError, match="not a kmnist-search run directory: nothing in it is removed"):
        RunDir(folder).remove_leftovers()
    leftover = folder / f"{PARTIAL_PREFIX}results.json-abc123"
    leftover.write_bytes(b"cut short")
    assert remove_leftovers(folder) == [leftover]
    assert {path: path.read_bytes() for path in user_files} == user_files


def plant_links(folder: Path, names: list[str], victim: Path) -> None:
    for name in names:
        (folder / name).symlink_to(victim)


def test_the_writability_check_never_follows_a_planted_link(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    pid = os.getpid()
    plant_links(shared, [f".write-test-{n}" for n in range(pid - 50, pid + 50)], victim)
    plant_links(shared, [f"{PARTIAL_PREFIX}{n}" for n in range(20)], victim)
    check_writable_directory(shared, "--exports-dir")
    assert victim.read_text() == "precious"
    assert len(list(shared.iterdir())) == 120  # the probe left nothing behind


def test_writes_replace_a_link_at_their_target_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for write in (lambda path: atomic_write_bytes(path, b"new"), _staged_write):
        target = tmp_path / f"target-{id(write)}.json"
        target.symlink_to(victim)
        write(target)
        assert victim.read_text() == "precious"
        assert not target.is_symlink() and target.read_bytes() == b"new"


def _staged_write(path: Path) -> None:
    with staged_path(path) as staged:
        staged.write_bytes(b"new")


def test_a_failed_staged_write_leaves_the_target_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with pytest.raises(ValueError), staged_path(target) as staged:
        staged.write_bytes(b"half")
        raise ValueError("killed")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


FIXED_PARTIAL_NAMES = [".partial-checkpoint.weights.h5", "winner.partial.keras", ".partial-retrain_best.weights.h5",
                       "export-test.partial.keras", "report/.confusion.partial.png", ".results.json.tmp"]


def test_a_search_and_export_through_planted_links_leave_the_victim_untouched(tmp_path: Path,
                                                                              finished_run: FinishedRun) -> None:
    """Links planted, in the run folder and the exports folder, under every fixed name earlier versions
    wrote through."""
    from kmnist_search.search import SearchOptions, run_record
    from kmnist_search.spaces import parse_space

    _, dataset, _ = finished_run
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    options = SearchOptions("grid", tmp_path / "runs", "planted")
    run = RunDir(tmp_path / "runs" / "planted")
    run.prepare(run_record(parse_space(EXPORT_TEST_SPACE), options), overwrite=False)
    for folder in ("report", "trial_0"):
        (run.path / folder).mkdir()
    plant_links(run.path, [*FIXED_PARTIAL_NAMES, "trial_0/.partial-checkpoint.weights.h5"], victim)
    exports = tmp_path / "exports"
    exports.mkdir()
    plant_links(exports, ["planted.partial.keras", ".planted.onnx.tmp", f".write-test-{os.getpid()}"], victim)
    outcome = pipeline.run(EXPORT_TEST_SPACE, "grid", dataset=dataset, project_dir=tmp_path / "runs", name="planted",
                           exports_dir=exports)
    assert outcome.export is not None and outcome.report_path is not None
    assert victim.read_text() == "precious"
