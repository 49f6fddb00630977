"""Where sweep points run: local worker processes (the default) or Ray tasks.

Both run each point in a fresh process (`execute_point`), so TensorFlow's thread pools are
pinned before they start and one point's state never leaks into the next. Neither schedules
anything itself beyond "at most N at once": concurrent.futures or Ray does the work.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.core.io.process import deferred_signals
from edgekit.sweep.point import PointJob, execute_point, worker_init

OnResult = Callable[[PointJob, dict[str, Any]], None]
# Seconds a stopped worker gets to remove its temporary folder before it is killed.
STOP_GRACE_S = 5.0
# Environment of Ray's workers: TF-MOT needs Keras 2 (see edgekit.workstation._keras).
RAY_ENV_VARS = {"TF_USE_LEGACY_KERAS": "1"}


def crashed(job: PointJob, why: str) -> dict[str, Any]:
    """The outcome of a point whose process died without answering."""
    return {
        "id": job.point.id,
        "status": "error",
        "error": why,
        "seconds": None,
        "host": None,
        "pid": None,
        "log": [why],
        "summary": None,
        "left_out": [],
        "files": {},
    }


def run_local(jobs: Sequence[PointJob], workers: int, on_result: OnResult) -> dict[str, Any]:
    """Run `jobs` in at most `workers` processes at once, each point in a fresh one (spawned).

    Each point has its own single-process pool, so a point whose process dies (a native crash,
    the OOM killer) is one error row and the others go on. Ctrl-C (or SIGTERM) stops the
    running points (SIGTERM, then SIGKILL after STOP_GRACE_S) and re-raises.

    Returns:
        What ran it: {"name": "local", "workers": N, "start_method": "spawn"}.
    """
    context = multiprocessing.get_context("spawn")
    queue = list(jobs)
    running: dict[Future[dict[str, Any]], tuple[PointJob, ProcessPoolExecutor]] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop(0)
                with _workers_start_deaf_to_sigint():
                    pool = ProcessPoolExecutor(1, mp_context=context, initializer=worker_init)
                    running[pool.submit(execute_point, job)] = (job, pool)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job, pool = running.pop(future)
                pool.shutdown(wait=True)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    outcome = crashed(
                        job,
                        "the point's process ended without a result (killed, "
                        "out of memory, or a crash in native code)",
                    )
                on_result(job, outcome)
    except BaseException:
        for _job, pool in running.values():
            pool.shutdown(wait=False, cancel_futures=True)
        stop_children()
        raise
    return {"name": "local", "workers": workers, "start_method": "spawn"}


@contextlib.contextmanager
def _workers_start_deaf_to_sigint() -> Iterator[None]:
    """Worker processes started in the block begin with SIGINT blocked (a signal mask is
    inherited across fork and exec) until worker_init ignores it: a Ctrl-C sent to the whole
    process group, as a terminal sends it, cannot stop a worker half-way through starting Python
    (with a KeyboardInterrupt traceback). The driver's own Ctrl-C is held and raised right after
    the block, so the pool it started is in `running` and gets stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from multiprocessing import resource_tracker

    # The tracker unblocks SIGINT in this thread when it starts: start it before blocking.
    resource_tracker.ensure_running()
    with deferred_signals():
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def stop_children(grace_s: float = STOP_GRACE_S) -> None:
    """End this process's worker processes: SIGTERM, then SIGKILL for those still alive."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace_s
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()


# Seconds to wait for a TCP connection to a given Ray address before calling it unreachable
# (Ray itself retries for minutes).
CONNECT_TIMEOUT_S = 5.0


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _ray_error(error: BaseException) -> str:
    """One line for a failed Ray task: its cause (e.g. an import error on a node), else Ray's."""
    cause = getattr(error, "cause", None)
    what = cause if isinstance(cause, BaseException) else error
    first = (_ANSI.sub("", str(what)).strip().splitlines() or [""])[0]
    return f"{type(what).__name__}: {first}".rstrip(": ")


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast when a Ray address of the form [ray://]HOST:PORT does not accept connections.

    Raises:
        EdgekitError: nothing listens there (or the host is unknown).
    """
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" or a form Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise EdgekitError(
            f"no Ray cluster answers at {address} ({e.strerror or e}): start one (`ray start "
            "--head`), check the address and port, or drop --ray"
        ) from None


# Long: one Ray session's whole life (init or connect, upload edgekit, submit, collect as
# results arrive, Ctrl-C, shutdown) in one try/finally, so nothing outlives the call.
def run_ray(
    jobs: Sequence[PointJob],
    address: str | None,
    cpus: int,
    threads: int,
    on_result: OnResult,
) -> dict[str, Any]:
    """Run `jobs` as Ray tasks, one fresh worker process per point (max_calls=1, no retries).

    Args:
        address: a running cluster ("auto", "HOST:PORT", "ray://HOST:10001"); None starts a
            local Ray for the run (`cpus` CPUs, loopback node address, no dashboard) and stops
            it after.
        cpus: CPUs of the local Ray (ignored with an address: the cluster's CPUs decide).
        threads: CPUs each task asks for (its TensorFlow threads).

    Returns:
        What ran it: {"name": "ray", "address", "ray_version", "cluster_cpus", "init_s"}.

    Raises:
        EdgekitError: Ray is not installed, or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise EdgekitError(
            "--ray needs Ray, which is not installed: pip install 'edgekit[ray]' (or run without "
            "--ray: local worker processes)"
        ) from None
    if address is not None:
        check_reachable(address)
    t0 = time.perf_counter()
    init: dict[str, Any] = {
        "runtime_env": {"env_vars": RAY_ENV_VARS},
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    if address is None:
        # "local": a new instance even when a cluster runs here (RAY_ADDRESS, `ray start`).
        init |= {
            "address": "local",
            "num_cpus": cpus,
            "include_dashboard": False,
            "_node_ip_address": "127.0.0.1",
        }
    else:
        import edgekit

        # The cluster's workers run this very edgekit (Ray uploads the package), so the
        # version in every point's id is the one that made its files. TensorFlow and the
        # rest of edgekit[train] must be installed on the nodes.
        init["runtime_env"] = {"env_vars": RAY_ENV_VARS, "py_modules": [edgekit]}
        init["address"] = address
    try:
        ray.init(**init)
    except Exception as e:  # Ray raises bare Exception too ("node timed out during startup")
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if address is None:
            raise EdgekitError(
                f"cannot start a local Ray instance ({first}): see Ray's logs in /tmp/ray, or "
                "drop --ray"
            ) from None
        raise EdgekitError(
            f"cannot reach the Ray cluster at {address} ({first}): check the address (--ray auto "
            "on a cluster node, ray://HEAD:10001 from outside); a cluster with token "
            "authentication (on by default for `ray start` in Ray 2.60) needs RAY_AUTH_MODE=token "
            "here too, and its token (~/.ray/auth_token or RAY_AUTH_TOKEN)"
        ) from None
    info = {
        "name": "ray",
        "address": address or "local",
        "ray_version": ray.__version__,
        "cluster_cpus": ray.cluster_resources().get("CPU"),
        "init_s": round(time.perf_counter() - t0, 3),
    }
    task = ray.remote(num_cpus=threads, max_calls=1, max_retries=0)(execute_point)
    refs: dict[Any, PointJob] = {}
    try:
        refs = {task.remote(job): job for job in jobs}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            job = refs.pop(done[0])
            try:
                outcome = ray.get(done[0])
            except ray.exceptions.RayError as e:
                outcome = crashed(job, f"the point's Ray task failed: {_ray_error(e)}")
            on_result(job, outcome)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        ray.shutdown()
    return info
