"""The command line end to end, and its one-line errors for expected failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import TINY_SPACE, Command, assert_one_line_error, run_cli


@pytest.fixture
def tiny_space_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPACE)
    return path


@pytest.mark.slow
def test_run_end_to_end_prints_summary_and_writes_results_then_a_rerun_trains_nothing(
        synthetic_data_dir: Path, tiny_space_file: Path, tmp_path: Path, command: Command) -> None:
    # two epochs: a one-epoch model's near-even probabilities leave its int8 copy no margin on some CPUs
    tiny_space_file.write_text(TINY_SPACE.replace("epochs = 1", "epochs = 2"))
    arguments = ("--strategy", "grid", "--space", str(tiny_space_file), "--data-dir", str(synthetic_data_dir),
                 "--no-checksum", "--quiet")
    result = run_cli("kmnist_search.run", *arguments, "--quantize", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rank  trial" in result.stdout and "winner: trial" in result.stdout
    assert "test accuracy" in result.stdout
    assert "exported exports/tiny-grid.onnx" in result.stdout
    assert "predicted labels identical on 100.00%" in result.stdout
    assert "exported exports/tiny-grid-int8.onnx" in result.stdout and "x smaller" in result.stdout
    int8_card = json.loads((tmp_path / "exports" / "tiny-grid-int8.json").read_text())
    assert int8_card["quantization"]["source_card"] == "tiny-grid.json"
    assert int8_card["quantization"]["source_onnx_bytes"] == (tmp_path / "exports" / "tiny-grid.onnx").stat().st_size
    assert "per-hyperparameter effects" in result.stdout and (tmp_path / "runs/tiny-grid/report/README.md").is_file()
    assert (tmp_path / "exports" / "tiny-grid.json").is_file()
    results = json.loads((tmp_path / "runs" / "tiny-grid" / "results.json").read_text())
    assert len(results["trials"]) == 2 and results["strategy"] == "grid"

    # The API test checks that the export is left byte for byte; here, what the command says.
    again = command("run", *arguments, "--no-export", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "had finished" in again.stdout and "nothing was trained" in again.stdout
    assert "trial 1/2 started" not in again.stdout and "winner: trial" in again.stdout


def test_dry_run_plans_40_configurations(tmp_path: Path) -> None:
    result = run_cli("kmnist_search.run", "--strategy", "grid", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "strategy grid: 40 of 40 configurations" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_one_name_runs_every_command_and_run_is_the_default(tmp_path: Path) -> None:
    listed = run_cli("kmnist_search", "--help", cwd=tmp_path)
    assert listed.returncode == 0 and "model-card" in listed.stdout and "verify" in listed.stdout
    planned = run_cli("kmnist_search", "--strategy", "grid", "--dry-run", cwd=tmp_path)  # no verb: run
    assert planned.returncode == 0 and "strategy grid: 40 of 40 configurations" in planned.stdout
    assert run_cli("kmnist_search", "run", "--strategy", "grid", "--dry-run", cwd=tmp_path).stdout == planned.stdout
    assert_one_line_error(run_cli("kmnist_search", "summary", str(tmp_path), cwd=tmp_path), "holds no trials yet")
    usage = run_cli("kmnist_search", "verify", "--help", cwd=tmp_path).stdout
    assert usage.startswith("usage: python -m kmnist_search verify")  # the usage line says how it was called
    direct = run_cli("kmnist_search.verify", "--help", cwd=tmp_path).stdout
    assert direct.startswith("usage: python -m kmnist_search.verify")


def test_unknown_strategy(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("kmnist_search.run", "--strategy", "annealing", cwd=tmp_path),
                          "invalid choice: 'annealing'")


def test_bad_space_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY_SPACE.replace('"categorical_crossentropy"', '"hinge"'))
    assert_one_line_error(run_cli("kmnist_search.run", "--space", str(path), "--dry-run", cwd=tmp_path),
                          str(path), "[hyperparameters].loss", "'hinge'")


def test_missing_data_dir(tmp_path: Path, tiny_space_file: Path) -> None:
    assert_one_line_error(run_cli("kmnist_search.run", "--space", str(tiny_space_file), "--data-dir",
                                  str(tmp_path / "absent"), cwd=tmp_path), "does not exist")


def test_corrupt_data_file(tmp_path: Path, tiny_space_file: Path, synthetic_data_dir: Path) -> None:
    target = synthetic_data_dir / "kmnist-test-imgs.npz"
    target.write_bytes(target.read_bytes()[:100])
    assert_one_line_error(run_cli("kmnist_search.run", "--space", str(tiny_space_file), "--data-dir",
                                  str(synthetic_data_dir), "--no-checksum", cwd=tmp_path),
                          "kmnist-test-imgs.npz", "truncated or corrupt")


def test_wrong_checksum(tmp_path: Path, tiny_space_file: Path, synthetic_data_dir: Path) -> None:
    assert_one_line_error(run_cli("kmnist_search.run", "--space", str(tiny_space_file), "--data-dir",
                                  str(synthetic_data_dir), cwd=tmp_path), "has sha256", "--no-checksum")


def test_quantize_without_export_is_refused(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("kmnist_search.run", "--quantize", "--no-export", "--dry-run", cwd=tmp_path),
                          "--quantize quantizes the export")


def test_max_trials_zero(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("kmnist_search.run", "--max-trials", "0", "--dry-run", cwd=tmp_path),
                          "--max-trials 0")


@pytest.mark.slow
def test_download_offline_error_lists_both_fixes(tmp_path: Path) -> None:
    result = run_cli("kmnist_search.download", "kmnist", "--cache-dir", str(tmp_path / "cache"), "--base-url",
                     "http://127.0.0.1:9", cwd=tmp_path)
    assert_one_line_error(result, "could not download", "--base-url URL",
                          "--data-dir DIR (or set $KMNIST_SEARCH_DATA_DIR)")


def test_debug_keeps_the_traceback(tmp_path: Path, tiny_space_file: Path) -> None:
    result = run_cli("kmnist_search.run", "--space", str(tiny_space_file), "--data-dir", str(tmp_path / "absent"),
                     "--debug", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "DataError: data directory" in result.stderr


def test_users_exports_are_ignored_and_the_shipped_model_is_tracked() -> None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0

    assert ignored("exports/my-model.onnx") and ignored("exports/my-model.json") and ignored("exports/x-int8.keras")
    assert ignored("exports/my-model.md") and ignored("exports/my-model.evaluation.json")
    for suffix in ("onnx", "json", "keras", "md", "evaluation.json"):
        assert not ignored(f"exports/kmnist-reference.{suffix}")


OFFLINE_RUN = """
import sys
from kmnist_search.data import datasets
datasets.DATASETS["kmnist"] = datasets.with_mirror(datasets.DATASETS["kmnist"], "http://127.0.0.1:9")  # nothing there
from kmnist_search.commands.run import cli
sys.argv = ["run", "--space", "quick", "--project-dir", sys.argv[1]]
cli()
"""


@pytest.mark.slow
def test_an_offline_run_says_so_without_tensorflow_s_start_up_lines(tmp_path: Path) -> None:
    env = {**os.environ, "KMNIST_SEARCH_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("KMNIST_SEARCH_DATA_DIR", None)
    result = subprocess.run([sys.executable, "-c", OFFLINE_RUN, str(tmp_path / "runs")], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert not [line for line in lines if "absl" in line or "oneDNN" in line or "cpu_feature_guard" in line], lines
    assert lines[-1].startswith("error: could not download kmnist-train-imgs.npz") and len(lines) <= 2, lines
