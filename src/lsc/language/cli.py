"""`lsc parse`, `lsc synonyms`, `lsc skd`: inspect what the language side does to a caption."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import typer

from lsc.errors import ConfigError
from lsc.limits import check_text, load_json


def _load_examples(path: Path) -> list[tuple[str, str]]:
    """A JSON list of [alice, bob] pairs."""
    if not path.exists():
        raise ConfigError(f"examples file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"examples file {path} is not a file")
    try:
        data = load_json(path.read_text(encoding="utf-8"), f"examples file {path}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"examples file {path} is not JSON: {exc.msg} (line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"examples file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"examples file {path} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(data, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in data
    ):
        raise ConfigError(f"examples file {path} must be a JSON list of [alice, bob] string pairs")
    return [(a, b) for a, b in data]


def study_skd(backend: str) -> tuple[list[tuple[str, str]], str | None]:
    """The SKD examples and style translator a study on `backend` gives its schemes ('builtin': lsc's
    photo-caption examples and no translator).

    Why: `lsc skd` must rewrite as a study does, and a study's schemes learn from the backend's pairs.
    """
    if backend == "builtin":
        return [], None
    from lsc.runner.worker import get_backend

    loaded = get_backend(backend, {})
    return list(loaded.skd_examples), loaded.skd_translator


def register(app: typer.Typer, panel: str | None = None) -> None:
    """Add the language commands to the main `lsc` app."""

    @app.command("parse", rich_help_panel=panel)
    def parse_cmd(
        caption: str = typer.Argument(..., help="caption to parse (whitespace words)"),
        heads: str = typer.Option("spacy", help="head style: spacy (default) or ud (CoreNLP-like)"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Parts of speech and dependency heads of each caption word."""
        from lsc.language.parse import analyze, model_name

        words = check_text(caption, "the caption").split()
        if not words:
            raise ConfigError("the caption is empty")
        infos = analyze(words, heads=heads)  # type: ignore[arg-type]
        if as_json:
            out = {
                "model": model_name(),
                "heads_style": heads,
                "words": [i.__dict__ for i in infos],
                "heads": [i.word for i in infos if i.is_head],
                "nouns": [i.word for i in infos if i.is_noun],
            }
            typer.echo(json.dumps(out, indent=2))
            return
        for n, i in enumerate(infos):
            mark = "H" if i.is_head else " "
            gov = "-" if i.head_index is None else str(i.head_index)
            typer.echo(f"{n:>2} {mark} {i.word:<16} {i.pos:<6} {i.tag:<5} <- {gov}")
        typer.echo("heads: " + " ".join(i.word for i in infos if i.is_head))

    @app.command("synonyms", rich_help_panel=panel)
    def synonyms_cmd(
        word: str = typer.Argument(..., help="a single word"),
        pos: Optional[str] = typer.Option(None, help="noun, verb, adj, adv (or a Penn/UD tag)"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Synonyms by part of speech (WordNet, or the built-in table when WordNet is missing)."""
        from lsc.language.synonyms import WordNetMissingWarning, synonyms

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", WordNetMissingWarning)
            res = synonyms(word, pos)
        for w in caught:
            typer.echo(f"warning: {w.message}", err=True)
        if as_json:
            typer.echo(json.dumps({"word": word, "source": res.source, "by_pos": res.by_pos}, indent=2))
            return
        typer.echo(f"source: {res.source}")
        for p, items in res.by_pos.items():
            typer.echo(f"{p}: {', '.join(items)}")
        if not res.by_pos:
            typer.echo("(no synonyms)")

    @app.command("skd", rich_help_panel=panel)
    def skd_cmd(
        caption: str = typer.Argument(..., help="Alice's caption"),
        engine: str = typer.Option("auto", help="auto (the backend's style translator, else lexicon) | lexicon | seq2seq | "
                                                "transformers | openai"),
        translator: Optional[Path] = typer.Option(None, help="seq2seq: a style translator file (default: the backend's)"),
        examples: Optional[Path] = typer.Option(None, help="JSON list of [alice, bob] example pairs"),
        model_id: Optional[str] = typer.Option(None, help="transformers: model id or local folder"),
        base_url: Optional[str] = typer.Option(None, help="openai: endpoint root, e.g. http://localhost:8000/v1"),
        model: Optional[str] = typer.Option(None, help="openai: model name"),
        api_key_env: Optional[str] = typer.Option(None, help="openai: environment variable holding the key"),
        backend: str = typer.Option("world", "--backend",
                                    help="without --examples, use this backend's examples, as a study on it "
                                         "does ('builtin': lsc's photo-caption examples)"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Rewrite a caption in Bob's style (semantic knowledge distillation)."""
        from lsc.language.skd import ENGINES, make_skd

        if not check_text(caption, "the caption").split():
            raise ConfigError("the caption is empty")
        cfg: dict[str, object] = {"engine": engine}
        for key, value in (("model_id", model_id), ("base_url", base_url), ("model", model), ("api_key_env", api_key_env)):
            if value is not None:
                cfg[key] = value
        if engine not in ("auto", *ENGINES):
            raise ConfigError(f"unknown SKD engine {engine!r}; use auto, {', '.join(ENGINES)}")
        if translator is not None:
            cfg["translator"] = str(translator)
        # Examples given: learn from them (the backend's translator was not trained on them).
        pairs, own_translator = (_load_examples(examples), None) if examples else study_skd(backend)
        result = make_skd(cfg, own_translator).rewrite(caption, pairs)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
            return
        typer.echo(result.text)
        typer.echo(f"({'kept' if result.kept else 'original kept'}: {result.reason})", err=True)
