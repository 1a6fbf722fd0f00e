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
import socket
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
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
    """
    if workers < 1:
        raise MemlawInputError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and backend == "ray":
        raise MemlawInputError("--workers is for the local backend; Ray schedules its own workers")
    cells = sweep.cells()
    finished = store.finished(include_failed=not retry_failed)
    todo = [c for c in cells if cell_key(c) not in finished]
    report = SweepReport(total=len(cells), skipped=len(cells) - len(todo), done=0, failed=0)
    stacks = plan_stacks(todo)
    if backend == "ray":
        outcomes = _ray(stacks, address)
    elif workers > 1:
        outcomes = _processes(stacks, workers)
    else:
        outcomes = (triple for stack in stacks for triple in _received(stack, _remote_stack(stack)))
    with tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress) as bar:
        for config, outcome, worker in outcomes:
            if isinstance(outcome, ProbeResult):
                store.add_result(config, outcome, worker)
                report.done += 1
            else:
                store.add_failure(config, outcome, worker)
                report.failed += 1
            bar.update()
            bar.set_postfix(done=report.done, failed=report.failed)
    return report


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


#: What a backend yields per cell: its config, its outcome, and the worker that ran it.
Received = tuple[ProbeConfig, Outcome, str]


def _processes(stacks: list[list[ProbeConfig]], workers: int) -> Iterator[Received]:
    """Stacks in ``workers`` spawned processes; outcomes come back to the driver as they end."""
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_remote_stack, [asdict(c) for c in stack]): stack for stack in stacks}
        for future in as_completed(futures):
            yield from _received(futures[future], future.result())


def _ray(stacks: list[list[ProbeConfig]], address: str | None) -> Iterator[Received]:
    """Each stack is a Ray task (on a GPU when the cluster has one); results return as they end."""
    try:
        import ray
    except ImportError as err:
        raise MemlawInputError("the ray backend needs Ray: pip install 'memlaw[ray]'") from err
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        task = ray.remote(num_gpus=gpus)(_remote_stack)
        pending = {task.remote([asdict(c) for c in stack]): stack for stack in stacks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            yield from _received(pending.pop(ready[0]), ray.get(ready[0]))
    finally:
        if started_here:
            ray.shutdown()


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
