"""Shared test fixtures."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable

import pytest


@pytest.fixture
def wordnet() -> None:
    """Skip a test that needs WordNet where it is not installed (in CI, where it must be, fail instead)."""
    from lsc.language import synonyms as syn

    if syn.wordnet_available():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("WordNet is not installed in CI: scripts/install_wordnet.sh should have installed it")
    pytest.skip("WordNet not installed (run scripts/install_wordnet.sh)")


@dataclass
class CliResult:
    """What `lsc ARGS` printed and its exit code, as subprocess.CompletedProcess names them."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def lsc_main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run `lsc ARGS` in this process through the real entry point (`lsc.cli.main`: one-line errors, exit 2),
    without the second or so of interpreter start-up a subprocess costs per case."""
    import warnings

    from lsc.cli import main

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() replaces it; undone afterwards

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["lsc", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run
