"""Memory as an account: what an adapter holds (its item store), and cycles that add content to it.

``memlaw train --out DIR`` saves with the adapter the items it memorised, as written and as
encoded, with their certification (recall.json). A later cycle (``train_into``) trains what DIR
holds plus a new file under the replay rule (``Replay``): a held item costs nothing while its
tokens stay above p 0.5, and trains like a new item once one of them slips.
"""

from memlaw.memory.account import AdapterMemory, HeldItem, read_settings
from memlaw.memory.cycle import CycleReport, save_trained, train_into
from memlaw.memory.replay import Replay

__all__ = ["AdapterMemory", "CycleReport", "HeldItem", "Replay", "read_settings", "save_trained", "train_into"]
