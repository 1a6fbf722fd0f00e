"""Run a sweep: skip what the store already holds, run the rest, store each cell as it ends.

The driver alone writes to the store. Cells that share a model are run on one loaded copy of
it; cells that also share their data go through ``run_probes`` together (stacked where that
pays). A cell that fails (bad settings for this model, a NaN loss, out of memory) is stored
as failed with its reason, and the sweep goes on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from memlaw.errors import MemlawInputError
from memlaw.models.loading import LoadedModel, load_model
from memlaw.probe import ProbeConfig, ProbeResult, default_max_copies, run_probes, stack_groups
from memlaw.sweep.grid import SweepConfig
from memlaw.sweep.store import ResultsStore, cell_key

#: What a cell's data depends on: cells equal in these can share one prefix cache and pass.
DATA_SETTINGS = (
    "model", "gguf_file", "dtype", "data", "length", "ratio", "text", "data_seed", "prompt_format", "system_prompt",
)  # fmt: skip


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
    retry_failed: bool = False,
    progress: bool = False,
    load: Callable[[ProbeConfig], LoadedModel] | None = None,
) -> SweepReport:
    """Run every cell of ``sweep`` not yet in ``store``; ``load`` builds a cell's model (default: load_model)."""
    cells = sweep.cells()
    finished = store.finished(include_failed=not retry_failed)
    todo = [c for c in cells if cell_key(c) not in finished]
    report = SweepReport(total=len(cells), skipped=len(cells) - len(todo), done=0, failed=0)
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress)
    by_model: dict[tuple, list[ProbeConfig]] = defaultdict(list)
    for config in todo:
        by_model[(config.model, config.gguf_file, config.dtype, config.device)].append(config)
    for configs in by_model.values():
        first = configs[0]
        loader = load or (lambda c: load_model(c.model, gguf_file=c.gguf_file, dtype=c.dtype, device=c.device))
        loaded = loader(first)
        by_data: dict[tuple, list[ProbeConfig]] = defaultdict(list)
        for config in configs:
            by_data[tuple(repr(getattr(config, k)) for k in DATA_SETTINGS)].append(config)
        copies = default_max_copies(loaded.model.device)
        for group in by_data.values():
            # one stack at a time, stored as soon as it ends: a kill loses only the stack in flight
            stacks = [[group[i] for i in stack] for stack in stack_groups(group, copies)]
            outcomes = (pair for stack in stacks for pair in _run_group(stack, loaded))
            for config, outcome in outcomes:
                if isinstance(outcome, ProbeResult):
                    store.add_result(config, outcome)
                    report.done += 1
                else:
                    store.add_failure(config, outcome)
                    report.failed += 1
                bar.update()
                bar.set_postfix(done=report.done, failed=report.failed)
    bar.close()
    return report


def _run_group(group: list[ProbeConfig], loaded: LoadedModel) -> list[tuple[ProbeConfig, ProbeResult | str]]:
    """Results of cells sharing model and data; if the group fails, each cell alone, to find the culprit."""
    try:
        results = run_probes(group, loaded, max_copies=len(group))
        return [(c, _checked(r)) for c, r in zip(group, results, strict=True)]
    except (MemlawInputError, torch.OutOfMemoryError, RuntimeError) as err:
        if len(group) == 1:
            return [(group[0], _reason(err))]
        return [pair for config in group for pair in _run_group([config], loaded)]


def _checked(result: ProbeResult) -> ProbeResult | str:
    if not math.isfinite(result.final_loss):
        return f"training diverged: final loss is {result.final_loss}"
    return result


def _reason(err: BaseException) -> str:
    kind = "out of memory" if isinstance(err, torch.OutOfMemoryError) else type(err).__name__
    text = str(err).strip().splitlines()
    return f"{kind}: {text[0] if text else ''}"
