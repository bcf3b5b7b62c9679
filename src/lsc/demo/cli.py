"""`lsc demo`: serve the Gradio page (gradio comes with the optional `demo` extra)."""

from __future__ import annotations

from typing import Optional

import typer


def check_port(host: str, port: int) -> None:
    """A port from 1 to 65535 that is free on `host`: one line, before gradio loads (its own error is a traceback)."""
    import socket

    from lsc.errors import ConfigError

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be from 1 to 65535 (got {port})")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def register(app: typer.Typer, panel: str | None = None) -> None:
    """Add `lsc demo` to the main `lsc` app."""

    @app.command("demo", rich_help_panel=panel)
    def demo_cmd(
        backend: str = typer.Option("world", "--backend", help="world (embedded, CPU) or hf (the papers' models)"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default: this machine only)"),
        port: Optional[int] = typer.Option(None, "--port", help="port (default: Gradio's, 7860 or the next free)"),
        share: bool = typer.Option(False, "--share", help="also open a public Gradio share link"),
        concurrency: int = typer.Option(1, "--concurrency", min=1, help="generations run at once; others queue"),
        max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", min=0.01, help="largest upload, in MB"),
        max_pixels: int = typer.Option(4096 * 4096, "--max-pixels", min=64, help="largest upload, in pixels"),
        step_delay: float = typer.Option(0.25, "--step-delay", min=0.0, help="seconds per step when revealing a run"),
    ) -> None:
        """Watch a transmission in the browser: pick a scene or upload an image, choose schemes and channel, send."""
        from lsc.errors import ConfigError

        if backend not in ("world", "hf"):
            raise ConfigError(f"--backend: choose world or hf, not {backend!r}")
        if port is not None:
            check_port(host, port)
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise ConfigError("lsc demo needs gradio: pip install -e '.[demo]'") from None
        from lsc.demo.app import launch

        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"warning: serving on {host}: anyone who can reach it can run generations", err=True)
        import signal
        import sys

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stopped server cleans up its run folders too
        _, demo = launch(backend, host, port, share, concurrency, max_upload_mb, max_pixels, step_delay)
        demo.close()
