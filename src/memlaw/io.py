"""Writing files so that an interrupted run never leaves a half-written one behind."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from memlaw.errors import MemlawInputError


def whole(value: float) -> float | int:
    """``value`` as an int when it is a whole number: counts (ranks, tokens, steps, parameters)
    are written to JSON and CSV as integers, which other tools and ``--rank`` accept."""
    value = float(value)
    return int(value) if value.is_integer() else value


def check_input_file(path: str | Path, missing: str) -> Path:
    """``path`` if it is a regular file; else one clear error (``missing`` says what to give when
    absent). Devices and FIFOs are refused: reading them would block or read nothing."""
    source = Path(path)
    if source.is_dir():
        raise MemlawInputError(f"{source} is a folder, not a file: give a file inside it")
    if source.exists() and not source.is_file():
        raise MemlawInputError(f"{source} is not a regular file (a device, FIFO or socket): give a file")
    if not source.is_file():
        raise MemlawInputError(f"{missing}: {source}")
    return source


def read_user_text(path: str | Path, missing: str) -> str:
    """A user's UTF-8 file, or one clear error: ``missing`` says what to give when it is absent.
    A leading byte-order mark (spreadsheets write one) is dropped."""
    source = check_input_file(path, missing)
    try:
        return source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise MemlawInputError(f"{source} is not UTF-8 text ({err.reason} at byte {err.start})") from err


def output_mode(target: Path, *, folder: bool = False) -> int:
    """The permissions an output gets: an existing file's own, else what the user's umask gives a
    new file or folder (temporary files start private, 0600, and would otherwise keep that)."""
    if target.is_file():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


def write_json_atomic(path: str | Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename it over ``path``."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as err:
        raise MemlawInputError(f"cannot write {target}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, output_mode(target))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_dir_atomic(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Let ``fill`` write into a staging folder beside ``path``, then move it into place.

    ``path`` must not exist or be empty, so nothing a user kept there is ever replaced.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as err:
        raise MemlawInputError(f"cannot write {target}: {err.strerror or err}") from err
    try:
        fill(staging)
        staging.chmod(output_mode(target, folder=True))
        if target.exists():
            target.rmdir()  # fails (loudly) unless empty
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


Place = tuple[str, "str | Path | None"]


def check_outputs(*, files: Iterable[Place] = (), folders: Iterable[Place] = (), inputs: Iterable[Place] = ()) -> None:
    """Every output of a command checked before any work, by one rule.

    ``files`` and ``folders`` are (flag, path) pairs, None where the flag was not given. An
    output file may exist: it is replaced whole, keeping its permissions, and stderr says so.
    An output folder must be new or empty, so nothing a user kept is replaced. No output may be
    the place of another, lie inside an output folder, or be one of the command's ``inputs``.
    """
    files = [(flag, Path(path)) for flag, path in files if path is not None]
    folders = [(flag, Path(path)) for flag, path in folders if path is not None]
    for flag, folder in folders:
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise MemlawInputError(f"{flag} {folder} already exists and is not an empty folder: choose a new folder")
        _check_writable(folder, flag)
    for flag, target in files:
        if target.is_dir():
            raise MemlawInputError(f"{flag} {target} is a folder: give a file name")
        _check_writable(target, flag)
    outputs = [(flag, path.resolve()) for flag, path in (*files, *folders)]
    for index, (flag, place) in enumerate(outputs):
        for other_flag, other in outputs[index + 1 :]:
            if place == other:
                raise MemlawInputError(f"{flag} and {other_flag} name the same place ({place}): give them apart")
        for other_flag, other in outputs:
            if other in place.parents:
                raise MemlawInputError(f"{flag} {place} lies inside {other_flag} {other}: give outputs apart")
        for input_flag, source in inputs:
            if source is not None and Path(source).resolve() == place:
                raise MemlawInputError(f"{flag} {place} is also {input_flag}, which it would overwrite: give another")
    for flag, target in files:
        if target.exists():
            print(f"memlaw: {flag} {target} exists: it will be replaced", file=sys.stderr)


def _check_writable(target: Path, flag: str) -> None:
    """Refuse an output where nothing can be written, trying a file in its nearest existing
    folder: permission bits do not tell (root, read-only or virtual file systems)."""
    parent = next((place for place in (target.parent, *target.parent.parents) if place.exists()), Path("."))
    try:
        descriptor, probe = tempfile.mkstemp(dir=parent, prefix=".memlaw-check-")
    except OSError:
        raise MemlawInputError(f"{flag} {target}: cannot write in {parent}") from None
    os.close(descriptor)
    os.unlink(probe)
