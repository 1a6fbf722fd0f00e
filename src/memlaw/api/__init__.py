"""memlaw from Python, one import and four verbs: ``load_law``, ``plan``, ``train``, ``calibrate``.

The command line is argument parsing and printing over these (docs/api.md). Nothing here
imports torch until a verb needs a model.
"""

from memlaw.api.calibrate import calibrate
from memlaw.api.plan import DEFAULT_CONFIDENCE, Plan, load_law, plan
from memlaw.api.train import TRAIN_DEFAULTS, train

__all__ = ["DEFAULT_CONFIDENCE", "TRAIN_DEFAULTS", "Plan", "calibrate", "load_law", "plan", "train"]
