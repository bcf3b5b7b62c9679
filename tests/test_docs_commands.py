"""Every `lsc ...` command README.md and docs/ show parses with today's command line: each word is a
command, each option exists and takes the value shown (types included), and a study file they run
exists and validates. Nothing runs: the parse is click's own, without invoking the command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# A shown command stops at a shell operator; `.venv/bin/lsc` is the same command.
_STOP = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}
# An inline mention that is a synopsis rather than a command: optional parts in brackets, repetition dots.
_SYNOPSIS = re.compile(r"\[|\.\.\.|…|<")


def shown_commands(text: str) -> list[tuple[str, bool]]:
    """`lsc` command lines of a markdown text, each with whether it is complete: a line of a fenced code block
    (continuations joined) is a command to paste; inline code may name a command and some of its options."""
    found: list[tuple[str, bool]] = []
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            found += [(c, True) for c in _commands_in(line)]
    outside = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    for span in re.findall(r"`([^`\n]+)`", outside):
        if not _SYNOPSIS.search(span):
            found += [(c, False) for c in _commands_in(span) if c]
    return found


def _commands_in(line: str) -> list[str]:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return []
    commands, current = [], None
    for word in words:
        if word in _STOP:
            if current:
                commands.append(current)
            current = None
        elif current is not None:
            current.append(word)
        elif word in ("lsc", ".venv/bin/lsc"):
            current = []
    if current is not None:
        commands.append(current)
    return [shlex.join(c) for c in commands]


def parse(args: list[str]) -> tuple[Any, dict[str, Any]]:
    """Resolve `lsc ARGS` to its command and parsed parameters as click would, without running it."""
    from lsc.cli import app

    command = typer.main.get_command(app)
    ctx = command.make_context("lsc", list(args), resilient_parsing=False)
    while hasattr(command, "resolve_command"):
        # the sub-command's name and what follows it (click keeps the name apart, as "protected" args)
        rest = [*(getattr(ctx, "protected_args", None) or getattr(ctx, "_protected_args", [])), *ctx.args]
        if not rest:
            break
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return command, ctx.params


def _all_shown() -> list[tuple[str, str, bool]]:
    return [(path.relative_to(REPO).as_posix(), cmd, complete) for path in DOCS
            for cmd, complete in shown_commands(path.read_text("utf-8"))]


def test_the_docs_show_commands() -> None:
    shown = _all_shown()
    assert len(shown) > 30
    readme = [c for p, c, complete in shown if p == "README.md" and complete]
    assert "run" in readme and "run configs/examples/quick.yaml" in readme


# What an inline mention may leave out: the arguments of the command it names.
_INCOMPLETE = ("MissingParameter", "requires an argument")


@pytest.mark.parametrize("where,command,complete", _all_shown())
def test_shown_command_parses(where: str, command: str, complete: bool) -> None:
    from lsc.config import load_config

    args = shlex.split(command)
    if "--help" in args:
        args.remove("--help")  # parsed like the rest; --help itself would print and exit
    if not args:
        return  # `lsc --help`: the top-level help
    try:
        cmd, params = parse(args)
    except typer.Exit:
        return  # an eager option that answers and exits (--version)
    except Exception as exc:  # noqa: BLE001 - the message names the mistake
        kinds = " ".join(c.__name__ for c in type(exc).__mro__) + " " + str(exc)
        if complete or not any(k in kinds for k in _INCOMPLETE):
            pytest.fail(f"{where}: `lsc {command}` does not parse: {exc}")
        return
    if cmd.name == "run" and params.get("config") is not None and (REPO / params["config"]).is_file():
        load_config(REPO / params["config"], list(params.get("set_") or []))  # the study file validates


def test_a_wrong_command_is_caught() -> None:
    for bad in (["run", "--sets", "x=1"], ["channel", "ber", "--snr-db", "loud"], ["wrld", "eval"]):
        with pytest.raises(Exception):
            parse(bad)
    assert shown_commands("run `lsc report RUN [--strips N]` or `lsc report --quiet`\n```\nlsc export RUN --format csv # all\n"
                          "```\n") == [("export RUN --format csv", True), ("report --quiet", False)]
