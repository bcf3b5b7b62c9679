"""The `research` attention variant against a transcription of the research code's partBob
(llm_att.py's language_att / atts_to_idx / choose_word, driven as main_flicker.py drives them, and its
heads_partbob branch), run on the tiny CLIP text encoder of the tiny Stable Diffusion pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hf_tiny import hf_backend, hf_options  # noqa: F401  (session fixtures)
from lsc.errors import ConfigError
from lsc.schemes.attention import (
    MostAttentive,
    attentive_order,
    research_attentive_order,
    research_heads_order,
)

# Every word is one token of the tiny CLIP vocabulary, where llm_att.py's position indexing is well defined.
CAPTIONS = [
    "a white cat runs in a field",
    "two dogs plays with a red ball on the grass",
    "a boy riding a brown horse near the beach",
    "the girl sits on a big blue bike in the field",
    "an black dog jumps in the water at the beach",
    "a girl and a boy are near the white horse",
    "two horse runs on the field with a boy",
]


# ---- transcription of llm_att.py (tokenizer and model passed in instead of module globals) ----------
def language_att(text, lang_model, tokenizer):
    tokens = tokenizer.tokenize(text)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    input_ids = torch.tensor([input_ids])
    outputs = lang_model(input_ids, output_attentions=True, output_hidden_states=True)
    attentions = outputs.attentions
    for i in range(len(attentions)):
        if i == 0:
            attentions_np = attentions[i].detach().numpy().copy()
        else:
            attentions_np += attentions[i].detach().numpy()
    attentions_np_m = attentions_np[:, 2, :, :]
    text_str = text.split(" ")
    att_sum = []
    for idx in range(len(text_str)):
        att_sum.append(np.sum(attentions_np_m[0][idx, :]) + np.sum(attentions_np_m[0][:, idx])
                       - 2 * attentions_np_m[0][idx, idx])
    att_sums = np.flip(att_sum)
    return tokens, attentions_np_m, att_sums


def atts_to_idx(idx, attentions_np_m):
    atts = []
    for i in range(attentions_np_m.shape[1]):
        atts.append((attentions_np_m[:, idx, i] + attentions_np_m[:, i, idx])[0])
    return atts


def choose_word(att_sums, attentions_np_m, pre_idx, trial, importance):
    if len(pre_idx) == 0:
        idx = [np.argmax(att_sums)]
    elif importance == "least":
        atts_idx = atts_to_idx(pre_idx[-1], attentions_np_m)
        for ii in range(len(pre_idx)):
            atts_idx[pre_idx[ii]] = 100
        idx = np.argsort(atts_idx)[:trial]
    else:  # "most"
        atts_idx = atts_to_idx(pre_idx[-1], attentions_np_m)
        for ii in range(len(pre_idx)):
            atts_idx[pre_idx[ii]] = 0
        idx = np.flip(np.argsort(atts_idx))[:trial]
    return idx


def research_part_bob(caption, lang_model, tokenizer, importance):
    """main_flicker.py's partBob loop (sort=False): pre_idx is appended to and sorted after every word."""
    _, attentions_np_m, att_sums = language_att(caption, lang_model, tokenizer)
    tokens = caption.split(" ")
    idxs, pre_idx = [], []
    while len(idxs) < len(tokens):
        next_idx = choose_word(att_sums=att_sums, attentions_np_m=attentions_np_m, pre_idx=pre_idx, trial=1,
                               importance=importance)[0]
        idxs.append(int(next_idx))
        pre_idx.append(next_idx)
        pre_idx.sort()
    return idxs


def research_heads_part_bob(caption, cands, lang_model, tokenizer):
    """main_flicker.py's heads_partbob branch for head words `cands` (in caption order, all distinct)."""
    _, _, att_sums = language_att(caption, lang_model, tokenizer)
    tokens = caption.split(" ")
    att_prior_idxs = np.argsort(att_sums)[::-1]
    att_prior = [tokens[ii] for ii in att_prior_idxs]
    sorted_cands = sorted(cands, key=lambda word: att_prior.index(word))
    return [tokens.index(wo) for wo in sorted_cands]
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(hf_options):
    from transformers import CLIPTextModel, CLIPTokenizer

    sd = Path(hf_options["generator"])
    model = CLIPTextModel.from_pretrained(sd / "text_encoder", attn_implementation="eager").eval()
    return model, CLIPTokenizer.from_pretrained(sd / "tokenizer")


class _Ctx:
    """The two things MostAttentive.plan reads of an image context."""

    def __init__(self, backend, words) -> None:
        self.backend, self.words, self._memo = backend, list(words), {}

    def memo(self, key, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def test_research_matrix_is_llm_att_matrix(hf_backend, clip) -> None:
    model, tok = clip
    for caption in CAPTIONS:
        words = caption.split(" ")
        assert len(tok.tokenize(caption)) == len(words)  # one token per word: positions are words
        with torch.no_grad():
            _, ref, att_sums = language_att(caption, model, tok)
        got = hf_backend.bob_text_encoder.word_attention(words, "research")
        scale = np.abs(ref[0]).max()
        assert scale > 0.1
        np.testing.assert_allclose(got, ref[0], rtol=0, atol=1e-6 * scale)
        assert not np.allclose(got, hf_backend.bob_text_encoder.word_attention(words, "layer_sum_head0"), atol=1e-3)


@pytest.mark.parametrize("importance,scheme", [("most", "most_attentive"), ("least", "least_attentive")])
def test_research_orders_match_transcription(hf_backend, clip, importance: str, scheme: str) -> None:
    from lsc.schemes import get_scheme

    model, tok = clip
    differs_from_mean = 0
    for caption in CAPTIONS:
        words = caption.split(" ")
        with torch.no_grad():
            expected = research_part_bob(caption, model, tok, importance)
        plan = get_scheme(scheme, attention_variant="research").plan(_Ctx(hf_backend, words), None)
        assert plan.order == expected, caption
        a = hf_backend.bob_text_encoder.word_attention(words, "research")
        differs_from_mean += attentive_order(a, "max" if importance == "most" else "min") != expected
    assert differs_from_mean >= 1  # the flip and the sorted anchor change orders


def test_research_heads_order_matches_heads_partbob(hf_backend, clip) -> None:
    model, tok = clip
    checked = 0
    for caption in CAPTIONS:
        words = caption.split(" ")
        # every other distinct word stands in for the parser's heads (the ordering rule is what is tested)
        heads = [i for i in range(len(words)) if i % 2 == 1 and words.index(words[i]) == i]
        with torch.no_grad():
            expected = research_heads_part_bob(caption, [words[h] for h in heads], model, tok)
        a = hf_backend.bob_text_encoder.word_attention(words, "research")
        assert research_heads_order(a, words, heads) == expected, caption
        checked += 1
    assert checked >= 5


def test_research_order_rules() -> None:
    """Hand-made matrix: the reversed first choice and the chain to the highest sent position."""
    a = np.zeros((4, 4))
    a[0, 1], a[0, 2], a[1, 2], a[3, 1], a[3, 2] = 9.0, 1.0, 0.5, 0.2, 0.4
    # contributions [10, 9.7, 1.9, 0.6]: word 0 is strongest, but reversed position 3 carries its score
    assert research_attentive_order(a, "max")[0] == 3
    # after 3: link(3, j) = a[3, j] + a[j, 3] -> j=2 (0.4); then the anchor is max(3, 2) = 3 again -> j=1
    assert research_attentive_order(a, "max") == [3, 2, 1, 0]
    assert attentive_order(a, "max")[0] == 0


def test_research_variant_refused_for_both_att() -> None:
    from lsc.schemes import get_scheme

    with pytest.raises(ConfigError, match="bothAtt"):
        get_scheme("attention_contribution", attention_variant="research")
    assert MostAttentive(attention_variant="research").attention_variant == "research"


def test_pad_to_is_bothatt_50x50_softmax() -> None:
    """pad_to=50: both matrices zero-padded to 50x50 before the softmax over all entries, contributions
    summed over the padded rows too, as main_flicker's bothAtt branch (att_to_word on the 50x50 arrays)."""
    from lsc.schemes.attention import contribution_order, difference_matrix

    rng = np.random.default_rng(3)
    alice, bob = rng.random((6, 6)) * 3, rng.random((6, 6))
    A, B = np.zeros((50, 50)), np.zeros((50, 50))
    A[:6, :6], B[:6, :6] = alice, bob
    soft = [np.exp(x - x.max()) / np.exp(x - x.max()).sum() for x in (A, B)]
    att_diff = soft[0] - soft[1]
    att_sum_diff = [np.sum(att_diff[t, :]) + np.sum(att_diff[:, t]) - 2 * att_diff[t, t] for t in range(6)]
    d = difference_matrix(alice, bob, pad_to=50)
    assert d.shape == (50, 50)
    np.testing.assert_allclose(d, att_diff, rtol=0, atol=1e-12 * np.abs(att_diff).max())
    assert contribution_order(d, signed=True, n=6) == [int(i) for i in np.argsort(att_sum_diff, kind="stable")]
    assert not np.allclose(difference_matrix(alice, bob)[:6, :6], d[:6, :6], rtol=1e-3)
