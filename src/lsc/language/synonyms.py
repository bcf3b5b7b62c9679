"""Synonyms that keep the part of speech: WordNet 3.0 through NLTK, with a small built-in fallback.

Semantic channel coding (SCC) replaces head words by longer synonyms before they cross a noisy channel;
users inspect synonyms with `lsc synonyms WORD`. WordNet is found on NLTK's normal data paths
(`$NLTK_DATA`, `~/nltk_data`, ...) and in the folders of the `LSC_NLTK_DATA` environment variable.
Install it with `scripts/install_wordnet.sh` (Debian packages, offline) or
`python -c "import nltk; nltk.download('wordnet')"`. Without it a built-in table answers, with a
warning, so that lsc keeps working.

Part of speech is kept in two senses: synonyms are grouped by WordNet category (noun/verb/adj/adv), and
an inflected word gets inflected synonyms ("running" as a verb -> "operating", not "operate"; "dogs"
-> plural nouns), by regular English spelling rules.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

from lsc.errors import ConfigError

log = logging.getLogger(__name__)

POS_NAMES = ("noun", "verb", "adj", "adv")
_WN_LETTER = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
_ALIASES = {
    "n": "noun", "noun": "noun", "nn": "noun", "nns": "noun", "nnp": "noun", "nnps": "noun", "propn": "noun",
    "v": "verb", "verb": "verb", "aux": "verb", "vb": "verb", "vbd": "verb", "vbg": "verb", "vbn": "verb",
    "vbp": "verb", "vbz": "verb",
    "a": "adj", "s": "adj", "adj": "adj", "jj": "adj", "jjr": "adj", "jjs": "adj",
    "r": "adv", "adv": "adv", "rb": "adv", "rbr": "adv", "rbs": "adv",
}  # fmt: skip


class WordNetMissingWarning(UserWarning):
    """WordNet is not installed; the small built-in synonym table answers instead."""


@dataclass
class SynonymResult:
    """Synonyms of one word by part of speech ('noun', 'verb', 'adj', 'adv'), best first."""

    by_pos: dict[str, list[str]] = field(default_factory=dict)
    source: Literal["wordnet", "builtin"] = "wordnet"

    def all(self) -> list[str]:
        """Every synonym once, in part-of-speech then rank order."""
        seen: dict[str, None] = {}
        for pos in POS_NAMES:
            for s in self.by_pos.get(pos, []):
                seen.setdefault(s, None)
        return list(seen)


# A small table for machines without WordNet: common caption words (Flickr-style and the world backend).
# Base forms; inflected words are reduced by simple rules and the answers inflected back.
BUILTIN: dict[str, dict[str, list[str]]] = {
    "dog": {"noun": ["canine", "hound", "pooch"]},
    "cat": {"noun": ["feline", "kitty"]},
    "man": {"noun": ["gentleman", "guy", "male"]},
    "woman": {"noun": ["lady", "female"]},
    "boy": {"noun": ["lad", "youngster"]},
    "girl": {"noun": ["lass", "youngster"]},
    "child": {"noun": ["kid", "youngster"]},
    "person": {"noun": ["individual", "human"]},
    "people": {"noun": ["persons", "folks"]},
    "ball": {"noun": ["sphere", "orb"]},
    "water": {"noun": ["liquid"]},
    "street": {"noun": ["road", "roadway"]},
    "grass": {"noun": ["lawn", "turf", "greensward"]},
    "beach": {"noun": ["shore", "seashore", "coast"]},
    "picture": {"noun": ["image", "photograph", "photo"]},
    "image": {"noun": ["picture", "photograph"]},
    "circle": {"noun": ["ring", "disk", "round"]},
    "square": {"noun": ["quadrate", "box"], "adj": ["quadrate", "squared"]},
    "triangle": {"noun": ["trigon", "trilateral"]},
    "shape": {"noun": ["form", "figure"]},
    "background": {"noun": ["backdrop", "setting"]},
    "red": {"adj": ["crimson", "scarlet", "ruby", "reddish"], "noun": ["redness"]},
    "blue": {"adj": ["azure", "bluish", "cerulean"], "noun": ["blueness"]},
    "green": {"adj": ["greenish", "verdant"], "noun": ["greenness"]},
    "yellow": {"adj": ["yellowish", "golden", "chromatic"], "noun": ["yellowness"]},
    "white": {"adj": ["snowy", "pale", "ashen"], "noun": ["whiteness"]},
    "black": {"adj": ["dark", "ebony", "sable"], "noun": ["blackness"]},
    "purple": {"adj": ["violet", "purplish"], "noun": ["violet"]},
    "orange": {"adj": ["orangish", "tangerine"]},
    "big": {"adj": ["large", "huge", "enormous"]},
    "large": {"adj": ["big", "huge", "sizable"]},
    "small": {"adj": ["little", "tiny", "minor"]},
    "little": {"adj": ["small", "tiny", "minuscule"]},
    "left": {"noun": ["leftfield", "leftside"], "adj": ["leftmost", "leftward"]},
    "right": {"noun": ["rightfield", "rightside"], "adj": ["rightmost", "rightward"]},
    "top": {"noun": ["summit", "upside"], "adj": ["upper", "uppermost"]},
    "bottom": {"noun": ["base", "underside"], "adj": ["lower", "lowermost"]},
    "above": {"adv": ["overhead", "higher"]},
    "below": {"adv": ["beneath", "underneath"]},
    "run": {"verb": ["sprint", "race", "jog"]},
    "walk": {"verb": ["stroll", "amble", "wander"]},
    "jump": {"verb": ["leap", "spring", "bound"]},
    "play": {"verb": ["frolic", "romp"]},
    "sit": {"verb": ["perch", "rest"]},
    "stand": {"verb": ["remain", "rise"]},
    "ride": {"verb": ["drive", "travel"]},
    "climb": {"verb": ["ascend", "scale", "mount"]},
    "hold": {"verb": ["grasp", "grip", "clutch"]},
    "carry": {"verb": ["transport", "bear", "convey"]},
    "look": {"verb": ["gaze", "stare", "watch"]},
    "swim": {"verb": ["paddle", "bathe"]},
}

# ----------------------------------------------------------------------------------------- WordNet


def _data_paths() -> list[str]:
    extra = os.environ.get("LSC_NLTK_DATA", "")
    return [p for p in extra.split(os.pathsep) if p]


@functools.lru_cache(maxsize=None)
def _wordnet_for(paths: tuple[str, ...]) -> Any | None:
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:  # pragma: no cover - nltk is a core dependency
        return None
    for p in reversed(paths):
        if p not in nltk.data.path:
            nltk.data.path.insert(0, p)
    try:
        root = nltk.data.find("corpora/wordnet")
    except LookupError:
        try:
            root = nltk.data.find("corpora/wordnet.zip/wordnet/")
        except LookupError:
            return None
    try:
        with warnings.catch_warnings():  # "multilingual functions are not available": no OMW wanted
            warnings.simplefilter("ignore")
            reader = WordNetCorpusReader(root, None)
        reader.synsets("dog")  # fail now, not mid-study, on a broken corpus
        return reader
    except Exception as exc:  # a partial/corrupt folder: treat as missing, say why
        log.warning("WordNet found at %s but unusable (%s)", root, exc)
        return None


def wordnet() -> Any | None:
    """NLTK's WordNet reader, or None when WordNet is not installed (looked up once per path set)."""
    return _wordnet_for(tuple(_data_paths()))


def wordnet_available() -> bool:
    """Whether WordNet answers (tests and `lsc synonyms` report it)."""
    return wordnet() is not None


_warned = False


def _warn_builtin() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            "WordNet not found; using lsc's small built-in synonym table. Install it with "
            "scripts/install_wordnet.sh or python -c \"import nltk; nltk.download('wordnet')\" "
            "(or point LSC_NLTK_DATA at a folder holding corpora/wordnet)",
            WordNetMissingWarning,
            stacklevel=3,
        )


# -------------------------------------------------------------------------------------- inflection

_VOWELS = set("aeiou")
_MAN_PLURAL_S = {"human", "shaman", "talisman", "caiman", "ottoman", "dolman", "desman"}


def _double_final(base: str) -> bool:
    """Monosyllabic consonant-vowel-consonant ending doubles its consonant (run -> running)."""
    if len(base) < 3 or base[-1] in "wxy" or base[-1] in _VOWELS:
        return False
    if not (base[-2] in _VOWELS and base[-3] not in _VOWELS):
        return False
    return len(re.findall(r"[aeiou]+", base)) == 1


def inflect(base: str, form: str, irregular: dict[str, list[str]] | None = None) -> str:
    """English inflection of a base form: form 'ing', 'ed' (past), 'en' (participle) or 's'.

    `irregular` maps base forms to their irregular inflections (WordNet's exception lists, inverted);
    regular spelling rules apply otherwise.
    """
    if " " in base:  # multiword: inflect the verb (first word) or the noun (last word)
        first, rest = base.split(" ", 1)
        if form in ("ing", "ed", "en"):
            return f"{inflect(first, form, irregular)} {rest}"
        head, last = base.rsplit(" ", 1)
        return f"{head} {inflect(last, form, irregular)}"
    b = base
    forms = (irregular or {}).get(b, [])
    if forms:
        if form == "ing":
            pick = [f for f in forms if f.endswith("ing")]
        elif form == "s":
            pick = [f for f in forms if not f.endswith("ing")] if irregular is not None else []
        else:
            past = [f for f in forms if not f.endswith("ing")]
            pick = sorted(past, key=lambda f: f.endswith("n") != (form == "en"))
        if pick:
            return pick[0]
    if form == "en":
        form = "ed"
    if form == "ing":
        if b.endswith("ie"):
            return b[:-2] + "ying"
        if b.endswith("e") and not b.endswith(("ee", "ye", "oe")) and len(b) > 2:
            return b[:-1] + "ing"
        return b + b[-1] + "ing" if _double_final(b) else b + "ing"
    if form == "ed":
        if b.endswith("e"):
            return b + "d"
        if len(b) > 1 and b.endswith("y") and b[-2] not in _VOWELS:
            return b[:-1] + "ied"
        return b + b[-1] + "ed" if _double_final(b) else b + "ed"
    if form == "s":
        if b.endswith("man") and b not in _MAN_PLURAL_S:
            return b[:-3] + "men"  # serviceman -> servicemen
        if b.endswith(("ss", "x", "z", "ch", "sh")) or (b.endswith("s") and not b.endswith("es")):
            return b + "es"
        if len(b) > 1 and b.endswith("y") and b[-2] not in _VOWELS:
            return b[:-1] + "ies"
        return b + "s"
    raise ValueError(form)


def _form_of(word: str, base: str, pos: str) -> str | None:
    """Which regular inflection turns `base` into `word` (None: the word is the base form)."""
    if word == base:
        return None
    if pos == "verb":
        if word.endswith("ing"):
            return "ing"
        if word.endswith("ed"):
            return "ed"
        if word.endswith("n"):
            return "en"  # irregular participle (seen, gone, taken)
        return "s" if word.endswith("s") else "ed"  # irregular past (ran, stood)
    if pos == "noun":
        return "s"
    return None  # comparatives etc.: keep synonyms in base form


def _simple_bases(word: str, pos: str) -> list[str]:
    """Candidate base forms without WordNet (builtin table lookups)."""
    out = [word]
    if pos == "verb" and word.endswith("ing"):
        stem = word[:-3]
        out += [stem, stem + "e"]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            out.append(stem[:-1])
    if pos == "verb" and word.endswith("ed"):
        out += [word[:-2], word[:-1]]
    if word.endswith("s"):
        out.append(word[:-1])
        if word.endswith("es"):
            out.append(word[:-2])
        if word.endswith("ies"):
            out.append(word[:-3] + "y")
    return out


# ---------------------------------------------------------------------------------------- queries


def normalize_pos(pos: str | None) -> str | None:
    """Map a universal POS, Penn tag, WordNet letter or name to 'noun'|'verb'|'adj'|'adv' (None = all)."""
    if pos is None:
        return None
    key = pos.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise ConfigError(f"unknown part of speech {pos!r}; use noun, verb, adj or adv (or a Penn/UD tag)")


def _clean(name: str) -> str:
    return name.replace("_", " ")


def _wordnet_synonyms(wn: Any, word: str, pos: str, max_senses: int | None) -> list[str]:
    letter = _WN_LETTER[pos]
    lower = word.lower()
    out: dict[str, None] = {}
    bases = wn._morphy(lower, letter) or [lower]
    bases = sorted(bases, key=lambda b: b == lower)  # the inflected reading first ("men" -> "man")
    for base in bases:
        form = _form_of(lower, base, pos)
        synsets = wn.synsets(base, pos=letter)
        if pos == "adj":  # keep adjective satellites ('s') under adj, in WordNet's sense order
            synsets = [s for s in synsets if s.pos() in ("a", "s")]
        if max_senses is not None:
            synsets = synsets[:max_senses]
        for syn in synsets:
            for lemma in syn.lemma_names():
                name = _clean(lemma)
                if name.lower() in bases or name.lower() == lower:
                    continue
                if form and name[:1].isupper():
                    continue  # proper names do not inflect ("Canis familiaris")
                out.setdefault(inflect(name, form, _irregular(wn, letter)) if form else name, None)
    return list(out)


@functools.lru_cache(maxsize=8)
def _irregular_cached(wn_id: int, letter: str, wn: Any) -> dict[str, list[str]]:
    inv: dict[str, list[str]] = {}
    for inflected, bases in wn._exception_map[letter].items():
        for b in bases:
            inv.setdefault(b, []).append(inflected)
    return inv


def _irregular(wn: Any, letter: str) -> dict[str, list[str]]:
    """Base form -> irregular inflections, from WordNet's exception lists (verb.exc, noun.exc)."""
    return _irregular_cached(id(wn), letter, wn)


def _builtin_synonyms(word: str, pos: str) -> list[str]:
    lower = word.lower()
    for base in _simple_bases(lower, pos):
        entry = BUILTIN.get(base, {}).get(pos)
        if entry:
            form = _form_of(lower, base, pos)
            return [inflect(s, form) if form else s for s in entry if s != lower]
    return []


def synonyms(word: str, pos: str | None = None, *, max_senses: int | None = None) -> SynonymResult:
    """Synonyms of `word`, grouped by part of speech, best (most frequent sense) first.

    pos: restrict to one part of speech (noun/verb/adj/adv, a Penn tag such as VBG, or a UD tag).
    max_senses: use only the first senses of the word (WordNet orders senses by frequency).
    """
    if not word or any(c.isspace() for c in word):
        raise ConfigError(f"a single word is needed, got {word!r}")
    want = normalize_pos(pos)
    pos_list = [want] if want else list(POS_NAMES)
    wn = wordnet()
    if wn is not None:
        by_pos = {p: _wordnet_synonyms(wn, word, p, max_senses) for p in pos_list}
        source: Literal["wordnet", "builtin"] = "wordnet"
    else:
        _warn_builtin()
        by_pos = {p: _builtin_synonyms(word, p) for p in pos_list}
        source = "builtin"
    return SynonymResult(by_pos={p: s for p, s in by_pos.items() if s}, source=source)


def longer_synonyms(
    word: str,
    pos: str | None,
    min_extra_chars: int = 1,
    vocabulary: Iterable[str] | None = None,
    *,
    max_senses: int | None = 1,
) -> list[str]:
    """Single-word synonyms at least `min_extra_chars` longer than `word`, for semantic channel coding.

    Only one-word answers (a word replaces a word); restricted to `vocabulary` (Bob's words) when given;
    from the first `max_senses` senses only (default 1, the dominant sense, so that "dog" never becomes
    "frankfurter"). Ordered by sense rank, then longest first among equals kept stable.
    """
    vocab = None if vocabulary is None else {v.lower() for v in vocabulary}
    if pos is not None and pos.strip().lower() not in _ALIASES:
        return []  # determiners, prepositions, ...: WordNet has no synonyms for them
    if not word or any(c.isspace() for c in word):
        return []
    res = synonyms(word, pos, max_senses=max_senses)
    out = []
    for s in res.all():
        if " " in s or not re.fullmatch(r"[A-Za-z][A-Za-z\-']*", s):
            continue
        if len(s) < len(word) + min_extra_chars:
            continue
        if vocab is not None and s.lower() not in vocab:
            continue
        out.append(s)
    return out
