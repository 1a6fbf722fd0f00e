"""Checkpointing the adapted suffix changes memory, never the training trajectory."""

import pytest
import torch

from memlaw.engine.checkpointing import checkpointed_layers
from memlaw.models import build_tiny_model
from memlaw.models.parts import decoder_layers, layer_mlp
from memlaw.probe import ProbeConfig, build_data
from memlaw.probe.run import attach_stacked, run_probes
from memlaw.training import make_objective, train_copies


def trained(tokenizer, configs, *, checkpoint_layers):
    loaded = build_tiny_model(tokenizer)
    data = build_data(configs[0], tokenizer, len(tokenizer))
    adapter = attach_stacked(configs, loaded)
    config = configs[0].train_config()
    config.checkpoint_layers = checkpoint_layers
    logs = train_copies(
        adapter,
        data,
        make_objective("sft", None),
        config,
        pad_id=tokenizer.pad_token_id,
        seeds=[c.seed for c in configs],
    )
    weights = [p.detach().clone() for j in range(len(configs)) for p in adapter.copy_parameters(j)]
    adapter.remove()
    return weights, [log.loss_curve for log in logs]


@pytest.mark.parametrize(("placement", "dropout"), [("bypass", 0.0), ("bypass", 0.1), ("peft", 0.1)])
def test_checkpointed_training_follows_the_same_trajectory(tokenizer, placement, dropout):
    base = {"data": "longcontext", "length": 24, "epochs": 6, "lr": 5e-2, "placement": placement, "dropout": dropout}
    configs = [ProbeConfig(**base, rank=r, seed=s) for r, s in [(2, 0), (4, 1)]]
    plain, plain_curves = trained(tokenizer, configs, checkpoint_layers=False)
    recomputed, recomputed_curves = trained(tokenizer, configs, checkpoint_layers=True)
    assert recomputed_curves == plain_curves
    for got, want in zip(recomputed, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_checkpointed_layers_run_again_in_backward_and_are_restored(tokenizer):
    loaded = build_tiny_model(tokenizer)
    model, layers = loaded.model, decoder_layers(loaded.model)
    calls = [0] * len(layers)
    for i in range(len(layers)):  # the MLP runs inside the layer's forward, so also in its recompute
        layer_mlp(model, i).register_forward_pre_hook(lambda module, args, i=i: calls.__setitem__(i, calls[i] + 1))
    embeddings = model.get_input_embeddings()(torch.tensor([[1, 2, 3, 4]])).detach().requires_grad_()
    with checkpointed_layers(model, 1):
        out = model(inputs_embeds=embeddings).logits
    out.sum().backward()
    assert calls == [1] + [2] * (len(layers) - 1), "layers from 1 up recompute in backward, layer 0 does not"
    assert all("forward" not in vars(layer) for layer in layers)


def test_a_probe_records_nothing_different_with_checkpointing(tokenizer, same_result):
    base = {"data": "longcontext", "length": 24, "epochs": 8, "lr": 5e-2}
    plain = run_probes([ProbeConfig(**base, rank=4)], build_tiny_model(tokenizer))
    recomputed = run_probes([ProbeConfig(**base, rank=4, checkpoint_layers=True)], build_tiny_model(tokenizer))
    same_result(recomputed[0], plain[0])
