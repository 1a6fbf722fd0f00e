"""Run a sweep: skip what the store already holds, run the rest, store each cell as it ends.

Cells are grouped into *stacks*: cells that share model and data and differ only in rank
and seed, which train in one pass where that pays (``run_probes``). A backend runs stacks
and hands back outcomes; the driver alone writes them to the store, one transaction per
cell, so a kill loses only the stacks in flight. A cell that fails (bad settings for this
model, a NaN loss, out of memory) is stored as failed with its reason, and the sweep goes on.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from tqdm.auto import tqdm

from memlaw.config import settings_where
from memlaw.errors import MemlawInputError
from memlaw.models.loading import LoadedModel, load_model
from memlaw.probe import ProbeConfig, ProbeResult, run_probes, stack_groups
from memlaw.probe.run import MAX_COPIES
from memlaw.sweep.grid import SweepConfig
from memlaw.sweep.leases import Leases
from memlaw.sweep.store import ResultsStore, cell_key

#: Which model a cell loads; with the data settings, what its data depends on (cells equal in
#: these share one loaded model and one encoding).
MODEL_SETTINGS = settings_where(ProbeConfig, scope="model")
DATA_SETTINGS = MODEL_SETTINGS + settings_where(ProbeConfig, scope="data")

#: A cell's outcome: its measurements, or why it failed.
Outcome = ProbeResult | str


@dataclass
class SweepReport:
    total: int
    skipped: int
    done: int
    failed: int
    #: Cells another driver on the same store trained and stored while this one ran.
    elsewhere: int = 0


def run_sweep(
    sweep: SweepConfig,
    store: ResultsStore,
    *,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    retry_failed: bool = False,
    progress: bool = False,
) -> SweepReport:
    """Run every cell of ``sweep`` not yet in ``store`` on the ``local`` or ``ray`` backend.

    ``workers`` > 1 runs local stacks in that many processes, each loading the model once.
    Cells are leased before they run, so drivers sharing the store train each cell once; cells
    another live driver holds are waited for, and taken over if it dies.
    """
    if workers < 1:
        raise MemlawInputError(f"workers= must be at least 1, got {workers}")
    if workers > 1 and backend == "ray":
        raise MemlawInputError("workers= is for the local backend; Ray schedules its own workers")
    cells = sweep.cells()
    finished = store.finished(include_failed=not retry_failed)
    todo = [c for c in cells if cell_key(c) not in finished]
    report = SweepReport(total=len(cells), skipped=len(cells) - len(todo), done=0, failed=0)
    started = time.time()
    runner = RayStacks(address) if backend == "ray" else ProcessStacks(workers) if workers > 1 else LocalStacks()
    with (
        Leases(store.path) as leases,
        runner,
        tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress) as bar,
    ):
        for config, outcome, worker in _dispatch(
            plan_stacks(todo), runner, leases, retry_before=started if retry_failed else None
        ):
            if isinstance(outcome, ProbeResult):
                store.add_result(config, outcome, worker)
                report.done += 1
            else:
                store.add_failure(config, outcome, worker)
                report.failed += 1
            bar.update()
            bar.set_postfix(done=report.done, failed=report.failed)
    report.elsewhere = len(todo) - report.done - report.failed
    return report


#: Seconds between looks at cells another driver holds, while nothing else is left to run.
POLL_SECONDS = 2.0


def _dispatch(
    stacks: list[list[ProbeConfig]], runner: StackRunner, leases: Leases, *, retry_before: float | None
) -> Iterator[Received]:
    """Outcomes of ``stacks``, each claimed just before it runs, at most ``runner.capacity`` at
    once; cells a live driver holds are tried again when nothing else is left, until they are
    stored or their lease dies."""
    queue, waiting, running = deque(stacks), [], 0
    while queue or waiting or running:
        while queue and running < runner.capacity:
            stack = queue.popleft()
            mine, held = leases.claim([cell_key(c) for c in stack], retry_before=retry_before)
            if held:
                waiting.append([c for c in stack if cell_key(c) in held])
            if mine:
                runner.submit([c for c in stack if cell_key(c) in mine])
                running += 1
        if running:
            yield from _received(*runner.next_done())
            running -= 1
        elif waiting:
            time.sleep(POLL_SECONDS)
            queue.extend(waiting)
            waiting = []


#: What a backend yields per cell: its config, its outcome, and the worker that ran it.
Received = tuple[ProbeConfig, Outcome, str]
#: A stack as a backend hands it back: the stack, and what ``_remote_stack`` returned for it.
Finished = tuple[list[ProbeConfig], tuple[str, list[dict[str, Any] | str]]]


class StackRunner:
    """A backend: runs up to ``capacity`` stacks at once and hands each back when it ends."""

    capacity = 1

    def submit(self, stack: list[ProbeConfig]) -> None:
        raise NotImplementedError

    def next_done(self) -> Finished:
        raise NotImplementedError

    def __enter__(self) -> StackRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class LocalStacks(StackRunner):
    """Stacks run in this process, one at a time, as they are submitted."""

    def __init__(self) -> None:
        self._done: deque[Finished] = deque()

    def submit(self, stack: list[ProbeConfig]) -> None:
        self._done.append((stack, _remote_stack(stack)))

    def next_done(self) -> Finished:
        return self._done.popleft()


#: How long a stopped worker may take to leave through Python before it is killed.
WORKER_EXIT_SECONDS = 10.0


class ProcessStacks(StackRunner):
    """Stacks in ``workers`` spawned processes (each loads the model once). On Ctrl-C or any
    error in the driver, the stacks not started are cancelled and the workers stopped at once."""

    def __init__(self, workers: int):
        self.capacity = workers
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_signals
        )
        self._futures: dict[Future, list[ProbeConfig]] = {}

    def submit(self, stack: list[ProbeConfig]) -> None:
        self._futures[self._pool.submit(_remote_stack, [asdict(c) for c in stack])] = stack

    def next_done(self) -> Finished:
        future = next(as_completed(self._futures))
        return self._futures.pop(future), future.result()

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if kind is None:
            self._pool.shutdown()
            return
        workers = list((getattr(self._pool, "_processes", None) or {}).values())  # 3.14: terminate_workers()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
        for process in workers:
            process.join(timeout=WORKER_EXIT_SECONDS)
            if process.is_alive():  # deep in one long native call: no more waiting
                process.kill()
                process.join()
        self._pool.shutdown()  # the pool sees its workers gone and frees its queues (no leaked semaphores)


class RayStacks(StackRunner):
    """Each stack is a Ray task (on a GPU when the cluster has one), as many at once as the
    cluster has GPUs (or CPUs); results return as they end."""

    def __init__(self, address: str | None):
        try:
            import ray
        except ImportError as err:
            raise MemlawInputError("the ray backend needs Ray: pip install 'memlaw[ray]'") from err
        self.ray, self.started_here = ray, not ray.is_initialized()
        if self.started_here:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.capacity = max(1, gpus or int(resources.get("CPU", 1)))
        self._task = ray.remote(num_gpus=1 if gpus else 0)(_remote_stack)
        self._pending: dict[Any, list[ProbeConfig]] = {}

    def submit(self, stack: list[ProbeConfig]) -> None:
        self._pending[self._task.remote([asdict(c) for c in stack])] = stack

    def next_done(self) -> Finished:
        (ready,), _ = self.ray.wait(list(self._pending), num_returns=1)
        return self._pending.pop(ready), self.ray.get(ready)

    def __exit__(self, *exc: object) -> None:
        for ref in self._pending:
            self.ray.cancel(ref, force=True)
        if self.started_here:
            self.ray.shutdown()


def _worker_signals() -> None:
    """Workers leave Ctrl-C to the driver, which stops them (no traceback from each worker), end by
    SIGTERM through Python, whose exit frees what they hold (tqdm's semaphore, for one), and end
    by themselves when the driver dies without stopping them (SIGKILL): nobody would store their work."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_worker)
    driver = os.getppid()

    def watch_driver() -> None:
        while os.getppid() == driver:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch_driver, name="memlaw-driver-watch", daemon=True).start()


def _exit_worker(signum: int, frame: object) -> None:
    sys.exit(0)


def plan_stacks(todo: list[ProbeConfig]) -> list[list[ProbeConfig]]:
    """Cells grouped by model, then data, then into tasks of cells that may train stacked (at most
    ``MAX_COPIES``); the process that runs a task picks how many copies each pass trains."""
    by_data: dict[tuple, list[ProbeConfig]] = defaultdict(list)
    for config in todo:
        by_data[tuple(repr(getattr(config, k)) for k in DATA_SETTINGS)].append(config)
    stacks = []
    for group in sorted(by_data.values(), key=lambda g: tuple(repr(getattr(g[0], k)) for k in MODEL_SETTINGS)):
        stacks.extend([group[i] for i in stack] for stack in stack_groups(group, MAX_COPIES))
    return stacks


#: Models loaded in this process, reused by every stack that asks for the same one.
_LOADED: dict[tuple, LoadedModel] = {}


def execute_stack(stack: list[ProbeConfig]) -> list[tuple[ProbeConfig, Outcome]]:
    """Run one stack (in whatever process a backend chose) and return each cell's outcome."""
    key = tuple(getattr(stack[0], k) for k in MODEL_SETTINGS)
    if key not in _LOADED:
        _LOADED.clear()  # one model at a time per process
        first = stack[0]
        try:
            _LOADED[key] = load_model(first.model, gguf_file=first.gguf_file, dtype=first.dtype, device=first.device)
        except MemlawInputError as err:
            return [(config, f"MemlawInputError: {err}") for config in stack]
    return _run_stack(stack, _LOADED[key])


def _run_stack(stack: list[ProbeConfig], loaded: LoadedModel) -> list[tuple[ProbeConfig, Outcome]]:
    """Outcomes of one stack; if it fails, each cell alone, so that only the culprit fails."""
    try:
        results = run_probes(stack, loaded)
        return [(c, _checked(r)) for c, r in zip(stack, results, strict=True)]
    except (MemlawInputError, torch.OutOfMemoryError, RuntimeError) as err:
        if len(stack) == 1:
            return [(stack[0], _reason(err))]
        return [pair for config in stack for pair in _run_stack([config], loaded)]


def _remote_stack(stack: list[dict[str, Any]] | list[ProbeConfig]) -> tuple[str, list[dict[str, Any] | str]]:
    """A stack run in whatever process a backend chose: plain dictionaries in and out (no adapters
    or tensors), with the worker that ran it ("host:pid")."""
    configs = [c if isinstance(c, ProbeConfig) else ProbeConfig(**c) for c in stack]
    outcomes = execute_stack(configs)
    return f"{socket.gethostname()}:{os.getpid()}", [o if isinstance(o, str) else o.to_dict() for _, o in outcomes]


def _received(stack: list[ProbeConfig], returned: tuple[str, list[dict[str, Any] | str]]) -> Iterator[Received]:
    worker, outcomes = returned
    names = {f.name for f in fields(ProbeResult)}
    for config, outcome in zip(stack, outcomes, strict=True):
        if isinstance(outcome, str):
            yield config, outcome, worker
        else:
            yield config, ProbeResult(**{k: v for k, v in outcome.items() if k in names}), worker


def _checked(result: ProbeResult) -> Outcome:
    if not math.isfinite(result.final_loss):
        return f"training diverged: final loss is {result.final_loss}"
    return result


def _reason(err: BaseException) -> str:
    kind = "out of memory" if isinstance(err, torch.OutOfMemoryError) else type(err).__name__
    text = str(err).strip().splitlines()
    return f"{kind}: {text[0] if text else ''}"
