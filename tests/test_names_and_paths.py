"""Names are names: run, space, export and worker names stay inside their folders, --overwrite deletes
only a run of this package, and options are checked before anything is created or deleted."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from kmnist_search.base.errors import KmnistSearchError, ModelFileError, RunError, SpaceError
from kmnist_search.base.names import check_name, check_seed
from kmnist_search.commands import ensemble as ensemble_command
from kmnist_search.commands import export as export_command
from kmnist_search.commands import quantize as quantize_command
from kmnist_search.commands import run as run_command
from kmnist_search.data import run_guard
from kmnist_search.data.rundir import RunDir
from kmnist_search.data.spaces import load_space
from kmnist_search.export.card import read_card
from tests.cli import TINY_SPACE, run_cli

BAD_NAMES = ["..", ".", "../x", "/abs", "a/b", "", ".hidden", "x" * 101, "a b", "a\\b", "-rf"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_are_paths_are_refused(name: str) -> None:
    with pytest.raises(KmnistSearchError, match="is not a plain name"):
        check_name(name, "--name")


@pytest.mark.parametrize("name", ["quick-grid", "report_grid.2", "K49", "a"])
def test_plain_names_pass(name: str) -> None:
    assert check_name(name, "--name") == name


@pytest.mark.parametrize(("option", "value"), [("--name", ".."), ("--name", "/"), ("--name", "../x"),
                                               ("--name", "/tmp/x")])
def test_run_refuses_a_name_outside_the_project_before_touching_anything(option: str, value: str,
                                                                         tmp_path: Path) -> None:
    (tmp_path / "runs" / "keep").mkdir(parents=True)
    (tmp_path / "runs" / "keep" / "file").write_text("precious")
    with pytest.raises(KmnistSearchError, match="is not a plain name"):
        run_command.main(["--space", "quick", option, value, "--project-dir", str(tmp_path / "runs"),
                          "--overwrite", "--data-dir", str(tmp_path / "nowhere")])
    assert (tmp_path / "runs" / "keep" / "file").read_text() == "precious"


def test_a_space_name_that_is_a_path_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.toml"
    evil.write_text(TINY_SPACE.replace('name = "tiny"', 'name = "../../x"'))
    with pytest.raises(SpaceError, match=r"name '../../x' is not a plain name"):
        load_space(str(evil))


@pytest.mark.parametrize("command", [export_command, quantize_command, ensemble_command])
def test_export_names_that_are_paths_are_refused(command: object, tmp_path: Path) -> None:
    card = str(tmp_path / "a.json")
    argv = {export_command: [str(tmp_path), "--name", "../x"], quantize_command: [card, "--name", "../x"],
            ensemble_command: [card, card, "--name", "../x"]}[command]
    with pytest.raises(KmnistSearchError, match=r"--name '../x' is not a plain name"):
        command.main(argv)  # type: ignore[attr-defined]


def test_worker_ids_that_are_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KmnistSearchError, match=r"--worker-id '../../x' is not a plain name"):
        run_command.main(["--role", "worker", "--worker-id", "../../x", "--project-dir", str(tmp_path)])


def test_overwrite_deletes_only_a_run_of_this_package(tmp_path: Path) -> None:
    project = tmp_path / "runs"
    stranger = project / "notes"
    stranger.mkdir(parents=True)
    (stranger / "thesis.tex").write_text("precious")
    with pytest.raises(RunError, match="it is not a kmnist-search run directory"):
        run_guard.prepare(RunDir(stranger), {"space": {}, "strategy": "grid", "seed": 42}, overwrite=True)
    assert (stranger / "thesis.tex").read_text() == "precious"
    run = RunDir(project / "real")
    run_guard.prepare(run, {"space": {}, "strategy": "grid", "seed": 42}, overwrite=False)
    (run.path / "trial_0").mkdir()
    run_guard.prepare(run, {"space": {}, "strategy": "grid", "seed": 42}, overwrite=True)  # a real run is emptied
    assert not (run.path / "trial_0").exists()
    empty = RunDir(project / "killed-before-its-record")
    empty.path.mkdir()
    run_guard.prepare(empty, {"space": {}, "strategy": "grid", "seed": 42}, overwrite=True)  # nothing to lose
    assert (empty.path / "space.json").is_file()
    link = project / "link"
    link.symlink_to(run.path)
    with pytest.raises(RunError, match="not a kmnist-search run directory"):
        run_guard.prepare(RunDir(link), {"space": {}, "strategy": "grid", "seed": 42}, overwrite=True)
    assert run.path.is_dir()


@pytest.mark.parametrize("field", ["onnx_file", "keras_file"])
@pytest.mark.parametrize("value", ["../elsewhere", "/etc/passwd", "sub/dir"])
def test_card_file_fields_must_be_plain_file_names(field: str, value: str, tmp_path: Path) -> None:
    card = json.loads(Path("exports/kmnist-reference.json").read_text())
    card[field] = value + (".onnx" if field == "onnx_file" else ".keras")
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=f"is not a valid model card \\(at {field}"):
        read_card(path)


@pytest.mark.parametrize("seed", [-1, 2**32, 10**20])
def test_seeds_out_of_range_are_refused_before_anything_is_written(seed: int, tmp_path: Path) -> None:
    with pytest.raises(KmnistSearchError, match=f"--seed {seed} is out of range"):
        run_command.main(["--space", "quick", "--seed", str(seed), "--project-dir", str(tmp_path / "runs")])
    with pytest.raises(KmnistSearchError, match="out of range"):
        check_seed(seed, "seed")
    assert not (tmp_path / "runs").exists()


def test_an_unwritable_exports_dir_is_found_before_the_search(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunError, match=r"cannot write to .*: choose another --exports-dir"):
        run_command.main(["--space", "quick", "--exports-dir", str(blocker / "exports"),
                          "--project-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "nowhere")])


@pytest.mark.parametrize("option", [["--oracle", "127.0.0.1:8123"], ["--worker-id", "w1"]])
def test_distributed_options_without_a_role_are_refused(option: list[str], tmp_path: Path) -> None:
    with pytest.raises(RunError, match="is for a distributed search: add --role"):
        run_command.main(["--space", "quick", *option, "--project-dir", str(tmp_path)])


def test_a_second_chief_on_a_taken_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as gRPC binds
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run_cli("kmnist_search.run", "--space", "quick", "--role", "chief", "--oracle",
                         f"127.0.0.1:{port}", "--project-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and f"--oracle 127.0.0.1:{port} is taken" in result.stderr
    assert "Traceback" not in result.stderr
