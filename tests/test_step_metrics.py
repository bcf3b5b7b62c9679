"""Step metrics beyond LPIPS (lsc.metrics.registry): re-captioning text scores through sacrebleu, rouge-score and
nltk, the world's attribute reader against scene truth, the registry's one-line refusals, and the report section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lsc.errors import ConfigError
from lsc.metrics import registry


def test_text_scores_by_hand() -> None:
    pytest.importorskip("sacrebleu")
    pytest.importorskip("rouge_score")
    ref = "a big red ball on grass"
    assert registry.bleu4(ref, ref) == pytest.approx(1.0)
    # LCS("a b c d", "a c d") = 3: P = 1, R = 3/4, F = 2PR/(P+R) = 6/7
    assert registry.rouge_l("a b c d", "a c d") == pytest.approx(6 / 7)
    assert registry.rouge_l(ref, "blue sky") == 0.0
    # no 4-gram in common but unigrams do: smoothed BLEU is small and positive, less than a near copy
    assert 0 < registry.bleu4(ref, "a red ball") < registry.bleu4(ref, "a big red ball on sand") < 1


def test_meteor_with_wordnet_or_none() -> None:
    from lsc.language.synonyms import wordnet_available

    got = registry.meteor("a big red ball on grass", "a big red ball on grass")
    if not wordnet_available():
        assert got is None
        return
    assert got == pytest.approx(0.9977, abs=1e-3)  # METEOR's fragmentation penalty keeps an exact match under 1
    assert registry.meteor("a big red ball on grass", "a small blue box at night") < 0.2


def test_select_refuses_unknown_names_and_backends() -> None:
    assert [m.name for m in registry.select(["attributes", "recaption"], "world")] == ["attributes", "recaption"]
    with pytest.raises(ConfigError, match="unknown step metric 'bleu' \\(known: attributes, bertscore, clip_score, itm, lpips, psnr, recaption, ssim\\)"):
        registry.select(["bleu"], "world")
    with pytest.raises(ConfigError, match="step metric 'attributes' needs the world backend, not 'hf'"):
        registry.select(["attributes"], "hf")


def test_attributes_read_real_renders_right_and_a_wrong_scene_wrong() -> None:
    from lsc.backends.world import scenes

    scs = [scenes.world_scene(i, seed=7) for i in range(8)]
    images = np.stack([scenes.render(s) for s in scs]).astype(np.float32)
    truths = [s.attributes() for s in scs]
    right = registry.REGISTRY["attributes"].compute(registry.StepBatch(images, [""] * 8, truths, {"backend": "world"}))
    assert sum(r["attr_all_right"] for r in right) >= 7  # the reader is 98.5% right on real renders
    shifted = truths[1:] + truths[:1]  # each image judged against another scene's truth
    wrong = registry.REGISTRY["attributes"].compute(registry.StepBatch(images, [""] * 8, shifted, {"backend": "world"}))
    assert sum(r["attr_all_right"] for r in wrong) <= 1 and np.mean([r["attr_mean"] for r in wrong]) < np.mean([r["attr_mean"] for r in right])
    none = registry.REGISTRY["attributes"].compute(registry.StepBatch(images[:1], [""], [None], {"backend": "world"}))
    assert none == [{}]


def test_report_section_on_a_world_run(tmp_path: Path) -> None:
    pytest.importorskip("sacrebleu")
    pytest.importorskip("rouge_score")
    from lsc.config import load_config
    from lsc.report import build_report, step_metrics
    from lsc.report.data import load_run
    from lsc.runner.study import run_study

    out = tmp_path / "run"
    run_study(load_config(None, ["images.count=2", "schemes=[random, nouns]", "oracle=false"]), out, progress=False)
    data = load_run(out)
    values = step_metrics.compute(data, "", registry.select(["attributes", "recaption"], "world"))
    assert set(values) == {(s, i) for s in ("random", "nouns") for i in data.image_order}
    for (scheme, image_id), curve in values.items():
        assert len(curve) == len(data.steps[("", scheme, image_id)])
        assert {"attr_mean", "attr_all_right", "bleu4", "rouge_l"} <= set(curve[-1])
        first = step_metrics.first_all_right(curve)
        assert first is None or curve[first]["attr_all_right"] == 1.0 and all(v["attr_all_right"] == 0 for v in curve[:first])
    head, body = step_metrics.table(data, values)
    assert "words until every attribute is right (successes)" in head and "bleu4 after the last word" in head
    assert [r[0] for r in body] == ["random", "nouns"]
    html = build_report(out, strips=0, step_metrics=["attributes", "recaption"]).read_text()
    assert "Beyond LPIPS-world: attributes, recaption" in html  # the world's distance by its name
    names = {p.name for p in (out / "report").glob("*_vs_words.png")}
    assert {"attr_mean_vs_words.png", "attr_all_right_vs_words.png", "bleu4_vs_words.png", "rouge_l_vs_words.png"} <= names
    import csv

    with open(out / "report" / "step_metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    n_steps = sum(len(data.steps[("", s, i)]) for s, i in values)
    assert len([r for r in rows if r["metric"] == "attr_mean"]) == n_steps
    first = next(r for r in rows if r["metric"] == "bleu4")
    assert float(first["value"]) == values[(first["scheme"], first["image_id"])][int(first["step"])]["bleu4"]
    build_report(out, strips=0, step_metrics=[])
    assert not list((out / "report").glob("attr_*")) and not list((out / "report").glob("step_metrics*.csv"))


def test_cider_d_by_hand() -> None:
    refs = ["a red ball", "a blue box"]
    # identical to its reference: cosine 1 per n where the reference has n-grams (n = 1, 2, 3: 3 of 4), no length
    # penalty: 10 * 3/4; "a" is in every reference (idf 0) so it counts for nothing
    got = registry.cider_d(refs, ["a red ball", "a blue box"])
    assert got == pytest.approx([7.5, 7.5])
    assert registry.cider_d(refs, ["green grass", "a"]) == [0.0, 0.0]
    # one word off: unigrams {red, ball} vs {red, box} ("a" weighs 0), equal idf: cosine 1/2; bigrams
    # {a red, red ball} vs {a red, red box}: 1/2; no common trigram: 10 * (1/2 + 1/2) / 4
    part = registry.cider_d(refs, ["a red box", "a blue box"])[0]
    assert part == pytest.approx(2.5)


def test_itm_prefers_the_right_image() -> None:
    from lsc.backends.world import scenes

    scs = [scenes.world_scene(i, seed=9) for i in range(6)]
    images = np.stack([scenes.render(s) for s in scs]).astype(np.float32)
    caps = [scenes.alice_caption(s) for s in scs]
    itm = registry.REGISTRY["itm"].compute
    right = [r["itm"] for r in itm(registry.StepBatch(images, caps, [None] * 6, {"backend": "world"}))]
    wrong = [r["itm"] for r in itm(registry.StepBatch(images, caps[1:] + caps[:1], [None] * 6, {"backend": "world"}))]
    assert all(0 < r <= 1 for r in right) and sum(r > w for r, w in zip(right, wrong)) >= 5


def _tiny_clip(folder: Path, flip: bool = False) -> Path:
    """A tiny random CLIP (32 px images) with hf_tiny's BPE tokenizer, saved with its processor; `flip`
    negates the text projection, so every cosine changes sign (a random CLIP's may all be clamped to 0)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from hf_tiny import clip_tokenizer

    import torch

    torch.manual_seed(0)
    tok = clip_tokenizer()
    cfg = CLIPConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "projection_dim": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8, "projection_dim": 16},
        projection_dim=16)
    path = folder / ("clip-tiny-flipped" if flip else "clip-tiny")
    model = CLIPModel(cfg).eval()
    if flip:
        with torch.no_grad():
            model.text_projection.weight.neg_()
    model.save_pretrained(path)
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=proc, tokenizer=tok).save_pretrained(path)
    return path


def test_clip_score_with_a_tiny_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    import torch
    from transformers import CLIPModel, CLIPProcessor

    images = np.random.default_rng(0).random((3, 32, 32, 3)).astype(np.float32)
    caps = ["a red ball on grass", "two dogs in the park", "a man riding a horse"]
    positive = 0
    for flip in (False, True):
        path = _tiny_clip(tmp_path, flip)
        monkeypatch.setenv(registry.CLIP_SCORE_MODEL_ENV, str(path))
        got = registry.REGISTRY["clip_score"].compute(registry.StepBatch(images, caps, [None] * 3, {"backend": "hf"}))
        # the definition through CLIP's own forward (image_embeds and text_embeds come normalised), image by image
        model, proc = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
        for i in range(3):
            inputs = proc(text=[caps[i]], images=[(images[i] * 255).round().astype(np.uint8)], return_tensors="pt",
                          padding=True)
            with torch.no_grad():
                o = model(**inputs)
            ref = 100 * max(float((o.image_embeds * o.text_embeds).sum()), 0.0)
            assert got[i]["clip_score"] == pytest.approx(ref, rel=1e-4, abs=1e-4)
            positive += got[i]["clip_score"] > 0
    assert positive == 3  # each image scores above 0 with exactly one of the two models
    monkeypatch.setenv(registry.CLIP_SCORE_MODEL_ENV, str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="clip_score: CLIP model .* not found locally"):
        registry.REGISTRY["clip_score"].compute(registry.StepBatch(images[:1], caps[:1], [None], {"backend": "hf"}))


def test_study_config_metrics_key(tmp_path: Path) -> None:
    from lsc.config import load_config
    from lsc.runner.folder import prepare_run_dir

    plain = load_config(None, [])
    assert plain.metrics is None and "metrics" not in plain.to_dict()  # older resolved configs stay identical
    chosen = load_config(None, ["metrics=[lpips, ssim, psnr, attributes, recaption]"])
    assert chosen.to_dict()["metrics"] == ["lpips", "ssim", "psnr", "attributes", "recaption"]
    with pytest.raises(ConfigError, match="unknown step metric 'bleu'"):
        load_config(None, ["metrics=[bleu]"])
    with pytest.raises(ConfigError, match="step metric 'clip_score' needs the hf backend, not 'world'"):
        load_config(None, ["metrics=[clip_score]"])
    prepare_run_dir(tmp_path / "run", plain.to_dict(), plain.to_yaml())
    prepare_run_dir(tmp_path / "run", chosen.to_dict(), chosen.to_yaml())  # which metrics are scored is not part of the study's identity
    every = load_config(None, ["metrics_every=2"])
    prepare_run_dir(tmp_path / "run", every.to_dict(), every.to_yaml())  # nor how often
    from lsc.report.step_metrics import default_metrics

    assert default_metrics(chosen.to_dict()) == ["lpips", "ssim", "psnr", "attributes", "recaption"]
    assert default_metrics(plain.to_dict()) == ["attributes", "recaption"]  # the world's defaults
    assert default_metrics({"backend": "hf"}) == ["recaption"] and default_metrics({"backend": "my.mod:load"}) == []


def test_recaption_and_bertscore_on_tiny_hf_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hf: the backend's (tiny BLIP) captioner re-captions once for both metrics; BERTScore on a tiny BERT
    agrees with torchmetrics called directly; a missing model is one line."""
    pytest.importorskip("transformers")
    pytest.importorskip("sacrebleu")
    pytest.importorskip("rouge_score")
    from hf_tiny import build_bert, tiny_options
    from torchmetrics.functional.text import bert_score

    opts = tiny_options(tmp_path)
    bert = build_bert(tmp_path / "bs")
    monkeypatch.setenv(registry.BERTSCORE_MODEL_ENV, str(bert))
    monkeypatch.setenv(registry.BERTSCORE_LAYERS_ENV, "2")
    images = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    caps = ["a red ball on grass", "two dogs in the park"]
    batch = registry.StepBatch(images, caps, [None, None], {"backend": "hf", "backend_options": opts})
    metrics = registry.select(["recaption", "bertscore"], "hf")
    rows = [{} for _ in caps]
    for m in metrics:
        for r, got in zip(rows, m.compute(batch)):
            r.update(got)
    hyps = batch.cache["recaptions"]
    assert len(hyps) == 2 and all(isinstance(h, str) for h in hyps)
    ref = bert_score(hyps, caps, model_name_or_path=str(bert), num_layers=2, verbose=False)["f1"]
    for r, h, c, f in zip(rows, hyps, caps, ref):
        assert r["bleu4"] == pytest.approx(registry.bleu4(c, h)) and r["bertscore_f1"] == pytest.approx(float(f))
    monkeypatch.setenv(registry.BERTSCORE_MODEL_ENV, str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="bertscore: model .* not found locally"):
        registry.REGISTRY["bertscore"].compute(registry.StepBatch(images, caps, [None, None], {"backend": "hf"},
                                                                  cache={"recaptions": hyps}))
