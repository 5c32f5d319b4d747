"""Distributed search on Keras Tuner's own engine: a chief and two workers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kmnist_search.base.errors import RunError
from kmnist_search.data.spaces import load_space
from kmnist_search.search.distributed import (
    ORACLE_IP_ENV,
    ORACLE_PORT_ENV,
    TUNER_ID_ENV,
    configure,
    current_role,
    parse_oracle_address,
)
from tests.conftest import assert_journal_is_the_record, write_kmnist_files
from tests.test_reliability import FOUR_CONFIGURATIONS

PROCESS_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(role: str, port: int, run_args: list[str], worker_id: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    command = [sys.executable, "-m", "kmnist_search.run", *run_args, "--role", role, "--oracle", f"127.0.0.1:{port}"]
    if worker_id:
        command += ["--worker-id", worker_id]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_chief_and_two_workers_run_every_configuration_once(tmp_path: Path) -> None:
    space_file = tmp_path / "four.toml"
    space_file.write_text(FOUR_CONFIGURATIONS)
    space = load_space(str(space_file))
    data_dir = write_kmnist_files(tmp_path / "data")
    run_args = ["--strategy", "grid", "--space", str(space_file), "--epochs", "1", "--data-dir", str(data_dir),
                "--no-checksum", "--project-dir", str(tmp_path / "runs"), "--name", "spread",
                "--no-export", "--quiet", "--budget-mb", "1000"]  # every trial measured
    port = free_port()
    processes = [start("chief", port, run_args),
                 start("worker", port, run_args, "worker-a"),
                 start("worker", port, run_args, "worker-b")]
    try:
        outputs = [process.communicate(timeout=PROCESS_TIMEOUT_S)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-2000:]
    assert "worker worker-a finished" in outputs[1] and "worker worker-b finished" in outputs[2]

    run_dir = tmp_path / "runs" / "spread"
    results = json.loads((run_dir / "results.json").read_text())
    configurations = [t["hyperparameters"] for t in results["trials"]]
    expected = space.configurations()
    assert len(configurations) == len(expected) == 4
    assert sorted(map(json.dumps, configurations)) == sorted(json.dumps(c) for c in expected)  # each exactly once
    assert all(t["status"] == "COMPLETED" and t["epochs_run"] == 1 for t in results["trials"])
    assert all(t["deployment"]["onnx_bytes"] > 0 for t in results["trials"]) and results["budget"]["max_mb"] == 1000
    runners = {json.loads(log.read_text())["tuner_id"] for log in run_dir.glob("trial_*/trial_log.json")}
    assert runners and runners <= {"worker-a", "worker-b"}  # the chief only serves the oracle
    assert_journal_is_the_record(run_dir)  # three processes wrote it in turn

    summary = subprocess.run([sys.executable, "-m", "kmnist_search.summary", str(run_dir), "--format", "json"],
                             capture_output=True, text=True, check=True)
    report = json.loads(summary.stdout)
    assert len(report["trials"]) == 4 and report["winner"]["test_accuracy"] is not None


def test_oracle_address_and_roles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kmnist_search.search.runner import SearchOptions, run_search

    for name in (ORACLE_IP_ENV, ORACLE_PORT_ENV, TUNER_ID_ENV):  # restored to unset after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert current_role() is None
    assert parse_oracle_address("10.0.0.5:8000") == ("10.0.0.5", 8000)
    assert parse_oracle_address("[::1]:9000") == ("::1", 9000)
    for bad in ("8000", "host:", "host:port", "host:70000"):
        with pytest.raises(RunError, match="expected HOST:PORT"):
            parse_oracle_address(bad)
    with pytest.raises(RunError, match="needs --worker-id"):
        configure("worker", "127.0.0.1:8000", None)
    configure("worker", "127.0.0.1:8000", "w1")
    assert current_role() == "worker" and os.environ[TUNER_ID_ENV] == "w1"
    with pytest.raises(RunError, match="--overwrite is for the chief"):
        run_search(None, load_space("quick"), SearchOptions("grid", tmp_path, "joined", overwrite=True))  # type: ignore[arg-type]
    assert not (tmp_path / "joined").exists()
    configure("chief", "127.0.0.1:8000", None)
    assert current_role() == "chief"
    monkeypatch.delenv(ORACLE_PORT_ENV)
    with pytest.raises(RunError, match="KERASTUNER_ORACLE_PORT"):
        current_role()


def test_roles_do_not_leak_into_other_tests() -> None:
    assert current_role() is None
