"""TF_CONFIG: the cluster a `--distributed` run trains on, and this process's task in it.

TensorFlow's format (https://www.tensorflow.org/guide/distributed_training): JSON with
"cluster" (job -> "host:port" addresses) and "task" (type and index of this process). Read
without importing TensorFlow, so a wrong TF_CONFIG fails in a second, before data or training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgekit.core.errors import EdgekitError

TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)
# The jobs that train together under MultiWorkerMirroredStrategy, the chief first.
JOBS = ("chief", "worker")


def _tf_config_error(problem: str) -> EdgekitError:
    return EdgekitError(
        f"{problem}: --distributed needs TF_CONFIG, JSON naming every worker's host:port and "
        f"this process's task, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}' on the first machine and "
        '"index": 1 on the second'
    )


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster, as TF_CONFIG gives it.

    Args:
        cluster: job ("chief", "worker") -> its tasks' "host:port" addresses.
        task_type: "worker" or "chief".
        task_index: index of this task in its job.
    """

    cluster: Mapping[str, tuple[str, ...]]
    task_type: str
    task_index: int

    @property
    def num_workers(self) -> int:
        """Processes that train together (the chief counts as one)."""
        return sum(len(self.cluster.get(job, ())) for job in JOBS)

    @property
    def rank(self) -> int:
        """0 for the chief, then the workers in TF_CONFIG's order."""
        chiefs = len(self.cluster.get("chief", ()))
        return self.task_index if self.task_type == "chief" else chiefs + self.task_index

    @property
    def is_chief(self) -> bool:
        """The task that writes the files: the "chief" task, else worker 0 (TensorFlow's rule)."""
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_index == 0

    @property
    def name(self) -> str:
        return f"worker {self.rank} of {self.num_workers}"

    @property
    def address(self) -> str:
        return self.cluster[self.task_type][self.task_index]

    @property
    def done_message(self) -> str:
        """The one line a worker other than the chief ends with."""
        return f"{self.name}: training done, the chief writes the files"

    def to_dict(self) -> dict[str, Any]:
        return {
            "workers": self.num_workers,
            "task": f"{self.task_type}:{self.task_index}",
            "chief": self.is_chief,
            "cluster": {job: list(addresses) for job, addresses in self.cluster.items()},
        }


def _address(value: Any, where: str) -> str:
    host, _, port = str(value).rpartition(":") if isinstance(value, str) else ("", "", "")
    # ASCII digits only ("²".isdigit() is True, and int() refuses it), at most 5 of them
    if not host or not (port.isascii() and port.isdigit() and len(port) <= 5):
        raise _tf_config_error(f"TF_CONFIG {where} is {value!r}, not a host:port address")
    if not 0 < int(port) < 65536:
        raise _tf_config_error(f"TF_CONFIG {where} is {value!r}, not a host:port address")
    return str(value)


# Long but flat: one check after another of TF_CONFIG's shape, each its own one-line error.
def read_tf_config(environ: Mapping[str, str] | None = None) -> WorkerRole:
    """This process's role from the TF_CONFIG environment variable (TensorFlow's format).

    Raises:
        EdgekitError: TF_CONFIG is missing, not JSON, or does not name a cluster of workers
            (and at most one chief) with this process's task in it.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        raise _tf_config_error("TF_CONFIG is not set")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise _tf_config_error(f"TF_CONFIG is not JSON ({e.msg} at character {e.pos})") from None
    except RecursionError:
        raise _tf_config_error("TF_CONFIG is nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise _tf_config_error(f"TF_CONFIG is not JSON ({str(e)[:80]})") from None
    if not isinstance(config, dict):
        raise _tf_config_error(f"TF_CONFIG is a JSON {type(config).__name__}, not an object")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker"), list):
        raise _tf_config_error('TF_CONFIG has no "cluster" with a "worker" list')
    other = sorted(set(cluster) - set(JOBS))
    if other:
        raise _tf_config_error(
            f"TF_CONFIG's cluster has {', '.join(map(repr, other))} jobs, which "
            "MultiWorkerMirroredStrategy does not train with: list only workers (and a chief)"
        )
    jobs: dict[str, tuple[str, ...]] = {}
    for job in JOBS:
        if job in cluster:
            addresses = cluster[job]
            if not isinstance(addresses, list) or not addresses:
                raise _tf_config_error(
                    f'TF_CONFIG\'s "{job}" is {addresses!r}, not a list of addresses'
                )
            jobs[job] = tuple(_address(a, f'"{job}" address') for a in addresses)
    if len(jobs.get("chief", ())) > 1:
        raise _tf_config_error(f"TF_CONFIG lists {len(jobs['chief'])} chiefs, at most 1 is allowed")
    everyone = [a for addresses in jobs.values() for a in addresses]
    twice = sorted({a for a in everyone if everyone.count(a) > 1})
    if twice:
        raise _tf_config_error(
            f"TF_CONFIG lists {', '.join(twice)} twice: give every task its own host:port"
        )
    if not isinstance(task, dict):
        raise _tf_config_error('TF_CONFIG has no "task" naming this process')
    task_type, index = task.get("type"), task.get("index")
    if not isinstance(task_type, str) or task_type not in jobs:
        raise _tf_config_error(
            f"TF_CONFIG's task type is {task_type!r}, expected one of the cluster's jobs "
            f"({', '.join(jobs)})"
        )
    if (
        isinstance(index, bool)
        or not isinstance(index, int)
        or not (0 <= index < len(jobs[task_type]))
    ):
        raise _tf_config_error(
            f"TF_CONFIG's task index is {index!r}, expected 0..{len(jobs[task_type]) - 1} "
            f'(the "{task_type}" list has {len(jobs[task_type])})'
        )
    return WorkerRole(jobs, str(task_type), int(index))
