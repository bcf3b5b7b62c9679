"""SCC on a hand-made caption with injected parser and synonym table."""

from dataclasses import dataclass

import pytest

from lsc.channel.config import ChannelConfig, SCCConfig
from lsc.channel.link import WordLink
from lsc.channel.scc import map_back, scc_encode


@dataclass
class Info:
    pos: str
    is_head: bool
    is_noun: bool


WORDS = ["a", "dog", "runs", "on", "big", "grass"]
INFOS = [
    Info("DET", False, False),
    Info("NOUN", True, True),
    Info("VERB", True, False),
    Info("ADP", True, False),
    Info("ADJ", False, False),
    Info("NOUN", True, True),
]
TABLE = {
    "dog": ["canine", "domestic dog", "hound"],
    "runs": ["sprints", "goes"],
    "big": ["large", "enormous"],
    "grass": ["sward", "grassland", "lawn"],
    "on": ["upon"],
}
VOCAB = frozenset({"a", "dog", "runs", "on", "big", "grass", "canine", "sprints", "enormous", "grassland", "upon"})


def table(word, pos, min_extra, vocab):
    return list(TABLE.get(word, []))


def test_heads_expanded_to_known_longer_synonyms():
    cfg = SCCConfig(enabled=True, expand="heads", min_extra_chars=2)
    res = scc_encode(WORDS, cfg, VOCAB, infos=INFOS, synonyms_fn=table)
    # dog->canine (+3, known); runs->sprints (+3); 'on' is a head but a function word: kept;
    # big is not a head; grass: 'sward' is not 2 longer, 'grassland' is and Bob knows it.
    assert res.words == ["a", "canine", "sprints", "on", "big", "grassland"]
    assert res.codebook == {"canine": "dog", "sprints": "runs", "grassland": "grass"}
    assert [map_back(w, res.codebook) for w in res.words] == WORDS


def test_nouns_all_min_extra_and_vocabulary():
    nouns = scc_encode(WORDS, SCCConfig(enabled=True, expand="nouns"), VOCAB, infos=INFOS, synonyms_fn=table)
    assert nouns.words == ["a", "canine", "runs", "on", "big", "grassland"]
    every = scc_encode(WORDS, SCCConfig(enabled=True, expand="all", min_extra_chars=4), VOCAB, infos=INFOS, synonyms_fn=table)
    assert every.words == ["a", "dog", "runs", "on", "enormous", "grassland"]  # +4 or more: enormous, grassland
    unrestricted = scc_encode(WORDS, SCCConfig(enabled=True, expand="all"), None, infos=INFOS, synonyms_fn=table)
    assert unrestricted.words == ["a", "canine", "sprints", "on", "large", "grassland"]  # sward is not longer


def test_disabled_repeats_and_collisions():
    assert scc_encode(WORDS, SCCConfig(), VOCAB, infos=INFOS, synonyms_fn=table).words == WORDS
    words = ["dog", "canine", "dog"]
    infos = [Info("NOUN", True, True)] * 3
    res = scc_encode(words, SCCConfig(enabled=True), None, infos=infos, synonyms_fn=lambda w, *a: ["canine", "doggie"] if w == "dog" else [])
    # 'canine' already occurs in the caption, so 'doggie' is used, and the repeated dog reuses it
    assert res.words == ["doggie", "canine", "doggie"]
    assert res.codebook == {"doggie": "dog"}


def test_head_mask_overrides_the_parsed_heads_and_infos_must_align():
    cfg = ChannelConfig(scc=SCCConfig(enabled=True, min_extra_chars=2))
    mask = [False, True, False, False, False, False]  # only 'dog' is treated as a head
    assert scc_encode(WORDS, cfg, VOCAB, infos=INFOS, head_mask=mask, synonyms_fn=table).words == ["a", "canine", "runs", "on", "big", "grass"]
    with pytest.raises(ValueError):
        scc_encode(WORDS, SCCConfig(enabled=True), None, infos=INFOS[:2], synonyms_fn=table)


def test_scc_plus_map_back_over_ideal_link():
    cfg = ChannelConfig(scc=SCCConfig(enabled=True, map_back=True, min_extra_chars=2))
    res = scc_encode(WORDS, cfg, VOCAB, infos=INFOS, synonyms_fn=table)
    link = WordLink(cfg, scc_codebook=res.codebook)
    txs = link.send_all(res.words)
    assert [t.received for t in txs] == WORDS
    assert sum(t.bits for t in txs) == sum(8 * len(w) + 8 for w in res.words)


def test_link_prepare_substitutes_and_maps_back_over_noisy_channel():
    cfg = ChannelConfig(
        model="analytic", snr_db=30, word_correction=True, scc=SCCConfig(enabled=True, map_back=True, min_extra_chars=2)
    )
    link = WordLink(cfg, seed=0, vocabulary=VOCAB, analyze=lambda words: INFOS, synonyms_fn=table)
    res = link.prepare(WORDS)
    assert res.codebook == {"canine": "dog", "sprints": "runs", "grassland": "grass"}
    tx = link.send("dog")
    assert (tx.original, tx.sent, tx.received, tx.bits) == ("dog", "canine", "dog", 56)
    assert link.send("a").sent == "a"
    # without map-back Bob reads the synonym
    plain = WordLink(cfg.model_copy(update={"scc": SCCConfig(enabled=True, min_extra_chars=2)}), vocabulary=VOCAB,
                     analyze=lambda words: INFOS, synonyms_fn=table)
    plain.prepare(WORDS)
    assert plain.send("grass").received == "grassland"
    # disabled SCC: prepare is a no-op
    off = WordLink(ChannelConfig(), analyze=lambda words: INFOS, synonyms_fn=table)
    assert off.prepare(WORDS).words == WORDS and off.send("dog").sent == "dog"
