"""Nothing of the user's is lost or overwritten: a run never cleans a folder that is not a run, and no
write follows a link planted in a shared folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kmnist_search import pipeline
from kmnist_search.base.errors import RunError
from kmnist_search.base.files import (
    PARTIAL_PREFIX,
    atomic_write_bytes,
    check_writable_directory,
    exclusive_lock,
    remove_leftovers,
    staged_path,
)
from kmnist_search.data import run_guard
from kmnist_search.data.rundir import RunDir
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
        run_guard.prepare(RunDir(tmp_path / "runs" / "linked"), {"space": {}, "strategy": "grid", "seed": 42},
                          overwrite=False)
    assert not any(target.iterdir())


def test_cleanup_removes_only_what_the_package_wrote_and_only_in_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "mydocs"
    user_files = plant_user_files(folder)
    with pytest.raises(RunError, match="not a kmnist-search run directory: nothing in it is removed"):
        run_guard.remove_run_leftovers(RunDir(folder))
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


@pytest.mark.slow
def test_a_search_and_export_through_planted_links_leave_the_victim_untouched(tmp_path: Path,
                                                                              finished_run: FinishedRun) -> None:
    """Links planted, in the run folder and the exports folder, under every fixed name earlier versions
    wrote through."""
    from kmnist_search.data.spaces import parse_space
    from kmnist_search.search.runner import SearchOptions, run_record

    _, dataset, _ = finished_run
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    options = SearchOptions("grid", tmp_path / "runs", "planted")
    run = RunDir(tmp_path / "runs" / "planted")
    run_guard.prepare(run, run_record(parse_space(EXPORT_TEST_SPACE), options), overwrite=False)
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


HOLD_THE_RUN = """
import sys, time
from kmnist_search.data import run_guard
from kmnist_search.data.rundir import RunDir
with run_guard.locked(RunDir(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_second_process_on_the_same_run_is_refused_and_a_killed_one_blocks_nothing(
        tmp_path: Path, finished_run: FinishedRun) -> None:
    _, dataset, _ = finished_run
    run = tmp_path / "runs" / "shared"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_RUN, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(RunError, match=rf"run {run} is in use by process {holder.pid} \(started .*\): wait"):
            pipeline.search(EXPORT_TEST_SPACE, "grid", dataset=dataset, project_dir=tmp_path / "runs", name="shared")
        with pytest.raises(RunError, match="is in use by process"):
            pipeline.run(EXPORT_TEST_SPACE, "grid", dataset=dataset, project_dir=tmp_path / "runs", name="shared",
                         exports_dir=tmp_path / "exports")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    outcome = pipeline.run(EXPORT_TEST_SPACE, "grid", dataset=dataset, project_dir=tmp_path / "runs", name="shared",
                           exports_dir=tmp_path / "exports")  # the killed holder's lock died with it
    assert outcome.export is not None and not outcome.search.resumed_finished


def test_an_export_name_is_written_by_one_process_at_a_time(tmp_path: Path) -> None:
    lock = tmp_path / ".t1.lock"
    with exclusive_lock(lock, "export t1"):
        with exclusive_lock(lock, "export t1"):  # nested in one process: allowed
            pass
        child = subprocess.run([sys.executable, "-c", (
            "import sys; from pathlib import Path; from kmnist_search.base.files import exclusive_lock\n"
            "from kmnist_search.base.errors import RunError\n"
            "try:\n    exclusive_lock(Path(sys.argv[1]), 'export t1').__enter__()\n"
            "except RunError as e:\n    print(e)\n"), str(lock)], capture_output=True, text=True)
        assert child.stdout.startswith(f"export t1 is in use by process {os.getpid()}")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / ".linked.lock").symlink_to(victim)
    with pytest.raises(RunError, match="cannot lock export linked"), exclusive_lock(tmp_path / ".linked.lock",
                                                                                     "export linked"):
        pass
    assert victim.read_text() == "precious"


def test_an_export_never_overwrites_its_own_source(exported: Path, tmp_path: Path) -> None:
    card = exported.with_suffix(".json")
    with pytest.raises(RunError, match=r"--name export-test in .* would overwrite its own source"):
        pipeline.quantize(card, "export-test", exports_dir=exported.parent)
    with pytest.raises(RunError, match="would overwrite its own source"):
        pipeline.ensemble([card, tmp_path / "other.json"], "export-test", exports_dir=exported.parent)
    with pytest.raises(RunError, match="is listed twice: an ensemble averages different models"):
        pipeline.ensemble([card, card], "pair", exports_dir=tmp_path)
    assert card.read_bytes() and exported.is_file()


def test_an_exports_folder_overlapping_the_run_folder_is_refused(finished_run: FinishedRun, tmp_path: Path) -> None:
    run_dir, dataset, _ = finished_run
    results = (run_dir / "results.json").read_bytes()
    for exports in (run_dir, run_dir / "exports", run_dir.parent):
        with pytest.raises(RunError, match="overlaps the run folder"):
            pipeline.export(run_dir, dataset=dataset, exports_dir=exports)
        with pytest.raises(RunError, match="overlaps the run folder"):
            pipeline.run(EXPORT_TEST_SPACE, "grid", dataset=dataset, project_dir=run_dir.parent, name=run_dir.name,
                         exports_dir=exports)
    assert (run_dir / "results.json").read_bytes() == results


@pytest.mark.parametrize("change", [{"seed": 7}, {"strategy": "random"}, {"init_seed": 3}, {"space": "changed"}])
def test_a_finished_run_refuses_another_search_under_its_name(finished_run: FinishedRun,
                                                              change: dict[str, object]) -> None:
    run_dir, dataset, _ = finished_run
    space = dict(EXPORT_TEST_SPACE)
    if change.get("space"):
        space["training"] = {**EXPORT_TEST_SPACE["training"], "epochs": 3}  # type: ignore[dict-item]
    arguments = {k: v for k, v in change.items() if k in ("seed", "init_seed")}
    with pytest.raises(RunError, match=r"holds a run with a different search .* changed"):
        pipeline.search(space, str(change.get("strategy", "grid")), dataset=dataset, project_dir=run_dir.parent,
                        name=run_dir.name, **arguments)  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_finished_run_asked_for_another_exports_folder_says_how(finished_run: FinishedRun, tmp_path: Path) -> None:
    _, dataset, _ = finished_run
    kwargs = {"dataset": dataset, "project_dir": tmp_path / "runs", "name": "moved", "quantize_export": True}
    first = pipeline.run(EXPORT_TEST_SPACE, "grid", exports_dir=tmp_path / "a", **kwargs)
    assert first.quantized is not None
    with pytest.raises(RunError, match=r"was exported to .*a, not .*b: export it again there with"):
        pipeline.run(EXPORT_TEST_SPACE, "grid", exports_dir=tmp_path / "b", **kwargs)
    (tmp_path / "a" / "moved-int8.onnx").unlink()  # the int8 file lost: the rerun rebuilds it
    again = pipeline.run(EXPORT_TEST_SPACE, "grid", exports_dir=tmp_path / "a", **kwargs)
    assert again.search.resumed_finished and again.quantized is not None
    assert (tmp_path / "a" / "moved-int8.onnx").is_file()


@pytest.mark.parametrize("folder", ["runs[1]", "a*b", "why?"])
def test_a_project_folder_with_glob_characters_is_refused_before_anything_is_written(tmp_path: Path, folder: str,
                                                                                   finished_run: FinishedRun) -> None:
    with pytest.raises(RunError, match=r"Keras Tuner finds trial folders by pattern and could never resume there"):
        pipeline.search(EXPORT_TEST_SPACE, "grid", dataset=finished_run[1], project_dir=tmp_path / folder, name="x")
    assert not (tmp_path / folder).exists()


def test_names_and_sizes_that_would_fail_late_are_refused_before_the_search(finished_run: FinishedRun,
                                                                            tmp_path: Path) -> None:
    from kmnist_search.base.errors import BadNameError, DataError

    _, dataset, _ = finished_run
    with pytest.raises(BadNameError, match=r"the int8 copy's name .* use a --name of at most 95 characters"):
        pipeline.run(EXPORT_TEST_SPACE, "grid", dataset=dataset, project_dir=tmp_path / "runs", name="n" * 96,
                     exports_dir=tmp_path / "exports", quantize_export=True)
    long_space = {**EXPORT_TEST_SPACE, "name": "s" * 100}
    with pytest.raises(BadNameError, match=r"the run name made of the space's name and the strategy .* pass --name"):
        pipeline.search(long_space, "grid", dataset=dataset, project_dir=tmp_path / "runs")
    too_many = {**EXPORT_TEST_SPACE, "training": {**EXPORT_TEST_SPACE["training"], "train_images": 100_000}}
    with pytest.raises(DataError, match=r"train_images=100000 is more than the 500 training images left after "
                                        r"validation_images=100: lower it"):
        pipeline.search(too_many, "grid", dataset=dataset, project_dir=tmp_path / "runs", name="too-many")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_planted_publication_marker_cannot_move_files_from_outside_the_exports(tmp_path: Path) -> None:
    from kmnist_search.export.card import read_card

    exports = tmp_path / "exports"
    exports.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (exports / ".t1.publishing.json").write_text(json.dumps({"t1.json": "../victim.txt"}))
    with pytest.raises(RunError, match=r"names '\.\./victim\.txt', which no export of this package stages"):
        read_card(exports / "t1.json")
    assert victim.read_text() == "mine" and not (exports / "t1.json").exists()


SHIPPED = Path(__file__).resolve().parents[1] / "exports" / "kmnist-reference"


def test_an_export_replaces_only_its_own_files_never_a_user_s_of_the_same_name(tmp_path: Path) -> None:
    from kmnist_search.export.card_page import foreign_files

    for suffix in (".onnx", ".json", ".keras", ".md", ".evaluation.json"):
        (tmp_path / f"mine{suffix}").write_bytes(SHIPPED.with_name(SHIPPED.name + suffix).read_bytes())
    (tmp_path / "mine.json").write_text(
        (tmp_path / "mine.json").read_text(encoding="utf-8").replace("kmnist-reference.onnx", "mine.onnx"),
        encoding="utf-8")
    (tmp_path / "mine.md").write_text((tmp_path / "mine.md").read_text(encoding="utf-8").replace(
        "# Model card: kmnist-reference", "# Model card: mine"), encoding="utf-8")
    assert foreign_files(tmp_path, "mine") == []  # an earlier export of that name: it may be replaced
    (tmp_path / "mine.md").write_text("my own notes\n", encoding="utf-8")
    (tmp_path / "mine.evaluation.json").write_text('{"mine": 1}\n', encoding="utf-8")
    assert foreign_files(tmp_path, "mine") == [tmp_path / "mine.md", tmp_path / "mine.evaluation.json"]
    (tmp_path / "mine.json").unlink()  # without its card, the model files are no export of ours either
    assert foreign_files(tmp_path, "mine")[:2] == [tmp_path / "mine.onnx", tmp_path / "mine.keras"]
    (tmp_path / "other.md").symlink_to(tmp_path / "mine.onnx")
    assert foreign_files(tmp_path, "other") == [tmp_path / "other.md"]


def test_quantize_ensemble_and_model_card_refuse_a_user_s_file_before_any_work(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    notes = exports / "small.md"
    notes.write_text("my own notes\n", encoding="utf-8")
    with pytest.raises(RunError, match=r"small\.md is not part of a kmnist-search export named small.*--name"):
        pipeline.quantize(SHIPPED.with_suffix(".json"), "small", exports_dir=exports, data_dir=tmp_path / "none")
    with pytest.raises(RunError, match=r"small\.md is not part of a kmnist-search export"):
        pipeline.ensemble([tmp_path / "a.json", tmp_path / "b.json"], "small", exports_dir=exports,
                          data_dir=tmp_path / "none")
    shipped_copy = tmp_path / "shipped"
    shipped_copy.mkdir()
    for suffix in (".onnx", ".json"):
        (shipped_copy / f"{SHIPPED.name}{suffix}").write_bytes(SHIPPED.with_name(SHIPPED.name + suffix).read_bytes())
    (shipped_copy / f"{SHIPPED.name}.md").write_text("my own notes\n", encoding="utf-8")
    with pytest.raises(RunError, match=r"kmnist-reference\.md is not part of a kmnist-search export"):
        pipeline.write_model_card(shipped_copy / f"{SHIPPED.name}.onnx", data_dir=tmp_path / "none")
    assert notes.read_text(encoding="utf-8") == "my own notes\n"
    assert (shipped_copy / f"{SHIPPED.name}.md").read_text(encoding="utf-8") == "my own notes\n"


def test_a_lock_that_cannot_be_taken_says_why_and_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    (tmp_path / ".kmnist-search.lock").symlink_to(victim)
    planted = pytest.raises(RunError, match=r"cannot lock run .*a link is planted in its place: remove it")
    with planted, exclusive_lock(tmp_path / ".kmnist-search.lock", "run"):
        pass
    assert victim.read_text(encoding="utf-8") == "precious"

    def read_only(path: object, flags: int, mode: int = 0o777) -> int:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "open", read_only)  # as a run folder on a read-only disk (root ignores chmod)
    with pytest.raises(RunError, match=r"\(Read-only file system\): its folder cannot be written: copy it to a "
                                       r"folder you can write"), exclusive_lock(tmp_path / "other.lock", "run"):
        pass


def test_a_model_card_page_is_not_written_while_an_export_of_that_name_is(tmp_path: Path,
                                                                         synthetic_data_dir: Path) -> None:
    from kmnist_search.export.card_page import page_path

    for suffix in (".onnx", ".json", ".md", ".evaluation.json"):
        (tmp_path / f"{SHIPPED.name}{suffix}").write_bytes(SHIPPED.with_name(SHIPPED.name + suffix).read_bytes())
    page = page_path(tmp_path / f"{SHIPPED.name}.onnx")
    before = page.read_bytes()
    exporting = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from kmnist_search.pipeline import export_lock\n"
        f"with export_lock(Path({str(tmp_path)!r}), {SHIPPED.name!r}):\n"
        "    print('held', flush=True); sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert exporting.stdout is not None and exporting.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match="is in use by process"):
            pipeline.write_model_card(tmp_path / f"{SHIPPED.name}.onnx", data_dir=synthetic_data_dir,
                                      verify_checksums=False)
    finally:
        exporting.communicate("", timeout=60)
    assert page.read_bytes() == before
