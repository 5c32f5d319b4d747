"""A trial that fails for a reason outside its configuration (a full disk, a file size limit, a damaged
checkpoint) is retried by the rerun, from its last good epoch; only a configuration's own failure stays. An
environment the package cannot use (a cache folder, HOME, another Keras backend, a bad oracle port) is one
line naming the fix."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from kmnist_search import pipeline
from kmnist_search.base.errors import DISK_ERRORS, RunError, TrialDiskError
from kmnist_search.data.rundir import RunDir, failed_for_the_environment
from kmnist_search.search import resume
from tests.cli import Command
from tests.conftest import SMALL_NETWORK, FinishedRun

SPACE = {
    "name": "environment",
    "hyperparameters": {"learning_rate": [1.0], "batch_size": [64], "loss": ["categorical_crossentropy"],
                        **SMALL_NETWORK},
    "training": {"epochs": 3, "validation_images": 100, "train_images": 400},
}


def failing_at_epoch(epoch: int, code: int) -> object:
    original = resume.TrainingCheckpoint.save

    def save(self: resume.TrainingCheckpoint, model: object, reached: int) -> None:
        if reached == epoch:
            raise OSError(code, os.strerror(code))
        original(self, model, reached)

    return save


@pytest.mark.slow
@pytest.mark.parametrize("code", [errno.EFBIG, errno.EIO])
def test_a_trial_failed_by_the_disk_is_retried_by_the_rerun_from_its_last_good_epoch(
        code: int, finished_run: FinishedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk error (a size limit here) stops the search at once; another OSError fails the trial, and the
    search goes on. Either way the rerun continues the trial from its last good epoch."""
    dataset = finished_run[1]
    kwargs = {"dataset": dataset, "project_dir": tmp_path, "name": "disk"}
    with monkeypatch.context() as patch:
        patch.setattr(resume.TrainingCheckpoint, "save", failing_at_epoch(2, code))
        expected = (pytest.raises(TrialDiskError, match="File too large") if code in DISK_ERRORS
                    else pytest.raises(RunError, match="no trial completed"))
        with expected:
            pipeline.search(SPACE, "grid", **kwargs)
    trial_dir = RunDir(tmp_path / "disk").trial_dirs()[0]
    assert resume.TrainingCheckpoint(RunDir.trial_resume_dir(trial_dir)).saved_epoch() == 1  # kept for the rerun
    result = pipeline.search(SPACE, "grid", **kwargs)
    assert result is not None
    trial = result.trials[0]
    assert trial.status == "COMPLETED" and trial.epochs_run == 3
    assert [e.epoch for e in trial.history] == [1, 2, 3]


FULL_DISK_AT_EPOCH_2 = """
import errno, os
from kmnist_search.search import resume
from kmnist_search.commands import run
from kmnist_search.commands.common import run_main
original = resume.TrainingCheckpoint.save
def save(self, model, reached):
    if reached == 2:
        raise OSError(errno.ENOSPC, "Can't synchronously write data (file write failed:\\n, errno = 28)")  # h5py's
    original(self, model, reached)
resume.TrainingCheckpoint.save = save
run_main(run.main)
"""


@pytest.mark.slow
def test_a_disk_that_fills_during_a_trial_stops_the_search_in_one_line(synthetic_data_dir: Path,
                                                                        tmp_path: Path) -> None:
    """The process boundary is what is tested: one line, exit 1, no traceback and no crash at exit."""
    import subprocess
    import sys

    from tests.cli import TINY_SPACE, assert_one_line_error

    (tmp_path / "tiny.toml").write_text(TINY_SPACE.replace("epochs = 1", "epochs = 3"), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = ["--space", "tiny.toml", "--data-dir", str(synthetic_data_dir), "--no-checksum", "--no-export", "--name",
            "full"]
    result = subprocess.run([sys.executable, "-c", FULL_DISK_AT_EPOCH_2, *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert_one_line_error(result, "No space left on device writing", "trial_0", "free space on that disk",
                          "rerun the same command")
    assert "trial 2/2" not in result.stdout  # the search stopped at the first trial
    trial_dir = RunDir(tmp_path / "runs" / "full").trial_dirs()[0]
    assert resume.TrainingCheckpoint(RunDir.trial_resume_dir(trial_dir)).saved_epoch() == 1


def test_only_an_os_error_counts_as_the_environment_s_even_when_its_text_spans_lines() -> None:
    h5py_error = ("Traceback (most recent call last):\n  File \"h5py/h5d.pyx\", line 307, in write\n"
                  "OSError: [Errno 28] Can't synchronously write data (file write failed: time = Wed Dec  2\n"
                  ", filename = 'trial_0/checkpoint.weights.h5', errno = 28)")
    assert failed_for_the_environment(h5py_error)
    assert not failed_for_the_environment("Traceback (most recent call last):\nValueError: NaN loss\n, at epoch 2")
    assert not failed_for_the_environment("")


@pytest.mark.slow
def test_a_damaged_checkpoint_restarts_the_trial_instead_of_failing_it(
        finished_run: FinishedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.kills import Killed, killed_when

    dataset = finished_run[1]
    kwargs = {"dataset": dataset, "project_dir": tmp_path, "name": "damaged"}
    with killed_when(resume.SaveTrainingState, "on_epoch_end", lambda self, epoch, logs=None: epoch == 1,
                     after=True), pytest.raises(Killed):
        pipeline.search(SPACE, "grid", **kwargs)
    resume_dir = RunDir.trial_resume_dir(RunDir(tmp_path / "damaged").trial_dirs()[0])
    weights = next(resume_dir.glob("*.weights.h5"))
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as `truncate -s 1000` leaves it
    result = pipeline.search(SPACE, "grid", **kwargs)
    assert result is not None and result.trials[0].status == "COMPLETED"
    assert [e.epoch for e in result.trials[0].history] == [1, 2, 3]


def test_an_unusable_cache_folder_or_home_is_one_line_naming_the_fix(tmp_path: Path, command: Command,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.cli import assert_one_line_error

    assert_one_line_error(command("download", "kmnist", "--cache-dir", "/proc/x", cwd=tmp_path),
                          "cannot create /proc/x/kmnist", "point --cache-dir at a writable folder")
    monkeypatch.delenv("KMNIST_SEARCH_CACHE_DIR")
    monkeypatch.setenv("HOME", "/proc/nonexistent")
    assert_one_line_error(command("run", "--space", "quick", "--no-export", cwd=tmp_path),
                          "cannot create /proc/nonexistent/.keras/datasets/kmnist", "--data-dir DIR")


@pytest.mark.slow  # the one-line error is the command's: each case starts it
def test_another_keras_backend_or_a_bad_oracle_port_is_one_line(tmp_path: Path, synthetic_data_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.cli import assert_one_line_error, run_cli

    arguments = ("--space", "quick", "--data-dir", str(synthetic_data_dir), "--no-checksum", "--no-export")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert_one_line_error(run_cli("kmnist_search.run", *arguments, cwd=tmp_path), "KERAS_BACKEND=jax",
                          "set it to tensorflow")
    monkeypatch.delenv("KERAS_BACKEND")
    for name, value in (("KERASTUNER_ORACLE_IP", "127.0.0.1"), ("KERASTUNER_ORACLE_PORT", "abc"),
                        ("KERASTUNER_TUNER_ID", "chief")):
        monkeypatch.setenv(name, value)
    assert_one_line_error(run_cli("kmnist_search.run", *arguments, cwd=tmp_path), "KERASTUNER_ORACLE_PORT='abc'",
                          "port number")


@pytest.mark.parametrize(("code", "fix"), [(errno.ENOSPC, "free space on that disk"),
                                           (errno.EROFS, "read-only file system"),
                                           (errno.EACCES, "you may not write there")])
def test_a_full_or_read_only_disk_is_one_line_naming_the_file(code: int, fix: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from kmnist_search.commands.common import run_main

    def writes_on_a_full_disk(argv: object) -> int:
        raise OSError(code, os.strerror(code), "exports/model.keras")

    with pytest.raises(SystemExit) as exit_code:
        run_main(writes_on_a_full_disk, [])
    assert exit_code.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "writing exports/model.keras" in lines[0]
    assert fix in lines[0] and "rerun the same command" in lines[0]


@pytest.mark.slow
def test_a_disk_that_fills_during_an_export_leaves_no_partial_files(finished_run: FinishedRun, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from kmnist_search.export import convert

    def full_disk(model: object, path: Path) -> None:
        path.write_bytes(b"\0" * 1_000_000)  # a megabyte written, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(convert, "save_inference_copy", full_disk)
    exports = tmp_path / "exports"
    with pytest.raises(OSError, match="No space left"):
        pipeline.export(finished_run[0], dataset=finished_run[1], exports_dir=exports, name="full")
    assert sorted(p.name for p in exports.iterdir()) == [".full.lock"]  # nothing staged is left behind
