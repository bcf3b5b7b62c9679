"""Step metrics beyond LPIPS: a small registry, computed on a run's stored images.

A step metric has a name, what it needs (the backend, stored images, scene ground truth), its cost per
step, and a `compute` that takes a batch of steps (Bob's image, the original caption, the scene's truth)
and returns one dict of named values per step. Adding a metric is one `register(StepMetric(...))`.

They are computed when the report is built, from the PNGs and ground truth the store already holds, so a
study's time and its result rows do not change; the study config's `metrics: [...]` or `lsc report
--step-metrics attributes,recaption` selects them.

Built in (world backend):
- `attributes`: the attribute classifier reads Bob's image and is compared with the scene's truth
  (background, object count, slots, and per object colour / shape / size): accuracy per attribute, their
  mean, and `all_right` (every attribute right). Cost: one classifier pass per image (about a millisecond).
- `recaption`: Alice re-captions Bob's image; BLEU-4 (sacrebleu, sentence-level, exponential smoothing),
  ROUGE-L F (rouge-score), METEOR (nltk, needs WordNet) and CIDEr-D (here; document frequencies over the
  study's captions) against her original caption. Cost: one greedy decode of her captioner per image.
- `bertscore`: BERTScore F1 (torchmetrics) of the same re-caption; any backend with a captioner, a local
  BERT-style model named by LSC_BERTSCORE_MODEL.
- `clip_score` (hf): CLIPScore of (Bob's image, the caption), see below.
- `itm`: Alice's image-text match of (Bob's image, her original caption): the geometric-mean probability
  per token her captioner gives that caption on Bob's image, in (0, 1]. Cost: one teacher-forced pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from lsc.errors import ConfigError


@dataclass
class StepBatch:
    """What a step metric may read: Bob's images (B, H, W, 3) in [0, 1], per step the original caption
    and the scene's ground truth (None where the images have none), and the run's configuration."""

    images: np.ndarray
    captions: list[str]
    truths: list[dict[str, Any] | None]
    config: dict[str, Any]
    cache: dict[str, Any] = field(default_factory=dict)  # shared by the metrics of one batch (e.g. re-captions)


@dataclass(frozen=True)
class StepMetric:
    name: str
    needs: str  # one line: what it needs (backend, ground truth, packages)
    cost: str  # one line: its cost per step
    columns: tuple[str, ...]  # the values it returns per step (higher is better for each)
    compute: Callable[[StepBatch], list[dict[str, float]]]
    backends: tuple[str, ...] = ("world",)


REGISTRY: dict[str, StepMetric] = {}
STORED = ("lpips", "ssim", "psnr")  # computed by every study and stored in its rows; valid in `metrics:` too


def register(metric: StepMetric) -> StepMetric:
    REGISTRY[metric.name] = metric
    return metric


def select(names: Sequence[str], backend: str) -> list[StepMetric]:
    """The named metrics, refusing an unknown name or one the backend cannot compute with one line."""
    out = []
    for name in names:
        if name in STORED:
            continue
        if name not in REGISTRY:
            raise ConfigError(f"unknown step metric {name!r} (known: {', '.join(sorted((*REGISTRY, *STORED)))})")
        metric = REGISTRY[name]
        if backend not in metric.backends:
            raise ConfigError(f"step metric {name!r} needs the {' or '.join(metric.backends)} backend, not {backend!r}")
        out.append(metric)
    return out


# ---------------------------------------------------------------- world: attribute accuracy
def _world_models(config: dict[str, Any]) -> Any:
    import os
    from pathlib import Path

    from lsc.backends.world.backend import PACKAGED_WEIGHTS, load_models

    weights = (config.get("backend_options") or {}).get("weights")
    return load_models(str(Path(weights or os.environ.get("LSC_WORLD_WEIGHTS", PACKAGED_WEIGHTS)).resolve()))


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
    tuple(f"attr_{k}" for k in ATTRIBUTES) + ("attr_mean", "attr_all_right"), _attributes))


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
    """METEOR (nltk) on whitespace tokens; None when WordNet is not installed."""
    from lsc.language.synonyms import wordnet_available

    if not wordnet_available():
        return None
    from nltk.translate.meteor_score import meteor_score

    return float(meteor_score([reference.lower().split()], hypothesis.lower().split()))


def cider_d(references: Sequence[str], hypotheses: Sequence[str], sigma: float = 6.0) -> list[float]:
    """CIDEr-D (Vedantam et al. 2015, the COCO evaluation's variant) of each hypothesis against its one reference.

    n = 1..4 TF-IDF vectors, document frequencies over the references given (so a score depends on the
    corpus: pass every caption of a study together), hypothesis counts clipped by the reference's, a
    Gaussian length penalty (sigma 6), times 10. Whitespace tokens, lower-cased.
    """
    from collections import Counter

    def grams(text: str, n: int) -> Counter[tuple[str, ...]]:
        w = text.lower().split()
        return Counter(tuple(w[i : i + n]) for i in range(len(w) - n + 1))

    refs = list(dict.fromkeys(references))  # the corpus: each distinct reference once
    log_n = np.log(max(1.0, float(len(refs))))
    scores = []
    for ref, hyp in zip(references, hypotheses):
        total = 0.0
        for n in range(1, 5):
            df = Counter(g for r in refs for g in grams(r, n))
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
    """Alice's captions of Bob's images (computed once per batch): the world's captioner, or the hf backend's
    (BLIP, loaded from the run's backend_options)."""
    if "recaptions" not in batch.cache:
        if batch.config.get("backend", "world") == "world":
            from lsc.backends.world.backend import WorldCaptioner

            captioner: Any = WorldCaptioner(_world_models(batch.config))
        else:
            from lsc.backends import load_backend

            captioner = load_backend(str(batch.config["backend"]), dict(batch.config.get("backend_options") or {})).captioner
        hyps: list[str] = []
        for i in range(0, len(batch.images), 64):
            hyps += captioner.caption(list(batch.images[i : i + 64]))
        batch.cache["recaptions"] = hyps
    return list(batch.cache["recaptions"])


def _recaption(batch: StepBatch) -> list[dict[str, float]]:
    hyps = recaptions(batch)
    cider = cider_d(batch.captions, hyps)
    out = []
    for ref, hyp, c in zip(batch.captions, hyps, cider):
        row = {"bleu4": bleu4(ref, hyp), "rouge_l": rouge_l(ref, hyp), "cider_d": c}
        m = meteor(ref, hyp)
        if m is not None:
            row["meteor"] = m
        out.append(row)
    return out


register(StepMetric(
    "recaption", "world backend (Alice's captioner), sacrebleu, rouge-score; METEOR: nltk with WordNet",
    "one greedy decode of Alice's captioner per image", ("bleu4", "rouge_l", "meteor", "cider_d"), _recaption,
    backends=("world", "hf")))


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
        got = bert_score(hyps, list(batch.captions), model_name_or_path=name, verbose=False,
                         num_layers=int(layers) if layers else None)
    except OSError:
        raise ConfigError(f"bertscore: model {name!r} not found locally (no downloads here); set "
                          f"{BERTSCORE_MODEL_ENV} to a local BERT-style folder") from None
    return [{"bertscore_f1": float(f)} for f in got["f1"]]


register(StepMetric(
    "bertscore", f"Alice's captioner (as recaption), torchmetrics + transformers, a BERT-style model "
    f"({BERTSCORE_MODEL_ENV}, default {BERTSCORE_DEFAULT}; {BERTSCORE_LAYERS_ENV}: its layer)",
    "a re-caption (shared with recaption) and one encoder pass per caption pair", ("bertscore_f1",), _bertscore,
    backends=("world", "hf")))


# ---------------------------------------------------------------- world: Alice's image-text match
def _itm(batch: StepBatch) -> list[dict[str, float]]:
    """Geometric-mean probability per token that Alice's captioner gives the original caption on Bob's image."""
    import torch

    from lsc.backends.world import nets
    from lsc.backends.world.backend import normalise_word

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
        from transformers import CLIPModel, CLIPProcessor
    except ImportError as exc:
        raise ConfigError(f"clip_score needs transformers ({exc})") from None
    try:
        model = CLIPModel.from_pretrained(name).eval()
        processor = CLIPProcessor.from_pretrained(name)
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


register(StepMetric(
    "clip_score", f"hf backend, transformers, a CLIP model ({CLIP_SCORE_MODEL_ENV}, default "
    f"{CLIP_SCORE_DEFAULT})", "one CLIP image and text encoding per image", ("clip_score",), _clip_score,
    backends=("hf",)))
