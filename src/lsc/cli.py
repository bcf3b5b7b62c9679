"""The `lsc` command: a thin layer over the Python API.

Each area registers its own sub-commands from its own module (`lsc.<area>.cli`) so that one module
keeps one job; this file only assembles them and turns known errors into one-line messages.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


def _flags_show_no_type() -> None:
    """typer 0.29 labels every flag `<bool>` in --help, --help itself included; a flag takes no value, so
    show none (options with values keep their `<int>`, `<float>`, `<path>`)."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_lsc_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        return None if self.is_flag or self.count else shown(self, ctx)  # type: ignore[arg-type]

    display_type_rich._lsc_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("lsc")
        except PackageNotFoundError:  # a source checkout on PYTHONPATH, not installed
            from lsc import __version__ as number
        typer.echo(f"lsc {number}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print lsc's version and exit."),
) -> None:
    """Language-oriented semantic communication (lsc): Alice sends a caption word by word, Bob redraws the
    image after each word; lsc measures how fast each word order gets close. Start with
    `lsc run configs/examples/quick.yaml` (about a minute on a laptop CPU)."""


# Each module has a function `register(app, panel)` that adds its commands under `panel`, the task heading
# `lsc --help` lists them by (panels appear in the order commands are added).
_COMMAND_MODULES = [
    ("lsc.runner.cli", "Run and read studies"),  # run, report, export, compare, schemes
    ("lsc.runner.doctor", "Run and read studies"),  # doctor (can the study run here?)
    ("lsc.report.cli", "Run and read studies"),  # plot, table
    ("lsc.language.cli", "Inspect language and channel"),  # parse, synonyms, skd
    ("lsc.channel.cli", "Inspect language and channel"),  # channel ber / send
    ("lsc.backends.world.cli", "World models"),  # world train / eval / calibrate / sample
    ("lsc.demo.cli", "Demo"),  # demo (the Gradio page; gradio is imported only when it runs)
]


for _name, _panel in _COMMAND_MODULES:
    importlib.import_module(_name).register(app, _panel)


def main() -> None:
    """Entry point: run the app; errors the user can fix (a bad value, a mistyped option) become one line
    and exit code 2; a study with no successful transmission exits 1 (`lsc run`)."""
    import warnings

    from lsc.errors import LscError, LscWarning, one_line

    previous = warnings.showwarning

    def _show(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        if issubclass(category, LscWarning):
            typer.echo(f"warning: {' '.join(str(message).split())}", err=True)
        else:
            previous(message, category, *args, **kwargs)  # type: ignore[arg-type]

    warnings.showwarning = _show
    try:
        code = app(standalone_mode=False)
    except LscError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # click's exceptions, by name: typer >= 0.20 ships its own copy of click
        kinds = {c.__name__ for c in type(exc).__mro__}
        if "NoArgsIsHelpError" in kinds:
            app(standalone_mode=True)  # `lsc` alone: typer's help, as always
        if "UsageError" in kinds:
            typer.echo(f"error: {usage_line(exc)}", err=True)
            sys.exit(2)
        if "ClickException" in kinds:
            typer.echo(f"error: {one_line(exc.format_message())}", err=True)  # type: ignore[attr-defined]
            sys.exit(int(getattr(exc, "exit_code", 1)))
        if "Abort" in kinds:
            typer.echo("error: interrupted", err=True)
            sys.exit(130)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)


def usage_line(exc: Exception) -> str:
    """A usage error (unknown option, a value of the wrong type) as the one line every bad input gets,
    instead of typer's multi-line box."""
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"{' '.join(exc.format_message().split())}{where}"  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
