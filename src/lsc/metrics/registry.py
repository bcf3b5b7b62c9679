"""Step metrics beyond LPIPS: a small registry, the one owner of what each metric is and of its columns.

A step metric has a name, what it needs (the backend, scene ground truth, packages), its cost per step,
the columns it writes, and a `compute` that takes a batch of steps (Bob's image, the original caption,
the scene's truth) and returns one dict of named values per step. Adding a metric is one
`register(StepMetric(...))`, before `lsc.runner.rows` is imported, or an installed package's entry point
in group `lsc.metrics` (lsc.plugins; registered when this module loads, docs/extending.md): its columns
then exist in every results.sqlite (`lsc.protocol.loop.StepRecord.metrics`), export and Parquet file.

When they are computed (`due_steps`): the study runner scores each transmission as it finishes, for the
study's `metrics:` (unset: `defaults(backend)`, attributes and recaption on the world) at every
`metrics_every`-th step (0, k, 2k, ...) and always at the last step; a cheap metric (`every_step`, e.g.
attributes) at every step. The store keeps the values per step; `lsc report` reads them and computes at
report time only what the store lacks (run folders written before, or metrics the study did not record),
on the steps the same rule makes due. The runner scores Bob's image as its PNG stores it
(`lsc.runner.folder.stored_pixels`), so a value is the same whether the runner or the report computed it.

Built in (world backend unless said):
- `attributes` (every step): the attribute classifier reads Bob's image and is compared with the scene's
  truth (background, object count, slots, and per object colour / shape / size): accuracy per attribute,
  their mean, and `attr_all_right` (every attribute right); `first_all_right` of those is the summary's
  `words_to_all_right`. Cost: one classifier pass per image (about 1.5 ms on a CPU).
- `recaption` (world and hf): Alice re-captions Bob's image (column `recaption`, the text); BLEU-4
  (sacrebleu, sentence-level, exponential smoothing), ROUGE-L F (rouge-score), METEOR (nltk, needs WordNet;
  empty without it) and CIDEr-D (here) against her original caption. CIDEr-D's document frequencies are
  over the study's captions (`study_corpus`), so the runner fills `cider_d` once its transmissions are
  all stored (`finish_corpus`). Cost: one greedy decode of her captioner per image (about 20 ms on a
  CPU with the scores), and once per process WordNet for METEOR (seconds, ~180 MB).
- `bertscore`: BERTScore F1 (torchmetrics) of the same re-caption; any backend with a captioner, a local
  BERT-style model named by LSC_BERTSCORE_MODEL.
- `clip_score` (hf): CLIPScore of (Bob's image, the caption), see below.
- `itm`: Alice's image-text match of (Bob's image, her original caption): the geometric-mean probability
  per token her captioner gives that caption on Bob's image, in (0, 1]. Cost: one teacher-forced pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from lsc.errors import ConfigError
from lsc.plugins import Registry


@dataclass
class StepBatch:
    """What a step metric may read: Bob's images (B, H, W, 3) in [0, 1], per step the original caption
    and the scene's ground truth (None where the images have none), and the run's configuration.

    `corpus`: every caption of the study (`study_corpus`), for corpus-level scores (CIDEr-D's document
    frequencies); None leaves those out. `backend`: the loaded backend when the study runner scores (its
    captioner re-captions), None at report time (the metric loads what it needs from `config`).
    `cache["recaptions"]` may hold re-captions already known (the store's), None where not.
    """

    images: np.ndarray
    captions: list[str]
    truths: list[dict[str, Any] | None]
    config: dict[str, Any]
    cache: dict[str, Any] = field(default_factory=dict)  # shared by the metrics of one batch (e.g. re-captions)
    corpus: list[str] | None = None
    backend: Any = None


@dataclass(frozen=True)
class StepMetric:
    """A step metric: its stored columns are `columns` (REAL, higher is better for each) then `texts` (TEXT).

    `optional`: columns that may stay empty where computed (METEOR without WordNet); `corpus`: columns
    computed only with the study's corpus (StepBatch.corpus), filled by `finish_corpus` after the study;
    `every_step`: cheap enough to score at every step, not only the due ones; `discrete`: its values are
    decisions (class labels, greedy words) that do not move with a batch's float rounding, so the runner
    may cache them across the schemes of a source image and batch what is new; any other metric is scored
    on exactly a transmission's due steps in one batch, so its values never depend on what ran before
    (e.g. after a resume); `packages`: modules it imports.
    """

    name: str
    needs: str  # one line: what it needs (backend, ground truth, packages)
    cost: str  # one line: its cost per step
    columns: tuple[str, ...]  # the values it returns per step (higher is better for each)
    compute: Callable[[StepBatch], list[dict[str, Any]]]
    backends: tuple[str, ...] = ("world",)  # the backends it runs on; ("*",): any
    texts: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    corpus: tuple[str, ...] = ()
    every_step: bool = False
    discrete: bool = False
    packages: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        """The columns a step scored by this metric has (its values count as stored when all are there)."""
        return tuple(c for c in (*self.columns, *self.texts) if c not in self.optional)


REGISTRY: dict[str, StepMetric] = {}
STORED = ("lpips", "ssim", "psnr")  # computed by every study and stored in its rows; valid in `metrics:` too
DEFAULTS = ("attributes", "recaption")  # recorded by a study without `metrics:`, where its backend allows
EVERY = 4  # a study's `metrics_every` unless set: every 4th step (and always the last)


def _as_metric(obj: Any, target: str) -> StepMetric:
    """A metric plugin is a `StepMetric` (its name the name it is declared by); else one ConfigError line."""
    if not isinstance(obj, StepMetric):
        raise ConfigError(f"step metric {target!r} is not a lsc.metrics.registry.StepMetric but a {type(obj).__name__}")
    return obj


# The one registry of lsc.plugins serves metrics too: lsc's own register here; installed packages declare
# theirs as entry points of group lsc.metrics, loaded when this module is (below), so their columns are in
# every store's steps table like the built-ins'.
METRICS: Registry[StepMetric] = Registry("metric", _as_metric)


def register(metric: StepMetric) -> StepMetric:
    """Make a step metric (and its columns) known; lsc's own metrics and installed plugins come through here."""
    REGISTRY[metric.name] = metric
    if metric.name not in METRICS.plugin_names():
        METRICS.add(metric.name, metric)
    return metric


def register_installed() -> None:
    """Register the step metrics of installed packages (entry points of group lsc.metrics)."""
    for name in METRICS.plugin_names():
        metric = METRICS.get(name)
        if metric.name != name:
            raise ConfigError(f"step metric entry point {name!r} names a StepMetric called {metric.name!r}; "
                              "the two must be the same")
        REGISTRY[name] = metric


def select(names: Sequence[str], backend: str) -> list[StepMetric]:
    """The named metrics, refusing an unknown name, one the backend cannot compute, or one whose packages
    are missing, with one line."""
    from importlib.util import find_spec

    out = []
    for name in names:
        if name in STORED:
            continue
        if name not in REGISTRY:
            hint = (" (a step metric plugin is an installed package's entry point in group lsc.metrics, not an import "
                    "path: its columns must exist before a store opens; see docs/extending.md)") if ":" in name else ""
            raise ConfigError(f"unknown step metric {name!r} (known: {', '.join(sorted((*REGISTRY, *STORED)))}){hint}")
        metric = REGISTRY[name]
        if "*" not in metric.backends and backend not in metric.backends:
            raise ConfigError(f"step metric {name!r} needs the {' or '.join(metric.backends)} backend, not {backend!r}")
        missing = [p for p in metric.packages if find_spec(p) is None]
        if missing:
            raise ConfigError(f"step metric {name!r} needs the Python package {missing[0]!r}, which is not installed "
                              "(pip install -e . installs sacrebleu and rouge-score; '.[metrics]' torchmetrics, "
                              "'.[hf]' transformers)")
        if metric not in out:
            out.append(metric)
    return out


def defaults(backend: str) -> list[str]:
    """The step metrics a study records unless its `metrics:` says: DEFAULTS that the backend allows."""
    return [n for n in DEFAULTS if backend in REGISTRY[n].backends or "*" in REGISTRY[n].backends]


def due_steps(metric: StepMetric, n_steps: int, every: int) -> list[int]:
    """The steps (of 0..n_steps-1) a metric is scored at: all for an `every_step` metric, else every
    `every`-th step from 0 and the last step (the image after the last word is always scored)."""
    if n_steps <= 0:
        return []
    if metric.every_step:
        return list(range(n_steps))
    return sorted({*range(0, n_steps, max(1, int(every))), n_steps - 1})


def stored_columns() -> list[tuple[str, type]]:
    """Every registered metric's columns and their types (float, then str for texts), in registration
    order: the step metric columns of results.sqlite and the export (lsc.runner.rows)."""
    out: dict[str, type] = {}
    for metric in REGISTRY.values():
        out.update((c, float) for c in metric.columns if c not in out)
        out.update((c, str) for c in metric.texts if c not in out)
    return list(out.items())


def text_columns() -> set[str]:
    """The stored columns that hold text (Alice's re-caption), not numbers."""
    return {c for m in REGISTRY.values() for c in m.texts}


def stored_values(metric: StepMetric, row: dict[str, Any]) -> dict[str, Any]:
    """A stored step row's values of a metric (its columns that are not empty)."""
    return {c: row[c] for c in (*metric.columns, *metric.texts) if row.get(c) is not None}


def is_scored(metric: StepMetric, values: dict[str, Any]) -> bool:
    """Whether a step's values hold the metric (every required column present)."""
    return bool(metric.required) and all(values.get(c) is not None for c in metric.required)


def first_all_right(curve: Sequence[dict[str, Any]]) -> int | None:
    """Words until every attribute is right: the first step whose image has them all (attr_all_right 1),
    None if none has (or the attributes were not scored)."""
    return next((k for k, v in enumerate(curve) if v.get("attr_all_right") == 1.0), None)


def study_corpus(captions: Iterable[str | None]) -> list[str]:
    """The study's captions as a corpus for document frequencies: each distinct caption once, sorted."""
    return sorted({c for c in captions if c})


def finish_corpus(metrics: Sequence[StepMetric], captions: Sequence[str], values: Sequence[dict[str, Any]],
                  corpus: list[str]) -> list[dict[str, Any]]:
    """The corpus columns of stored steps, from what each step stored (the re-caption) and the study's
    corpus: one dict per step (empty where a step has nothing to score)."""
    out: list[dict[str, Any]] = [{} for _ in values]
    if any(m.name == "recaption" for m in metrics):
        idx = [i for i, v in enumerate(values) if v.get("recaption") is not None]
        scores = cider_d([captions[i] for i in idx], [str(values[i]["recaption"]) for i in idx], corpus=corpus)
        for i, c in zip(idx, scores):
            out[i]["cider_d"] = c
    return out


# ---------------------------------------------------------------- world: attribute accuracy
def _world_models(config: dict[str, Any]) -> Any:
    from lsc.backends.world.models import load_models
    from lsc.backends.world.options import world_weights_dir

    return load_models(str(world_weights_dir((config.get("backend_options") or {}).get("weights"))))


ATTRIBUTES = ("background", "count", "position", "color", "shape", "size")


def _attributes(batch: StepBatch) -> list[dict[str, float]]:
    from lsc.backends.world.evaluate import _attribute_hits, read_attributes

    seen = read_attributes(_world_models(batch.config).classifier, batch.images)
    out = []
    for truth, s in zip(batch.truths, seen):
        if truth is None:
            out.append({})
            continue
        hits = _attribute_hits(truth, s)
        row = {f"attr_{k}": float(v) for k, v in hits.items()}
        row["attr_mean"] = float(np.mean(list(hits.values())))
        row["attr_all_right"] = float(all(v == 1.0 for v in hits.values()))
        out.append(row)
    return out


register(StepMetric(
    "attributes", "world backend, scene ground truth (world images)", "one attribute-classifier pass per image",
    tuple(f"attr_{k}" for k in ATTRIBUTES) + ("attr_mean", "attr_all_right"), _attributes, every_step=True,
    discrete=True))


# ---------------------------------------------------------------- world: re-captioning text metrics
def bleu4(reference: str, hypothesis: str) -> float:
    """Sentence BLEU-4 in [0, 1] (sacrebleu, exponential smoothing as sacrebleu's sentence_bleu)."""
    from sacrebleu.metrics import BLEU

    return float(BLEU(effective_order=True).sentence_score(hypothesis, [reference]).score) / 100.0


def rouge_l(reference: str, hypothesis: str) -> float:
    """ROUGE-L F-measure (rouge-score, no stemming)."""
    from rouge_score import rouge_scorer

    return float(rouge_scorer.RougeScorer(["rougeL"]).score(reference, hypothesis)["rougeL"].fmeasure)


def meteor(reference: str, hypothesis: str) -> float | None:
    """METEOR (nltk) on whitespace tokens; None when WordNet is not installed. Its synonym stage reads lsc's
    own WordNet reader (`lsc.language.synonyms.wordnet`), so WordNet is loaded once per process, not twice
    (nltk's default reader would load its own copy: seconds and ~180 MB)."""
    from lsc.language.synonyms import wordnet

    reader = wordnet()
    if reader is None:
        return None
    from nltk.translate.meteor_score import meteor_score

    return float(meteor_score([reference.lower().split()], hypothesis.lower().split(), wordnet=reader))


def cider_d(references: Sequence[str], hypotheses: Sequence[str], sigma: float = 6.0,
            corpus: Sequence[str] | None = None) -> list[float]:
    """CIDEr-D (Vedantam et al. 2015, the COCO evaluation's variant) of each hypothesis against its one reference.

    n = 1..4 TF-IDF vectors, document frequencies over `corpus` (default: the references given, each
    distinct one once; a score depends on the corpus: a study passes every caption it has,
    `study_corpus`), hypothesis counts clipped by the reference's, a Gaussian length penalty (sigma 6),
    times 10. Whitespace tokens, lower-cased.
    """
    from collections import Counter

    def grams(text: str, n: int) -> Counter[tuple[str, ...]]:
        w = text.lower().split()
        return Counter(tuple(w[i : i + n]) for i in range(len(w) - n + 1))

    refs = list(dict.fromkeys(references if corpus is None else corpus))  # each distinct caption once
    log_n = np.log(max(1.0, float(len(refs))))
    dfs = {n: Counter(g for r in refs for g in grams(r, n)) for n in range(1, 5)}
    scores = []
    for ref, hyp in zip(references, hypotheses):
        total = 0.0
        for n in range(1, 5):
            df = dfs[n]
            gr, gh = grams(ref, n), grams(hyp, n)

            def vec(c: Counter[tuple[str, ...]]) -> dict[tuple[str, ...], float]:
                k = max(1, sum(c.values()))
                return {g: (v / k) * (log_n - np.log(max(1.0, float(df[g])))) for g, v in c.items()}

            vr, vh = vec(gr), vec(gh)
            num = sum(min(vh[g], vr[g]) * vr[g] for g in vh if g in vr)
            norm = np.sqrt(sum(v * v for v in vr.values())) * np.sqrt(sum(v * v for v in vh.values()))
            delta = len(hyp.split()) - len(ref.split())
            total += (num / norm if norm > 0 else 0.0) * np.exp(-(delta**2) / (2 * sigma**2))
        scores.append(float(10.0 * total / 4))
    return scores


def recaptions(batch: StepBatch) -> list[str]:
    """Alice's captions of Bob's images (computed once per batch, only where `cache["recaptions"]` has
    none): the study's backend's captioner, else the world's, or the hf backend's (BLIP, loaded from the
    run's backend_options)."""
    known = list(batch.cache.get("recaptions") or [None] * len(batch.images))
    todo = [i for i, h in enumerate(known) if h is None]
    if todo:
        if batch.backend is not None:
            captioner: Any = batch.backend.captioner
        elif batch.config.get("backend", "world") == "world":
            from lsc.backends.world.backend import WorldCaptioner

            captioner = WorldCaptioner(_world_models(batch.config))
        else:
            from lsc.backends import load_backend

            captioner = load_backend(str(batch.config["backend"]), dict(batch.config.get("backend_options") or {})).captioner
        for i in range(0, len(todo), 64):
            part = todo[i : i + 64]
            for j, hyp in zip(part, captioner.caption([batch.images[j] for j in part])):
                known[j] = str(hyp)
    batch.cache["recaptions"] = known
    return [str(h) for h in known]


def _recaption(batch: StepBatch) -> list[dict[str, Any]]:
    hyps = recaptions(batch)
    cider = cider_d(batch.captions, hyps, corpus=batch.corpus) if batch.corpus is not None else [None] * len(hyps)
    out = []
    for ref, hyp, c in zip(batch.captions, hyps, cider):
        row: dict[str, Any] = {"bleu4": bleu4(ref, hyp), "rouge_l": rouge_l(ref, hyp), "recaption": hyp}
        if c is not None:
            row["cider_d"] = c
        m = meteor(ref, hyp)
        if m is not None:
            row["meteor"] = m
        out.append(row)
    return out


register(StepMetric(
    "recaption", "Alice's captioner (world, or the hf backend's BLIP), sacrebleu, rouge-score; METEOR: nltk "
    "with WordNet", "one greedy decode of Alice's captioner per image", ("bleu4", "rouge_l", "meteor", "cider_d"),
    _recaption, backends=("world", "hf"), texts=("recaption",), optional=("meteor",), corpus=("cider_d",),
    discrete=True, packages=("sacrebleu", "rouge_score")))


# ---------------------------------------------------------------- BERTScore of the re-caption
BERTSCORE_MODEL_ENV = "LSC_BERTSCORE_MODEL"
BERTSCORE_LAYERS_ENV = "LSC_BERTSCORE_LAYERS"
BERTSCORE_DEFAULT = "roberta-large"  # bert-score's and torchmetrics' default for English


def _bertscore(batch: StepBatch) -> list[dict[str, float]]:
    """BERTScore F1 (torchmetrics: greedy cosine matching of contextual token embeddings, no idf, no baseline
    rescaling) of Alice's re-caption of Bob's image against her original caption."""
    import os

    name = os.environ.get(BERTSCORE_MODEL_ENV, BERTSCORE_DEFAULT)
    layers = os.environ.get(BERTSCORE_LAYERS_ENV)
    try:
        from torchmetrics.functional.text import bert_score
    except ImportError as exc:
        raise ConfigError(f"bertscore needs torchmetrics and transformers ({exc})") from None
    hyps = recaptions(batch)
    try:
        tokenizer, model = _bert(name)
    except OSError:
        raise ConfigError(f"bertscore: model {name!r} not found locally (no downloads here); set "
                          f"{BERTSCORE_MODEL_ENV} to a local BERT-style folder") from None
    got = bert_score(hyps, list(batch.captions), model=model, user_tokenizer=tokenizer, verbose=False,
                     num_layers=int(layers) if layers else None)
    return [{"bertscore_f1": float(f)} for f in got["f1"]]


@lru_cache(maxsize=2)
def _bert(name: str) -> tuple[Any, Any]:
    """The BERT-style model and tokenizer torchmetrics would load for `name`, loaded once per process
    (a study scores every transmission with them)."""
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(name), AutoModel.from_pretrained(name).eval()


register(StepMetric(
    "bertscore", f"Alice's captioner (as recaption), torchmetrics + transformers, a BERT-style model "
    f"({BERTSCORE_MODEL_ENV}, default {BERTSCORE_DEFAULT}; {BERTSCORE_LAYERS_ENV}: its layer)",
    "a re-caption (shared with recaption) and one encoder pass per caption pair", ("bertscore_f1",), _bertscore,
    backends=("world", "hf"), packages=("torchmetrics", "transformers")))


# ---------------------------------------------------------------- world: Alice's image-text match
def _itm(batch: StepBatch) -> list[dict[str, float]]:
    """Geometric-mean probability per token that Alice's captioner gives the original caption on Bob's image."""
    import torch

    from lsc.backends.world import nets
    from lsc.backends.world.nets import normalise_word

    models = _world_models(batch.config)
    model = models.captioner
    out = []
    with torch.inference_mode():
        for i in range(0, len(batch.images), 64):
            caps = batch.captions[i : i + 64]
            rows = [([nets.BOS_ID] + models.alice_vocab.encode([normalise_word(w) for w in c.split()]) + [nets.EOS_ID])[: model.cfg.max_len]
                    for c in caps]
            tokens = torch.full((len(rows), max(len(r) for r in rows)), nets.PAD_ID, dtype=torch.long)
            for j, r in enumerate(rows):
                tokens[j, : len(r)] = torch.tensor(r)
            logits = model.decode(tokens[:, :-1], model.encode_image(nets.to_tensor(batch.images[i : i + 64])))
            logp = logits.log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
            keep = (tokens[:, 1:] != nets.PAD_ID).float()
            mean = (logp * keep).sum(1) / keep.sum(1)
            out += [{"itm": float(torch.exp(m))} for m in mean]
    return out


register(StepMetric(
    "itm", "world backend (Alice's captioner as an image-text matcher)",
    "one teacher-forced pass of Alice's captioner per image", ("itm",), _itm))


# ---------------------------------------------------------------- hf: CLIPScore of (Bob's image, the caption)
CLIP_SCORE_MODEL_ENV = "LSC_CLIP_SCORE_MODEL"
CLIP_SCORE_DEFAULT = "openai/clip-vit-large-patch14"  # torchmetrics' default CLIPScore model


def _features(out: Any) -> Any:
    """transformers 5 returns an output object whose pooler_output is the projected embedding; 4.x a tensor."""
    return getattr(out, "pooler_output", out)


def _clip_score(batch: StepBatch) -> list[dict[str, float]]:
    """CLIPScore (Hessel et al. 2021, as torchmetrics defines it): 100 x max(cos(image, text), 0) of CLIP's
    projected embeddings, per image. Computed with transformers' CLIPModel: torchmetrics 1.9's CLIPScore
    fails on transformers 5's get_image_features output and takes a plain CLIP only from an 'openai' name."""
    import os

    import torch

    name = os.environ.get(CLIP_SCORE_MODEL_ENV, CLIP_SCORE_DEFAULT)
    try:
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"clip_score needs transformers ({exc})") from None
    try:
        model, processor = _clip(name)
    except OSError:
        raise ConfigError(f"clip_score: CLIP model {name!r} not found locally (no downloads here); set "
                          f"{CLIP_SCORE_MODEL_ENV} to a CLIP folder or a cached model id") from None
    pixels = [(np.asarray(im) * 255).round().astype(np.uint8) for im in batch.images]
    out = []
    with torch.no_grad():
        for i in range(0, len(pixels), 32):
            inputs = processor(text=list(batch.captions[i : i + 32]), images=pixels[i : i + 32], return_tensors="pt",
                               padding=True, truncation=True)
            img = _features(model.get_image_features(pixel_values=inputs["pixel_values"]))
            txt = _features(model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]))
            cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
            out += [{"clip_score": float(100 * max(float(c), 0.0))} for c in cos]
    return out


@lru_cache(maxsize=2)
def _clip(name: str) -> tuple[Any, Any]:
    """CLIP and its processor, loaded once per process (a study scores every transmission with them)."""
    from transformers import CLIPModel, CLIPProcessor

    return CLIPModel.from_pretrained(name).eval(), CLIPProcessor.from_pretrained(name)


register(StepMetric(
    "clip_score", f"hf backend, transformers, a CLIP model ({CLIP_SCORE_MODEL_ENV}, default "
    f"{CLIP_SCORE_DEFAULT})", "one CLIP image and text encoding per image", ("clip_score",), _clip_score,
    backends=("hf",), packages=("transformers",)))


register_installed()  # after the built-ins: a plugin may not take a built-in's name (lsc.plugins refuses it)
