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
