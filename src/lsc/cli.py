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

    from lsc.errors import LscError, LscWarning

    previous = warnings.showwarning

    def _show(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        if issubclass(category, LscWarning):
            typer.echo(f"warning: {' '.join(str(message).split())}", err=True)
        else:
            previous(message, category, *args, **kwargs)  # type: ignore[arg-type]

    warnings.showwarning = _show
    try:
        app(standalone_mode=True)
    except LscError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
