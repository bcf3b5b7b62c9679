"""The `lsc` command: a thin layer over the Python API.

Each area registers its own sub-commands from its own module (`lsc.<area>.cli`) so that one module
keeps one job; this file only assembles them and turns known errors into one-line messages.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Language-oriented semantic communication (lsc).")

# Each module has a function `register(app)` that adds its commands.
_COMMAND_MODULES = [
    "lsc.runner.cli",  # run, report, export, schemes
    "lsc.report.cli",  # plot, table
    "lsc.backends.world.cli",  # world train / eval / sample
    "lsc.language.cli",  # parse, synonyms, skd
    "lsc.channel.cli",  # channel ber
    "lsc.demo.cli",  # demo (the Gradio page; gradio is imported only when it runs)
]

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Entry point: run the app; errors the user can fix become one line and exit code 2."""
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
