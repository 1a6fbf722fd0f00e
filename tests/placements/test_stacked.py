import pytest
import torch

from memlaw.measure import evaluate_tokens
from memlaw.models import build_tiny_model
from memlaw.placements import load_adapter
from memlaw.probe import ProbeConfig, build_data, run_probe, run_probes, stack_groups, stack_size


@pytest.mark.parametrize(("placement", "cache"), [("bypass", True), ("bypass", False), ("peft", True), ("peft", False)])
def test_stacked_copies_give_the_results_they_give_alone(tokenizer, placement, cache, same_result):
    # several batches per epoch, so each copy's own seeded shuffle matters
    base = {"data": "phonebook", "length": 40, "epochs": 8, "batch_size": 2, "lr": 2e-2, "prefix_cache": cache}
    base["placement"] = placement
    configs = [ProbeConfig(**base, rank=r, seed=s) for r, s in [(1, 0), (4, 0), (4, 1), (8, 2)]]
    stacked = run_probes(configs, build_tiny_model(tokenizer), max_copies=8)
    for config, result in zip(configs, stacked, strict=True):
        alone = run_probe(config, build_tiny_model(tokenizer))
        same_result(result, alone)


def test_stacked_copies_stop_at_their_own_certification(tokenizer, same_result):
    base = {"data": "longcontext", "length": 16, "epochs": 150, "lr": 2e-2, "until": "certified"}
    configs = [ProbeConfig(**base, rank=r) for r in (2, 4, 8)]  # rank 2 never certifies here
    stacked = run_probes(configs, build_tiny_model(tokenizer), max_copies=8)
    assert [r.certified for r in stacked] == [False, True, True] and stacked[1].steps != stacked[2].steps
    for config, result in zip(configs, stacked, strict=True):
        same_result(result, run_probe(config, build_tiny_model(tokenizer)))


@pytest.mark.parametrize("placement", ["bypass", "peft"])
def test_a_stacked_copy_saves_as_a_lone_adapter(tokenizer, tmp_path, placement):
    base = {"data": "longcontext", "length": 12, "epochs": 10, "lr": 2e-2, "placement": placement}
    configs = [ProbeConfig(**base, rank=r) for r in (2, 5)]
    loaded = build_tiny_model(tokenizer)
    from memlaw.probe.run import probe_together

    data = build_data(configs[0], tokenizer, len(tokenizer))
    results = probe_together(configs, loaded, data, progress=False)
    results[1].adapter.save_pretrained(tmp_path / "copy1", copy=1)
    results[1].adapter.remove()
    fresh = build_tiny_model(tokenizer)
    adapter = load_adapter(fresh.model, tmp_path / "copy1")
    assert adapter.describe() == results[1].placement and adapter.trainable_params == results[1].trainable_params
    probs = evaluate_tokens(adapter.model, data, pad_id=tokenizer.pad_token_id).probs
    assert probs.tolist() == pytest.approx(results[1].items[0]["token_probs"], abs=1e-5)


def test_stack_size_follows_the_tokens_of_a_step(tokenizer):
    from memlaw.probe.run import CPU_STACK_TOKENS, DEFAULT_GPU_COPIES, MAX_COPIES

    short = build_data(ProbeConfig(data="longcontext", length=16), tokenizer, len(tokenizer))
    long = build_data(ProbeConfig(data="longcontext", length=CPU_STACK_TOKENS), tokenizer, len(tokenizer))
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert stack_size(cpu, short, 8) == min(MAX_COPIES, CPU_STACK_TOKENS // short.max_sequence_length) > 1
    assert stack_size(cpu, long, 8) == 1  # one copy's step already past the crossover: one by one
    assert stack_size(gpu, long, 8) == DEFAULT_GPU_COPIES


def test_run_probes_records_the_stack_it_chose(tokenizer):
    configs = [ProbeConfig(data="longcontext", length=8, rank=r, steps=2) for r in (1, 2, 3)]
    results = run_probes(configs, build_tiny_model(tokenizer))
    assert [r.stacked_copies for r in results] == [3, 3, 3]
    alone = run_probes(configs[:1], build_tiny_model(tokenizer), max_copies=1)
    assert alone[0].stacked_copies == 1 and alone[0].to_dict()["stacked_copies"] == 1


def test_stack_groups():
    pb = {"data": "phonebook", "length": 10}
    configs = [
        ProbeConfig(**pb, rank=1),
        ProbeConfig(**pb, rank=2, seed=3),
        ProbeConfig(**pb, rank=4, placement="peft"),
        ProbeConfig(data="phonebook", length=20, rank=1),
        ProbeConfig(**pb, rank=8),
    ]
    assert sorted(stack_groups(configs, max_copies=8)) == [[0, 1, 4], [2], [3]]
    assert sorted(stack_groups(configs, max_copies=2)) == [[0, 1], [2], [3], [4]]
    peft = [ProbeConfig(**pb, rank=r, placement="peft", layer=[1, 2]) for r in (1, 2)]
    assert stack_groups(peft, max_copies=8) == [[0, 1]]


def test_each_stacked_copy_is_clipped_on_its_own(tokenizer):
    from memlaw.placements import BypassAdapter, BypassConfig

    model = build_tiny_model(tokenizer).model
    stack = BypassAdapter(model, [BypassConfig(rank=2), BypassConfig(rank=3)], [0, 1])
    generator = torch.Generator().manual_seed(0)
    for p in stack.parameters():
        p.grad = torch.randn(p.shape, generator=generator)
    for p in stack.copy_parameters(0):
        p.grad.mul_(100)  # copy 0's large gradient must not shrink copy 1's
    small = [p.grad.clone() for p in stack.copy_parameters(1)]
    norm = lambda j: torch.sqrt(sum(p.grad.pow(2).sum() for p in stack.copy_parameters(j)))
    assert norm(1) < 30 < norm(0)
    stack.clip_grad_norm_(30.0)
    assert norm(0).item() == pytest.approx(30.0, rel=1e-5)
    assert all(torch.equal(p.grad, g) for p, g in zip(stack.copy_parameters(1), small, strict=True))
