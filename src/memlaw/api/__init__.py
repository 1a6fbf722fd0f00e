"""memlaw from Python, one import and five verbs: ``load_law``, ``plan``, ``train``, ``room``, ``calibrate``.

The command line is argument parsing and printing over these (docs/api.md). Nothing here
imports torch until a verb needs a model.
"""

from memlaw.api.calibrate import calibrate
from memlaw.api.plan import DEFAULT_CONFIDENCE, Plan, load_law, plan
from memlaw.api.room import Room, room
from memlaw.api.train import TRAIN_DEFAULTS, train

__all__ = ["DEFAULT_CONFIDENCE", "TRAIN_DEFAULTS", "Plan", "Room", "calibrate", "load_law", "plan", "room", "train"]
