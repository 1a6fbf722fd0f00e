"""Where laws live: the calibrated laws shipped with memlaw, and the ones ``memlaw calibrate``
writes. ``memlaw plan --model M`` looks in the user's folder first, then in the package.

The user's folder is ``$MEMLAW_HOME/laws`` (default ``~/.local/share/memlaw/laws``, or under
``$XDG_DATA_HOME``); the track record of verified plans lives beside it.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

from memlaw.errors import MemlawInputError
from memlaw.io import read_user_text
from memlaw.law.fit import MemoryLaw

#: Package holding the shipped laws.
PACKAGED_LAWS = "memlaw.laws"


def memlaw_home() -> Path:
    """memlaw's own data folder: calibrated laws and the track record of verified plans."""
    if os.environ.get("MEMLAW_HOME"):
        return Path(os.environ["MEMLAW_HOME"])
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "memlaw"


def law_file_name(model: str) -> str:
    """The file name of a model's law: its name (hub id, folder or GGUF path) made file-safe."""
    slug = re.sub(r"[^a-z0-9._-]+", "--", model.lower()).strip("-.")
    return f"{slug or 'model'}.json"


def user_law_path(model: str) -> Path:
    return memlaw_home() / "laws" / law_file_name(model)


def find_law(model: str) -> tuple[MemoryLaw, str]:
    """The law calibrated for ``model`` (the user's own first, then the packaged one) and where it came from."""
    user = user_law_path(model)
    if user.is_file():
        return load_law(user), str(user)
    packaged = resources.files(PACKAGED_LAWS).joinpath(law_file_name(model))
    if packaged.is_file():
        return law_from_text(packaged.read_text(encoding="utf-8"), f"packaged law {law_file_name(model)}"), (
            f"the law packaged with memlaw for {model}"
        )
    raise MemlawInputError(
        f"no calibrated law for model {model!r}: run memlaw calibrate --model {model}, or pass --law FILE "
        "(written by memlaw fit --out)"
    )


def load_law(path: str | Path) -> MemoryLaw:
    text = read_user_text(path, "no such law file (write one with memlaw fit --out)")
    return law_from_text(text, str(path))


def law_from_text(text: str, where: str) -> MemoryLaw:
    try:
        return MemoryLaw.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise MemlawInputError(f"{where} is not a law written by memlaw fit ({type(err).__name__}: {err})") from err
