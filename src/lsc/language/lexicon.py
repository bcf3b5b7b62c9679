"""A style lexicon learnt from (alice, bob) caption pairs: SKD without any language model.

Semantic knowledge distillation rewrites Alice's caption in Bob's style. Given a few captions of the
same images in both styles, this module learns, like a tiny phrase-based translation model:

1. links between Alice and Bob phrases (1 to 3 words) by competitive linking: every candidate pair of
   n-grams is scored by the Dice coefficient of their counts over the examples; in each example pair
   the best-scoring links are taken first, each word used once, shorter phrases first on ties (they
   generalise). ("ball" <-> "circle", "big" <-> "large", "red" <-> "red", "left" <-> "left").
2. Bob words left unlinked that always sit next to one linked Bob phrase and co-occur with its Alice
   side are merged into that link ("grass" -> "green grass").
3. Alice words that Bob's style drops (unlinked in most of their occurrences): deletions
   ("there", "is", "picture", "on the").
4. The remaining unlinked Bob words become insertions, attached before (or after) the Bob phrase they
   most consistently precede (follow): "at" before "left", "with" before "green grass".
5. Reordering: a Bob phrase that comes first in most of Bob's captions while its Alice side does not
   is moved to the front.

Rewriting segments the caption greedily (longest known Alice phrase first), translates, drops
deletions, keeps unknown words as they are, reorders, then inserts.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Sequence

MAX_N = 3  # longest phrase considered when linking
MAX_GROWN = 5  # longest phrase a link may grow to
_TOKEN = re.compile(r"[\w'\-]+|[^\w\s]")

Phrase = tuple[str, ...]


def tokenize(text: str) -> list[str]:
    """Lower-cased words, punctuation as separate tokens."""
    return _TOKEN.findall(text.lower())


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens with spaces, punctuation attached to the word before it."""
    out = ""
    for t in tokens:
        if out and re.fullmatch(r"[^\w\s]", t) and t not in "([{\"'":
            out += t
        else:
            out += (" " if out else "") + t
    return out


def _ngrams(tokens: Sequence[str], max_n: int = MAX_N) -> list[tuple[int, int]]:
    return [(i, i + n) for n in range(1, max_n + 1) for i in range(len(tokens) - n + 1)]


def _strip_shared(pa: Phrase, pb: Phrase) -> tuple[Phrase, Phrase]:
    """Drop identical leading/trailing words of a link ("a big" -> "a large" becomes "big" -> "large")."""
    while len(pa) > 1 and len(pb) > 1 and pa[0] == pb[0]:
        pa, pb = pa[1:], pb[1:]
    while len(pa) > 1 and len(pb) > 1 and pa[-1] == pb[-1]:
        pa, pb = pa[:-1], pb[:-1]
    return pa, pb


@dataclass
class StyleLexicon:
    """What was learnt from the example pairs (inspectable: `lsc skd --json` shows the applied part)."""

    table: dict[Phrase, Phrase] = field(default_factory=dict)  # alice phrase -> bob phrase
    link_counts: dict[Phrase, int] = field(default_factory=dict)
    deletions: set[str] = field(default_factory=set)  # alice words bob's style drops
    insert_before: dict[Phrase, Phrase] = field(default_factory=dict)  # bob phrase -> words put before
    insert_after: dict[Phrase, Phrase] = field(default_factory=dict)  # bob phrase -> words put after
    front: set[Phrase] = field(default_factory=set)  # bob phrases moved to the front
    n_examples: int = 0

    # ---------------------------------------------------------------------------------- learning
    @classmethod
    def learn(
        cls,
        examples: Sequence[tuple[str, str]],
        min_count: int = 1,
        min_dice: float = 0.8,
        min_identity_dice: float = 0.5,
        min_absorb_dice: float = 0.7,
    ) -> "StyleLexicon":
        """Learn substitutions, deletions, insertions and reorderings from (alice, bob) pairs."""
        pairs = [(tokenize(a), tokenize(b)) for a, b in examples]
        pairs = [(a, b) for a, b in pairs if a and b]
        lex = cls(n_examples=len(pairs))
        if not pairs:
            return lex
        ca: Counter[Phrase] = Counter()
        cb: Counter[Phrase] = Counter()
        joint: Counter[tuple[Phrase, Phrase]] = Counter()
        for a, b in pairs:
            ga = Counter(tuple(a[i:j]) for i, j in _ngrams(a))
            gb = Counter(tuple(b[i:j]) for i, j in _ngrams(b))
            ca.update(ga)
            cb.update(gb)
            for pa, na in ga.items():
                for pb, nb in gb.items():
                    joint[(pa, pb)] += min(na, nb)

        def count(tokens: list[str], ph: Phrase) -> int:
            n = len(ph)
            return sum(1 for t in range(len(tokens) - n + 1) if tuple(tokens[t : t + n]) == ph)

        def dice(pa: Phrase, pb: Phrase) -> float:
            # Smoothed: a pair seen once scores below a pair seen often with the same consistency.
            if len(pa) > MAX_N or len(pb) > MAX_N:  # longer phrases (grown links): counted on demand
                na = [count(a, pa) for a, _ in pairs]
                nb = [count(b, pb) for _, b in pairs]
                return 2.0 * sum(map(min, na, nb)) / (sum(na) + sum(nb) + 1.0)
            return 2.0 * joint[(pa, pb)] / (ca[pa] + cb[pb] + 1.0)

        links_seen: Counter[tuple[Phrase, Phrase]] = Counter()
        unlinked_a: Counter[str] = Counter()
        word_count_a: Counter[str] = Counter()
        state = []
        # Pass 1: identical words, when the examples agree they carry over.
        ident_a: Counter[str] = Counter()
        ident_b: Counter[str] = Counter()
        count_b: Counter[str] = Counter()
        for a, b in pairs:
            used_a, used_b = [False] * len(a), [False] * len(b)
            links: list[tuple[int, int, int, int]] = []
            ident = []
            for i, w in enumerate(a):
                for k, v in enumerate(b):
                    if w == v and joint[((w,), (v,))] >= min_count:
                        d = dice((w,), (v,))
                        if d >= min_identity_dice:
                            ident.append((-round(d, 9), abs(i / len(a) - k / len(b)), i, k, i + 1, k + 1))
            for *_, i, k, j, m in sorted(ident):
                if not (used_a[i] or used_b[k]):
                    used_a[i] = used_b[k] = True
                    links.append((i, j, k, m))
                    ident_a[a[i]] += 1
                    ident_b[b[k]] += 1
            word_count_a.update(a)
            count_b.update(b)
            state.append((a, b, used_a, used_b, links))
        # Words that mostly carry over unchanged ("a", "red") are not linked to other words.
        keep_a = {w for w, n in ident_a.items() if n * 2 > word_count_a[w]}
        keep_b = {w for w, n in ident_b.items() if n * 2 > count_b[w]}
        for a, b, used_a, used_b, links in state:
            # Pass 2: other phrase pairs, best Dice first; on ties the one continuing existing links on
            # both sides ("the" before "left" <-> "at" before "left"), then the shortest (most general).
            cands = []
            for i, j in _ngrams(a):
                if any(used_a[i:j]) or keep_a.intersection(a[i:j]):
                    continue
                pa = tuple(a[i:j])
                for k, m in _ngrams(b):
                    if any(used_b[k:m]) or keep_b.intersection(b[k:m]):
                        continue
                    pb = tuple(b[k:m])
                    if pa == pb or joint[(pa, pb)] < min_count:
                        continue
                    d = dice(pa, pb)
                    if d >= min_dice:
                        cands.append((-round(d, 9), (j - i) + (m - k), abs(i / len(a) - k / len(b)), i, k, j, m))
            while cands:
                a2b = {i: k for i, _, k, _ in links}
                a2b_end = {j: m for _, j, _, m in links}

                def key(c: tuple) -> tuple:  # type: ignore[type-arg]
                    negd, length, dist, i, k, j, m = c
                    cont = (a2b_end.get(i, -9) == k) + (a2b.get(j, -9) == m)
                    return (negd, -cont, length, dist, i, k)

                best = min(cands, key=key)
                _, _, _, i, k, j, m = best
                used_a[i:j] = [True] * (j - i)
                used_b[k:m] = [True] * (m - k)
                links.append((i, j, k, m))
                cands = [c for c in cands if not (any(used_a[c[3] : c[5]]) or any(used_b[c[4] : c[6]]))]
            # Pass 3: a gap left unlinked on both sides between two links that follow each other on
            # both sides is a replacement seen too rarely for statistics ("the couch" -> "a sofa").
            lex._fill_gaps(a, b, links, used_a, used_b)
            # Pass 4: grow links over unlinked neighbours their other side predicts.
            lex._absorb(a, b, links, used_a, used_b, dice, min_absorb_dice)
            for i, j, k, m in links:
                links_seen[(tuple(a[i:j]), tuple(b[k:m]))] += 1
            for t, w in enumerate(a):
                if not used_a[t]:
                    unlinked_a[w] += 1
        pair_links = [(a, b, links) for a, b, _, _, links in state]

        # Substitution table: each Alice phrase to its most frequent Bob phrase.
        best: dict[Phrase, tuple[int, Phrase]] = {}
        for (pa, pb), n in links_seen.items():
            if n >= min_count and (pa not in best or (n, -len(pb)) > (best[pa][0], -len(best[pa][1]))):
                best[pa] = (n, pb)
        # Also the general core of a link with shared edge words ("a big" -> "a large" teaches "big" ->
        # "large"), unless the examples say otherwise; the longer entry still wins where it matches.
        for pa, (n, pb) in list(best.items()):
            core_a, core_b = _strip_shared(pa, pb)
            if core_a != pa and core_a not in best:
                best[core_a] = (n, core_b)
        lex.table = {pa: pb for pa, (n, pb) in best.items()}
        lex.link_counts = {pa: n for pa, (n, _) in best.items()}
        # Deletions: Alice words unlinked in most of their occurrences.
        # A word seen once proves nothing about Bob's style: at least two sightings.
        lex.deletions = {w for w, n in unlinked_a.items() if n * 2 > word_count_a[w] and n >= max(2, min_count)}
        lex._learn_insertions_and_order(pair_links, min_count)
        return lex

    @staticmethod
    def _fill_gaps(a, b, links, used_a, used_b):  # type: ignore[no-untyped-def]
        # Gaps between links and at the end; not at the start, where moved phrases land (reordering).
        anchors = sorted(links) + [(len(a), len(a), len(b), len(b))]
        if len(anchors) < 2:
            return
        prev = anchors[0]
        for nxt in anchors[1:]:
            _, j, _, m = prev
            i2, _, k2, _ = nxt
            if 0 < i2 - j <= MAX_N and 0 < k2 - m <= MAX_N and not any(used_a[j:i2]) and not any(used_b[m:k2]):
                used_a[j:i2] = [True] * (i2 - j)
                used_b[m:k2] = [True] * (k2 - m)
                links.append((j, i2, m, k2))
            prev = nxt

    @staticmethod
    def _absorb(a, b, links, used_a, used_b, dice, threshold):  # type: ignore[no-untyped-def]
        """Extend links by one unlinked neighbouring word at a time, Bob side then Alice side."""
        changed = True
        while changed:
            changed = False
            for side, toks, used in (("b", b, used_b), ("a", a, used_a)):
                for t in range(len(toks)):
                    if used[t]:
                        continue
                    best = None
                    for li, (i, j, k, m) in enumerate(links):
                        lo, hi = (k, m) if side == "b" else (i, j)
                        if not (hi == t or lo == t + 1) or hi - lo >= MAX_GROWN:
                            continue
                        nlo, nhi = (lo, hi + 1) if hi == t else (lo - 1, hi)
                        pa, pb = (tuple(a[i:j]), tuple(b[nlo:nhi])) if side == "b" else (tuple(a[nlo:nhi]), tuple(b[k:m]))
                        d = dice(pa, pb)
                        # Only when the longer link is as consistent as the link itself.
                        if d >= threshold and d >= dice(tuple(a[i:j]), tuple(b[k:m])) - 1e-9 and (best is None or d > best[0]):
                            best = (d, li, nlo, nhi)
                    if best is not None:
                        _, li, nlo, nhi = best
                        i, j, k, m = links[li]
                        links[li] = (i, j, nlo, nhi) if side == "b" else (nlo, nhi, k, m)
                        used[t] = True
                        changed = True
            # Merge links adjacent on both sides that always travel together ("brick" + "wall").
            for x in range(len(links)):
                for y in range(len(links)):
                    if x == y or changed:
                        continue
                    i, j, k, m = links[x]
                    i2, j2, k2, m2 = links[y]
                    if j != i2 or m != k2 or (j2 - i) > MAX_GROWN or (m2 - k) > MAX_GROWN:
                        continue
                    if tuple(a[i:j]) == tuple(b[k:m]) and tuple(a[i2:j2]) == tuple(b[k2:m2]):
                        continue  # two identities: nothing to learn by merging
                    d = dice(tuple(a[i:j2]), tuple(b[k:m2]))
                    if d >= threshold and d >= max(dice(tuple(a[i:j]), tuple(b[k:m])), dice(tuple(a[i2:j2]), tuple(b[k2:m2]))) - 1e-9:
                        links[x] = (i, j2, k, m2)
                        del links[y]
                        changed = True

    def _learn_insertions_and_order(self, pair_links, min_count: int) -> None:  # type: ignore[no-untyped-def]
        before: Counter[tuple[Phrase, Phrase]] = Counter()
        after: Counter[tuple[Phrase, Phrase]] = Counter()
        seen_b: Counter[Phrase] = Counter()
        first_b: Counter[Phrase] = Counter()
        first_a: Counter[Phrase] = Counter()
        for a, b, links in pair_links:
            spans = sorted((k, m, i, j) for i, j, k, m in links)
            for k, m, i, j in spans:
                pb = tuple(b[k:m])
                seen_b[pb] += 1
                if k == 0:
                    first_b[pb] += 1
                if i == 0:
                    first_a[pb] += 1
            covered = [False] * len(b)
            for k, m, _, _ in spans:
                covered[k:m] = [True] * (m - k)
            t = 0
            while t < len(b):
                if covered[t]:
                    t += 1
                    continue
                s = t
                while t < len(b) and not covered[t]:
                    t += 1
                run = tuple(b[s:t])
                nxt = next((tuple(b[k:m]) for k, m, _, _ in spans if k == t), None)
                prv = next((tuple(b[k:m]) for k, m, _, _ in spans if m == s), None)
                if nxt is not None:
                    before[(nxt, run)] += 1
                if prv is not None:
                    after[(prv, run)] += 1
        for pb, n in seen_b.items():
            if first_b[pb] * 2 > n and first_a[pb] * 2 <= n and n >= min_count:
                self.front.add(pb)
        # Each run is attached to the Bob phrase it most consistently neighbours (rate over that phrase).
        runs: dict[Phrase, list[tuple[float, str, Phrase]]] = defaultdict(list)
        for (pb, run), n in before.items():
            if n >= min_count:
                runs[run].append((n / seen_b[pb], "before", pb))
        for (pb, run), n in after.items():
            if n >= min_count:
                runs[run].append((n / seen_b[pb], "after", pb))
        for run, options in runs.items():
            for rate, side, pb in sorted(options, key=lambda o: (-o[0], o[1] != "before")):
                if rate < 0.5:
                    break
                target = self.insert_before if side == "before" else self.insert_after
                if pb not in target:
                    target[pb] = run
                break

    # ---------------------------------------------------------------------------------- applying
    def substitutes(self, word: str) -> set[str]:
        """Bob-side words learnt for any Alice phrase containing `word` (for the meaning check)."""
        w = word.lower()
        return {t for pa, pb in self.table.items() if w in pa for t in pb}

    def apply(self, caption: str) -> tuple[str, list[tuple[str, str]]]:
        """Rewrite a caption; returns the text and the (alice, bob) substitutions used ('' = dropped)."""
        toks = tokenize(caption)
        units: list[Phrase] = []
        used: list[tuple[str, str]] = []
        i = 0
        while i < len(toks):
            for n in range(min(MAX_GROWN, len(toks) - i), 0, -1):
                pa = tuple(toks[i : i + n])
                if pa in self.table:
                    pb = self.table[pa]
                    units.append(pb)
                    if pa != pb:
                        used.append((" ".join(pa), " ".join(pb)))
                    i += n
                    break
            else:
                w = toks[i]
                if w in self.deletions:
                    used.append((w, ""))
                else:
                    units.append((w,))
                i += 1
        front = [u for u in units if u in self.front]
        units = front[:1] + [u for u in units if u not in front[:1]]
        out: list[str] = []
        for idx, u in enumerate(units):
            ins = self.insert_before.get(u)
            if ins and idx > 0 and tuple(out[-len(ins):]) != ins:
                out.extend(ins)
            out.extend(u)
            ins = self.insert_after.get(u)
            if ins and idx < len(units) - 1:
                nxt = units[idx + 1]
                if tuple(nxt[: len(ins)]) != ins and self.insert_before.get(nxt) != ins:
                    out.extend(ins)
        return detokenize(out), used
