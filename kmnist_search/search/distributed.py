"""Distributed tuning on Keras Tuner's own engine: a chief serves the oracle over gRPC, workers run trials.

Keras Tuner reads three environment variables: ``KERASTUNER_TUNER_ID`` (``chief``, or a worker's
name), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (where the chief listens and the
workers connect). ``--role``, ``--oracle`` and ``--worker-id`` set them; a user who sets them by
hand, as the Keras Tuner guide shows, gets the same behaviour. Every process uses the same run
directory on a shared filesystem: workers write their trials' checkpoints and logs there, and the
chief evaluates and exports the winner when the search ends.

The gRPC channel is neither authenticated nor encrypted, so the chief listens on 127.0.0.1 unless
told otherwise: expose it only on a network you trust.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from kmnist_search.base.errors import RunError
from kmnist_search.base.names import check_name

TUNER_ID_ENV = "KERASTUNER_TUNER_ID"
ORACLE_IP_ENV = "KERASTUNER_ORACLE_IP"
ORACLE_PORT_ENV = "KERASTUNER_ORACLE_PORT"
CHIEF_ID = "chief"
DEFAULT_ORACLE = "127.0.0.1:8000"
ROLES = ("chief", "worker")


def parse_oracle_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), with a one-line error naming the fix."""
    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RunError(f"--oracle {address!r}: expected HOST:PORT, such as {DEFAULT_ORACLE} or 0.0.0.0:8000")
    return host.strip("[]"), int(port_text)


def configure(role: str, oracle: str, worker_id: str | None) -> None:
    """Set Keras Tuner's environment variables for this process's part in a distributed search."""
    host, port = parse_oracle_address(oracle)
    if role == "worker":
        if not worker_id:
            raise RunError("--role worker needs --worker-id NAME: a name unique to this worker "
                           "(reuse it to resume the worker's trial after a crash)")
        check_name(worker_id, "--worker-id")
        if CHIEF_ID in worker_id:
            raise RunError(f"--worker-id {worker_id!r}: a worker's name must not contain {CHIEF_ID!r}")
    if role == "chief":
        check_port_free(host, port)
    os.environ[TUNER_ID_ENV] = CHIEF_ID if role == "chief" else str(worker_id)
    os.environ[ORACLE_IP_ENV] = host
    os.environ[ORACLE_PORT_ENV] = str(port)


def check_port_free(host: str, port: int) -> None:
    """Refuse to start a chief where another process listens already. Keras Tuner's gRPC server binds
    with SO_REUSEPORT, so a second chief on the same port would start without error and split the
    workers between two searches; a plain bind finds the first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise RunError(f"--oracle {host}:{port} is taken ({error.strerror or error}): another chief may be "
                           f"running there; choose another port") from None


def current_role() -> str | None:
    """``chief``, ``worker`` or None (a search on its own), by Keras Tuner's own rule."""
    if ORACLE_IP_ENV not in os.environ:
        return None
    missing = [name for name in (ORACLE_PORT_ENV, TUNER_ID_ENV) if name not in os.environ]
    if missing:
        raise RunError(f"{ORACLE_IP_ENV} is set but {' and '.join(missing)} not: set both, or use --role and "
                       f"--oracle")
    port = os.environ[ORACLE_PORT_ENV]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise RunError(f"{ORACLE_PORT_ENV}={port!r}: expected a port number from 1 to 65535; fix it, or unset the "
                       f"KERASTUNER_* variables and use --role and --oracle")
    return "chief" if CHIEF_ID in os.environ[TUNER_ID_ENV] else "worker"


def tuner_id() -> str:
    """This process's name in a distributed search (Keras Tuner's default, ``tuner0``, on its own)."""
    return os.environ.get(TUNER_ID_ENV, "tuner0")


class PatientOracleClient:
    """A worker's proxy to the chief's oracle that waits a moment before asking again when the chief
    answers "nothing to run yet" (IDLE: the last trials are still running elsewhere), instead of
    asking in a tight loop that would take CPU from the workers still training."""

    def __init__(self, client: Any, poll_s: float = 1.0) -> None:
        self._client = client
        self._poll_s = poll_s

    def create_trial(self, tuner_id: str) -> Any:
        from keras_tuner.engine.trial import TrialStatus

        trial = self._client.create_trial(tuner_id)
        if trial.status == TrialStatus.IDLE:
            time.sleep(self._poll_s)
        return trial

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
