"""The transformers SKD engine on a tiny causal LM built here whose answer is designed, not random.

The model (GPT-2 layout, one layer whose attention and MLP weights are zero, no position embeddings) sees
only its last token: token t is the one-hot vector e_t, and the output head maps e_t to the token `chain`
names after it (10 x the layer-normed one-hot; anything not in the chain is followed by <eos>). Greedy
decoding after the prompt's last word therefore spells the chain out: the engine's prompt building,
answer parsing and meaning check are exercised end to end on a real `generate` call.
"""

from pathlib import Path

import pytest

from lsc.backends.world import scenes
from lsc.language.skd import RESEARCH_PAIRS, few_shot_prompt, make_skd, research_prompt, select_examples

CAPTION = "a red ball on the left on grass"
EXAMPLES = scenes.skd_example_pairs()


def build_lm(path: Path, chain: list[str], extra_words: set[str]) -> str:
    """A causal LM (and word-level tokenizer) that answers `chain[1:]` after `chain[0]`, then stops."""
    pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = sorted(set(chain) | extra_words)
    vocab = {"[UNK]": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", eos_token="<eos>", pad_token="<eos>")
    n = len(vocab)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=n, n_positions=2048, n_embd=n, n_layer=1, n_head=1,
                                       bos_token_id=1, eos_token_id=1, tie_word_embeddings=False))
    successor = dict(zip(chain, chain[1:]))
    with torch.no_grad():
        for p in model.transformer.h.parameters():
            p.zero_()
        model.transformer.wpe.weight.zero_()
        model.transformer.wte.weight.copy_(torch.eye(n))
        model.transformer.ln_f.weight.fill_(1.0)
        model.transformer.ln_f.bias.zero_()
        model.lm_head.weight.zero_()
        for word, t in vocab.items():
            model.lm_head.weight[vocab[successor.get(word, "<eos>")], t] = 10.0
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _spy_prompts(monkeypatch, model_id: str) -> list[str]:
    import lsc.language.skd as skd_mod

    seen: list[str] = []
    tok, _ = skd_mod._load_causal_lm(model_id)
    real_call = type(tok).__call__
    monkeypatch.setattr(type(tok), "__call__", lambda self, text, **kw: (seen.append(text), real_call(self, text, **kw))[1])
    return seen


def test_few_shot_prompt_from_the_configured_pairs_answer_parsed_and_checked(tmp_path, monkeypatch):
    words = {w for a, b in EXAMPLES for w in f"{a} {b}".split()} | set(CAPTION.split())
    good = build_lm(tmp_path / "good", ["Rewritten:", "green", "grass", "with", "a", "large", "red", "circle", "at", "left"], words)
    seen = _spy_prompts(monkeypatch, good)
    cfg = {"engine": "transformers", "model_id": good, "n_examples": 4, "max_new_tokens": 12}
    res = make_skd(cfg).rewrite(CAPTION, EXAMPLES)
    assert seen == [few_shot_prompt(CAPTION, select_examples(CAPTION, EXAMPLES, 4))]
    assert all(f"Caption: {a}\nRewritten: {b}\n" in seen[0] for a, b in select_examples(CAPTION, EXAMPLES, 4))
    assert res.kept and res.text == "green grass with a large red circle at left" and res.engine == "transformers"
    # The same prompt to a model whose answer loses the ball: the meaning check keeps Alice's caption.
    lossy = build_lm(tmp_path / "lossy", ["Rewritten:", "green", "grass", "with", "a", "large", "red", "at", "left"], words)
    res = make_skd({**cfg, "model_id": lossy}).rewrite(CAPTION, EXAMPLES)
    assert not res.kept and res.text == CAPTION and res.reason.startswith("rewrite dropped head noun(s) ball")
    assert res.proposed == "green grass with a large red at left"


def test_paper_research_config_sends_the_research_request_and_parses_the_first_listed_prompt(tmp_path, monkeypatch):
    from lsc.config import load_config

    words = {w for a, b in RESEARCH_PAIRS for w in f"{a} {b}".split()} | set(research_prompt(CAPTION).split())
    lm = build_lm(tmp_path / "research", ["BLIP", "1.", "a", "red", "ball", "at", "left", "on", "green", "grass", "2."], words)
    seen = _spy_prompts(monkeypatch, lm)
    skd = load_config(Path(__file__).resolve().parents[1] / "configs" / "paper_research.yaml").skd
    assert research_prompt(CAPTION).endswith("BLIP")  # the prompt's last word starts the designed answer
    cfg = skd.model_copy(update={"engine": "transformers", "model_id": lm, "temperature": 0.0, "max_new_tokens": 16})
    res = make_skd(cfg).rewrite(CAPTION, EXAMPLES)  # research: the configured examples give way to its 19 pairs
    assert seen == [research_prompt(CAPTION)]
    assert res.kept and res.text == "a red ball at left on green grass"  # "1. ... 2." -> the first listed prompt
    # With the meaning check on, an answer keeping the ball passes it.
    res = make_skd(cfg.model_copy(update={"check_meaning": True})).rewrite(CAPTION, EXAMPLES)
    assert res.kept and res.text == "a red ball at left on green grass"
