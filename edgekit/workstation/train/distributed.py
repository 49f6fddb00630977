"""Training and pruning on several workers: `tf.distribute.MultiWorkerMirroredStrategy`.

Every worker runs the same command with its own `TF_CONFIG` (TensorFlow's format: the cluster's
worker addresses and this process's task). Each keeps a copy of the model; gradients are
all-reduced every step, so all end with the same weights. The chief (task "chief", else worker 0)
then folds, converts and writes the files alone; the others stop once the weights are final.

What the workers do together must be done by all of them, in the same order: building the model
(its first values are broadcast from the chief), every training step, and every read of the
batch-norm moving statistics (kept per worker, averaged on read). `MultiWorker.local_copy` is the
last such step: after it, each worker holds an ordinary model and nothing waits on the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from edgekit.core.config import PruneConfig, TrainConfig
from edgekit.core.data import Dataset
from edgekit.core.errors import EdgekitError, first_line
from edgekit.core.io.console import Progress
from edgekit.workstation._keras import keras, tf
from edgekit.workstation.tf_config import JOBS, WorkerRole, read_tf_config
from edgekit.workstation.train.model import TrainResult, build_model, compile_model, train_model
from edgekit.workstation.train.prune import PruneResult, prune_model

__all__ = [
    "MultiWorker",
    "WorkerRole",
    "read_tf_config",
    "start_workers",
    "weights_sha256",
]

# Seconds a worker waits for all the others to start (TensorFlow itself waits up to an hour,
# deaf to Ctrl-C and SIGTERM); the environment variable overrides it.
CLUSTER_TIMEOUT_S = 600.0
CLUSTER_TIMEOUT_ENV = "EDGEKIT_CLUSTER_TIMEOUT"


def weights_sha256(model: keras.Model) -> str:
    """SHA-256 of a model's weights (dtype, shape and bytes of each array, in order): equal on
    every worker after a distributed run."""
    h = hashlib.sha256()
    for w in model.get_weights():
        a = np.ascontiguousarray(w)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class MultiWorker:
    """This process's part in a multi-worker run: its role and its strategy.

    Made by `start_workers`, once per process (TensorFlow allows one cluster per process).
    """

    def __init__(self, role: WorkerRole, strategy: Any) -> None:
        self.role, self.strategy = role, strategy

    @property
    def is_chief(self) -> bool:
        return self.role.is_chief

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Models built (and compiled) inside train on every worker together."""
        with self.strategy.scope():
            yield

    def local_copy(self, model: keras.Model) -> keras.Model:
        """The model as an ordinary (one-process, uncompiled) tf_keras model, same weights.

        Every worker must call it, in step: reading the batch-norm moving statistics averages
        them over the workers.
        """
        weights = self._together("reading the weights", model.get_weights)
        local = keras.models.clone_model(model)
        local.set_weights(weights)
        return local

    def train(
        self, config: TrainConfig, data: Dataset, progress: Progress | None = None
    ) -> TrainResult:
        """Build and train the network on every worker (`build_model` + `train_model`); the
        result's model is a local copy."""

        def run() -> TrainResult:
            with self.scope():
                model = build_model(config, data.input_shape, data.num_classes)
                return train_model(model, data, config, progress)

        result = self._together("training", run)
        local = self.local_copy(result.model)
        compile_model(local, config.learning_rate, optimizer=config.optimizer)
        return dataclasses.replace(result, model=local)

    def prune(
        self,
        model: keras.Model,
        data: Dataset,
        config: PruneConfig,
        progress: Progress | None = None,
        augment: Sequence[str] = (),
    ) -> PruneResult:
        """`prune_model` on every worker; the result's model is a local copy."""

        def run() -> PruneResult:
            with self.scope():
                return prune_model(model, data, config, progress, augment)

        result = self._together("pruning", run)
        local = self.local_copy(result.model)
        compile_model(local, config.learning_rate)  # as prune_model leaves its model
        return dataclasses.replace(result, model=local)

    def report(self, model: keras.Model, progress: Progress | None = None) -> dict[str, Any]:
        """The run's record (role, cluster, the weights' sha256), also said on `progress`:
        every worker says the same sha256 when all ended with the same weights."""
        record = {**self.role.to_dict(), "weights_sha256": weights_sha256(model)}
        if progress:
            progress(
                f"  weights trained on {self.role.num_workers} workers: sha256 "
                f"{record['weights_sha256']}"
            )
        return record

    def _together(self, what: str, step: Any) -> Any:
        try:
            return step()
        except (
            tf.errors.UnavailableError,
            tf.errors.DeadlineExceededError,
            tf.errors.CancelledError,
            tf.errors.AbortedError,
        ) as e:
            raise EdgekitError(
                f"{self.role.name} lost another worker while {what} ({_why(e.message)}): see "
                "that worker's error, then start every worker again"
            ) from None


def _why(message: str) -> str:
    """The cause in a collective op's error (after 'aborted by:'), on one line."""
    text = message.split("aborted by: ", 1)[-1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "no detail"
    first = lines[0].split("}} ")[-1]
    if first.endswith(":") and len(lines) > 1:  # "... unhealthy (...):" then the task
        first = f"{first} {lines[1]}"
    return first


_started: list[MultiWorker] = []


def start_workers(
    role: WorkerRole | None = None,
    timeout_s: float | None = None,
    progress: Progress | None = None,
) -> MultiWorker:
    """Create this process's MultiWorkerMirroredStrategy and wait until every worker is up.

    Call it before any other TensorFlow work of the process (TensorFlow configures its
    collective ops once, at start-up). Waiting longer than `timeout_s` (default
    $EDGEKIT_CLUSTER_TIMEOUT, else CLUSTER_TIMEOUT_S), or Ctrl-C while waiting, stops the
    process (killed: TensorFlow's wait cannot be interrupted) after a one-line message.

    Raises:
        EdgekitError: TF_CONFIG is wrong (see `read_tf_config`), or this worker's server
            cannot start.
    """
    role = role or read_tf_config()
    if _started:
        if _started[0].role != role:
            raise EdgekitError(
                "this process already joined another cluster: TensorFlow allows one per "
                "process; run each distributed job in its own process"
            )
        return _started[0]
    timeout = _cluster_timeout(timeout_s)
    if progress:
        everyone = ", ".join(a for job in JOBS for a in role.cluster.get(job, ()))
        progress(f"  {role.name} at {role.address}: waiting for the cluster {everyone}")
    with _watchdog(role, timeout):
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except (tf.errors.OpError, RuntimeError, ValueError) as e:
            first = first_line(getattr(e, "message", None) or e)
            raise EdgekitError(
                f"{role.name} could not join the cluster at {role.address} ({first}): check "
                "TF_CONFIG and that the port is free"
            ) from None
        # A first all-reduce: returns once every worker has started.
        replicas = strategy.run(
            lambda: tf.distribute.get_replica_context().all_reduce("sum", tf.constant(1.0))
        )
        joined = int(strategy.experimental_local_results(replicas)[0])
        _restore_sigterm(sigterm)
    if joined != strategy.num_replicas_in_sync or joined < role.num_workers:
        raise EdgekitError(f"{role.name}: {joined} replicas joined, expected {role.num_workers}")
    workers = MultiWorker(role, strategy)
    _started.append(workers)
    return workers


def _cluster_timeout(timeout_s: float | None) -> float:
    if timeout_s is not None:
        return float(timeout_s)
    raw = os.environ.get(CLUSTER_TIMEOUT_ENV)
    if raw is None:
        return CLUSTER_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise EdgekitError(f"{CLUSTER_TIMEOUT_ENV} must be seconds > 0, got {raw!r}: e.g. 600")
    return value


def _restore_sigterm(handler: Any) -> None:
    """TensorFlow's coordination service installs its own SIGTERM handler (preemption
    notices), which swallows the signal: give SIGTERM back to Python's handler."""
    if threading.current_thread() is threading.main_thread() and handler is not None:
        signal.signal(signal.SIGTERM, handler)


# Runs in a child process: TensorFlow's wait for the cluster holds the GIL, so no thread of this
# process can time it out or see Ctrl-C.
_WATCHDOG = """
import os, select, signal, sys
fd, pid, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
try:
    why = None if select.select([fd], [], [], seconds)[0] else sys.argv[4]
except KeyboardInterrupt:
    why = sys.argv[5]
if why:
    print("Error: " + why, file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)
"""


@contextmanager
def _watchdog(role: WorkerRole, timeout_s: float) -> Iterator[None]:
    """Kill this process after a one-line message unless the block ends within `timeout_s`."""
    read_fd, write_fd = os.pipe()
    late = (
        f"{role.name} waited {timeout_s:g} s for the other workers of TF_CONFIG's cluster and "
        f"stopped: start the same command on every machine it lists, or raise "
        f"{CLUSTER_TIMEOUT_ENV}"
    )
    interrupted = f"{role.name}: interrupted while waiting for the other workers"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WATCHDOG,
            str(read_fd),
            str(os.getpid()),
            str(timeout_s),
            late,
            interrupted,
        ],
        pass_fds=(read_fd,),
        stdin=subprocess.DEVNULL,
    )
    os.close(read_fd)
    try:
        yield
    finally:
        os.close(write_fd)  # end of the pipe: the watchdog exits quietly
        child.wait()
