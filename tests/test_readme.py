"""Every command the README shows runs as written: each parses, the cheap ones run, and every
link to a file in the repository leads somewhere."""

import re
import shlex
from pathlib import Path

import pytest

from memlaw.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def memlaw_commands() -> list[list[str]]:
    """``memlaw ...`` lines of the bash blocks and the ``$ memlaw ...`` lines of transcripts."""
    lines = [line for block in blocks("bash") for line in block.splitlines()]
    lines += [line[2:] for block in blocks("") for line in block.splitlines() if line.startswith("$ memlaw ")]
    return [shlex.split(line, comments=True) for line in lines if line.startswith("memlaw ")]


COMMANDS = memlaw_commands()
#: Commands that need no model and no training: they run in the test.
CHEAP = [words for words in COMMANDS if words[1] == "plan" and "--data" not in words]


def test_the_readme_is_one_screen_with_the_quick_start_near_the_top():
    lines = README.splitlines()
    assert len(lines) <= 250
    assert any(line.startswith("## Quick start") for line in lines[:60])
    assert len(COMMANDS) >= 10 and len(CHEAP) >= 2


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_readme_command_parses(words):
    args = build_parser().parse_args(words[1:])
    assert callable(args.run)


@pytest.mark.parametrize("words", CHEAP, ids=" ".join)
def test_the_cheap_readme_commands_run(words, cli):
    code, out, err = cli(*words[1:])
    assert code == 0, err
    assert out.startswith("planned to certify recall") or "rank" in out


def test_the_readme_make_targets_exist_and_its_python_compiles():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in re.findall(r"^make (\w+)", "\n".join(blocks("bash")), flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
    for block in blocks("python"):
        compile(block, "README.md", "exec")


def test_every_link_in_the_readme_and_docs_leads_to_a_file():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}"
