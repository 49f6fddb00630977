"""`--distributed`: 2 real worker processes on loopback ports (MultiWorkerMirroredStrategy, CPU),
TF_CONFIG parsing and its one-line errors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekit.core.errors import EdgekitError

TINY = [
    "--train-samples",
    "600",
    "--test-samples",
    "200",
    "--validation-size",
    "100",
    "--epochs",
    "1",
]
DONE = "worker 1 of 2: training done, the chief writes the files"
SHA = re.compile(r"weights trained on 2 workers: sha256 ([0-9a-f]{64})")


def _free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1 (held open together, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tf_config(ports: list[int], index: int) -> str:
    workers = [f"127.0.0.1:{p}" for p in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def _edgekit(args: list[str], **env: str) -> subprocess.Popen[str]:
    unset = ("TF_CONFIG", "EDGEKIT_CLUSTER_TIMEOUT")
    full_env = {k: v for k, v in os.environ.items() if k not in unset}
    full_env.update(COLUMNS="200", **env)
    return subprocess.Popen(
        [sys.executable, "-m", "edgekit.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def _finish(procs: list[subprocess.Popen[str]], timeout: float = 300) -> list[tuple[int, str]]:
    """(exit status, stderr) of each process; all are killed if one outlives `timeout`."""
    out = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            out.append((p.returncode, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


def _two_workers(command: list[str], outputs: list[Path]) -> list[subprocess.Popen[str]]:
    """`edgekit COMMAND --distributed -o OUTPUT_i` as worker i of a 2-worker loopback cluster."""
    ports = _free_ports(2)
    return [
        _edgekit(
            [*command, "--distributed", *TINY, "-o", str(out)],
            TF_CONFIG=_tf_config(ports, i),
            EDGEKIT_CLUSTER_TIMEOUT="180",
        )
        for i, out in enumerate(outputs)
    ]


def _digest(stderr: str) -> str:
    found = SHA.findall(stderr)
    assert len(found) == 1, stderr
    return str(found[0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Started together (they mostly wait on each other): a 2-worker `export`, a 2-worker
    `train`, and worker 1 of a cluster whose worker 0 never starts.

    Returns {name: ([(status, stderr)] per process, [output per process])}.
    """
    root = tmp_path_factory.mktemp("distributed")
    export_out = [root / "export_0", root / "export_1"]
    train_out = [root / "train_0" / "model.keras", root / "train_1" / "model.keras"]
    export_cmd = ["export", "--prune-epochs", "1", "--precision", "float32"]
    alone = _edgekit(
        ["train", "--distributed", *TINY, "-o", str(root / "alone.keras")],
        TF_CONFIG=_tf_config(_free_ports(2), 1),
        EDGEKIT_CLUSTER_TIMEOUT="5",
    )
    procs = {
        "export": _two_workers(export_cmd, export_out),
        "train": _two_workers(["train"], train_out),
        "alone": [alone],
    }
    results = _finish([p for group in procs.values() for p in group])
    return {
        "export": (results[0:2], export_out),
        "train": (results[2:4], train_out),
        "alone": (results[4:5], [root / "alone.keras"]),
    }


def test_export_on_two_workers_ends_with_equal_weights(runs: dict[str, Any]) -> None:
    ((status0, err0), (status1, err1)), (chief, _) = runs["export"]
    assert (status0, status1) == (0, 0), err0 + err1
    manifest = json.loads((chief / "manifest.json").read_text())
    run = manifest["config"]["run"]
    assert run["distributed"]["workers"] == 2 and run["distributed"]["chief"] is True
    # The chief's record, its progress line and the other worker's line: the same weights.
    assert _digest(err0) == _digest(err1) == run["distributed"]["weights_sha256"]
    # Pruned together to the target on both (UpdatePruningStep under the strategy).
    assert manifest["config"]["train"]["distributed"] is True
    assert all(abs(v - 0.8) <= 0.01 for v in run["kernel_sparsity"].values()), run


def test_export_on_two_workers_only_the_chief_writes(runs: dict[str, Any]) -> None:
    ((_, err0), (_, err1)), (chief, other) = runs["export"]
    assert not other.exists()  # not even the folder (nor its lock)
    names = sorted(p.name for p in chief.iterdir())
    assert "manifest.json" in names and any(n.endswith("_float32.tflite") for n in names)
    assert err1.strip().splitlines()[-1] == DONE
    assert "[export]" in err0 and "[export]" not in err1 and DONE not in err0


def test_train_on_two_workers_saves_the_weights_each_worker_ended_with(
    runs: dict[str, Any],
) -> None:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.train.distributed import weights_sha256

    ((status0, err0), (status1, err1)), (chief, other) = runs["train"]
    assert (status0, status1) == (0, 0), err0 + err1
    assert not other.parent.exists()
    assert err1.strip().splitlines()[-1] == DONE
    saved = keras.models.load_model(chief, compile=False)
    # The chief's file against the weights the other worker held in memory when it stopped.
    assert weights_sha256(saved) == _digest(err1) == _digest(err0)


def test_a_worker_whose_cluster_never_starts_stops_after_the_timeout(
    runs: dict[str, Any],
) -> None:
    [(status, err)], [output] = runs["alone"]
    assert status == -9  # TensorFlow's wait cannot be interrupted: the watchdog kills it
    assert err.strip().splitlines()[-1] == (
        "Error: worker 1 of 2 waited 5 s for the other workers of TF_CONFIG's cluster and "
        "stopped: start the same command on every machine it lists, or raise "
        "EDGEKIT_CLUSTER_TIMEOUT"
    )
    assert not output.exists() and not output.parent.joinpath("alone.keras").exists()


def test_cli_says_what_tf_config_must_hold_in_one_line() -> None:
    missing, malformed = _finish(
        [
            _edgekit(["train", "--distributed", *TINY]),
            _edgekit(["export", "--distributed", *TINY], TF_CONFIG='{"cluster": '),
        ]
    )
    assert missing[0] == 1 and missing[1].strip().splitlines() == [
        "Error: TF_CONFIG is not set: --distributed needs TF_CONFIG, JSON naming every worker's "
        'host:port and this process\'s task, e.g. TF_CONFIG=\'{"cluster": {"worker": '
        '["10.0.0.1:12345", "10.0.0.2:12345"]}, "task": {"type": "worker", '
        '"index": 0}}\' on the first machine and "index": 1 on the second'
    ]
    assert malformed[0] == 1 and len(malformed[1].strip().splitlines()) == 1
    assert malformed[1].startswith(
        "Error: TF_CONFIG is not JSON (Expecting value at character "
        "11): --distributed needs TF_CONFIG"
    )


@pytest.mark.parametrize(
    ("tf_config", "problem"),
    [
        ("[1, 2]", "TF_CONFIG is a JSON list, not an object"),
        (
            '{"task": {"type": "worker", "index": 0}}',
            'TF_CONFIG has no "cluster" with a "worker" list',
        ),
        (
            '{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, '
            '"task": {"type": "worker", "index": 0}}',
            "TF_CONFIG's cluster has 'ps' jobs, which MultiWorkerMirroredStrategy does not train "
            "with: list only workers (and a chief)",
        ),
        (
            '{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}',
            "TF_CONFIG \"worker\" address is 'b', not a host:port address",
        ),
        (
            '{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}',
            "TF_CONFIG lists a:1 twice: give every task its own host:port",
        ),
        ('{"cluster": {"worker": ["a:1", "b:1"]}}', 'TF_CONFIG has no "task" naming this process'),
        (
            '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
            'TF_CONFIG\'s task index is 2, expected 0..1 (the "worker" list has 2)',
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}',
            "TF_CONFIG's task type is 'evaluator', expected one of the cluster's jobs (worker)",
        ),
    ],
)
def test_read_tf_config_names_the_problem_in_one_line(tf_config: str, problem: str) -> None:
    from edgekit.workstation.train.distributed import read_tf_config

    with pytest.raises(EdgekitError) as e:
        read_tf_config({"TF_CONFIG": tf_config})
    assert str(e.value).startswith(problem + ": --distributed needs TF_CONFIG, JSON naming")
    assert "\n" not in str(e.value)


def test_the_chief_is_the_chief_task_else_worker_0() -> None:
    from edgekit.workstation.train.distributed import read_tf_config

    def role(cluster: dict[str, list[str]], task_type: str, index: int) -> Any:
        task = {"type": task_type, "index": index}
        return read_tf_config({"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})})

    workers = {"worker": ["h1:1", "h2:1", "h3:1"]}
    assert [role(workers, "worker", i).is_chief for i in range(3)] == [True, False, False]
    with_chief = {"chief": ["h0:1"], **workers}
    roles = [role(with_chief, "chief", 0)] + [role(with_chief, "worker", i) for i in range(3)]
    assert [r.is_chief for r in roles] == [True, False, False, False]
    assert [r.name for r in roles] == [f"worker {i} of 4" for i in range(4)]
    assert roles[2].done_message == "worker 2 of 4: training done, the chief writes the files"
    assert roles[2].address == "h2:1"


def test_weights_sha256_changes_with_any_single_weight() -> None:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.train.distributed import weights_sha256

    model = keras.Sequential([keras.layers.Input((3,)), keras.layers.Dense(2)])
    before = weights_sha256(model)
    kernel, bias = model.get_weights()
    kernel[1, 1] = np.nextafter(kernel[1, 1], np.float32(np.inf))
    model.set_weights([kernel, bias])
    assert weights_sha256(model) != before
    assert weights_sha256(keras.models.clone_model(model)) != weights_sha256(model)


def test_global_batches_draw_a_seeded_order_anew_every_epoch() -> None:
    from edgekit.workstation.train.batches import global_batches

    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)

    def epochs(seed: int) -> list[list[int]]:
        ds = global_batches(x, y, 4, seed)
        return [[int(v) for xb, yb in ds for v in yb.numpy()] for _ in range(2)]

    first, second = epochs(3)
    assert sorted(first) == sorted(second) == list(range(10))  # each epoch: every sample once
    assert first != second  # reshuffled
    assert epochs(3) == [first, second]  # the same on every worker (same seed)
    assert [len(b) for _, b in global_batches(x, y, 4, 3)] == [4, 4, 2]


def test_a_lost_worker_is_named_from_tensorflows_error_in_one_line() -> None:
    from edgekit.workstation.train.distributed import _why

    # As TensorFlow 2.21 words them: a worker killed mid-step, and one whose socket closed.
    heartbeat = (
        "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most recent "
        'call last):\n  File "<frozen runpy>", line 198, in _run_module_as_main\n\nCollective '
        "ops is aborted by: Error reported from /job:worker/task:1: The following tasks are "
        "unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have "
        "crashed. Check the task logs for an earlier error."
    )
    assert _why(heartbeat) == (
        "Error reported from /job:worker/task:1: The following tasks are unhealthy (stopped "
        "sending heartbeats): /job:worker/replica:0/task:1"
    )
    closed = (
        "{{function_node __wrapped__CollectiveBcastRecv_device_/job:worker/replica:0/task:1/"
        "device:CPU:0}} Collective ops is aborted by: Socket closed\nAdditional GRPC error"
    )
    assert _why(closed) == "Socket closed"
