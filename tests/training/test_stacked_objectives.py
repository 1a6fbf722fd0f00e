"""A copy trained in a stack equals the same copy trained alone, for every objective.

MemFT can leave a copy with nothing to train in a step (all tokens above the threshold with
``fallback: skip``, or a curriculum batch already memorised). Alone, that copy's parameters get
no gradient and AdamW leaves them and their moments and step count alone; in a stack it must be
the same, or the copy drifts from the trajectory it would follow by itself.
"""

import json

import pytest

from memlaw.models import build_tiny_model
from memlaw.probe import ProbeConfig, build_data, run_probe, run_probes
from memlaw.probe.run import attach_stacked
from memlaw.training import make_objective, train_copies

SIT_OUT = {
    "memft-ot skip": ("memft-ot", {"fallback": "skip"}),
    "memft-sw curriculum": (
        "memft-sw",
        {"mode": "curriculum", "stage_epochs": [10, 20], "stage_ratios": [0.5, 0.75, 1]},
    ),
}


class CountingIdleSteps:
    """Wraps an objective and counts, per copy, the steps in which it weighs nothing."""

    def __init__(self, objective, copies):
        self.objective, self.idle = objective, [0] * copies

    def __getattr__(self, name):
        return getattr(self.objective, name)

    def weights(self, tokens):
        weights = self.objective.weights(tokens)
        for j in range(len(self.idle)):
            self.idle[j] += int(weights[tokens.copy == j].sum() == 0)
        return weights


@pytest.fixture()
def two_facts(tmp_path):
    """Two short items: each is memorised within a few steps, so copies soon have steps with nothing to train."""
    path = tmp_path / "facts.jsonl"
    path.write_text(
        "".join(json.dumps({"key": k, "value": v}) + "\n" for k, v in [("A:", "red fox"), ("B:", "blue whale")])
    )
    return str(path)


def train(tokenizer, configs):
    """Train ``configs`` stacked on a fresh tiny model; returns each copy's parameters and idle steps."""
    loaded = build_tiny_model(tokenizer)
    data = build_data(configs[0], tokenizer, len(tokenizer))
    adapter = attach_stacked(configs, loaded)
    objective = CountingIdleSteps(make_objective(configs[0].method, configs[0].method_options), len(configs))
    train_copies(
        adapter,
        data,
        objective,
        configs[0].train_config(),
        pad_id=tokenizer.pad_token_id,
        seeds=[c.seed for c in configs],
    )
    weights = [[p.detach().clone() for p in adapter.copy_parameters(j)] for j in range(len(configs))]
    adapter.remove()
    return weights, objective.idle


@pytest.mark.parametrize("placement", ["bypass", "peft"])
@pytest.mark.parametrize("method", list(SIT_OUT))
def test_a_copy_that_sits_out_steps_trains_as_it_would_alone(tokenizer, two_facts, placement, method):
    name, options = SIT_OUT[method]
    base = {"data": two_facts, "epochs": 40, "batch_size": 1, "lr": 5e-2, "placement": placement}
    configs = [ProbeConfig(**base, rank=r, seed=s, method=name, method_options=options) for r, s in [(4, 0), (8, 1)]]
    stacked, idle = train(tokenizer, configs)
    assert sum(idle) > 0, "the scenario must make some copy sit out some steps"
    for j, config in enumerate(configs):
        (alone,), _ = train(tokenizer, [config])
        for got, want in zip(stacked[j], alone, strict=True):
            # float noise only (before per-copy optimizer state, copies drifted by 15-30 % here)
            assert (got - want).abs().max() <= 1e-3 * want.abs().max(), f"copy {j} drifted from its lone run"


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("sft", None),
        ("memft-ot", None),
        SIT_OUT["memft-ot skip"],
        SIT_OUT["memft-sw curriculum"],
        ("memft-sw", {"mode": "sliding", "window": 4, "decay": 2.0}),
    ],
)
def test_stacked_probes_equal_lone_probes_for_every_objective(tokenizer, two_facts, method, options, same_result):
    data = {"data": "longcontext", "length": 24} if options and options.get("mode") == "sliding" else {}
    base = {"data": two_facts, "epochs": 40, "batch_size": 1, "lr": 5e-2, **data}
    configs = [ProbeConfig(**base, rank=r, seed=s, method=method, method_options=options) for r, s in [(2, 0), (5, 1)]]
    stacked = run_probes(configs, build_tiny_model(tokenizer), max_copies=8)
    for config, result in zip(configs, stacked, strict=True):
        same_result(result, run_probe(config, build_tiny_model(tokenizer)))
