"""Reading a world caption back into the attributes it states, in either style: for scoring only
(`lsc world eval`, the SKD checks). Nothing at run time parses captions by hand."""

from __future__ import annotations

from typing import Any

from lsc.backends.world import scenes

_SHAPE_OF = {**{v: k for k, v in scenes.ALICE_SHAPE.items()}, **{v: k for k, v in scenes.BOB_SHAPE.items()}}
_PLURAL_SHAPE_OF = {scenes.ALICE_PLURAL[v]: k for k, v in scenes.ALICE_SHAPE.items()}
_SIZE_OF = {v: k for table in (scenes.ALICE_SIZE, scenes.BOB_SIZE) for k, v in table.items() if v}
_UNMARKED_SIZE = next(k for k, v in scenes.ALICE_SIZE.items() if not v)
_BOB_SLOT_OF = {v: k for k, v in scenes.BOB_SLOT.items()}


def _plural_group(words: list[str], i: int) -> tuple[list[dict[str, Any]], int]:
    """Alice's "[size] colour (and [size] colour)... plural-noun" at word i: its objects and the index
    after the noun, or ([], i) when no such group starts there."""
    items: list[tuple[str | None, str]] = []
    k = i
    while k < len(words):
        size = _SIZE_OF.get(words[k])
        c = k + (size is not None)
        if c >= len(words) or words[c] not in scenes.COLORS:
            break
        items.append((size, words[c]))
        k = c + 1
        if k + 1 < len(words) and words[k] == "and" and (words[k + 1] in scenes.COLORS or words[k + 1] in _SIZE_OF):
            k += 1
    if len(items) < 2 or k >= len(words) or words[k] not in _PLURAL_SHAPE_OF:
        return [], i
    shape = _PLURAL_SHAPE_OF[words[k]]
    return [{"shape": shape, "color": color, "size": size, "slot": None} for size, color in items], k + 1


def parse_caption(caption: str) -> dict[str, Any] | None:
    """Attributes a caption states, in either style, for scoring only (`lsc world eval`).

    Objects are `[size] colour shape` runs; a Bob-style object names its slot ("at left"); Alice's
    objects take their slots from her layout rule and, without a size word, are the unmarked size. A
    size a Bob-style caption leaves out is None. Returns None
    when the caption does not follow the world's grammar.
    """
    words = [scenes.SYNONYM_BASE.get(w, w) for w in caption.split()]
    text = " " + " ".join(words) + " "
    background = None
    for table in (scenes.ALICE_BACKGROUND, scenes.BOB_BACKGROUND):
        for key, phrase in sorted(table.items(), key=lambda kv: -len(kv[1])):
            if f" {phrase} " in text:
                background = background or key
    objects: list[dict[str, Any]] = []
    bob_slots: list[str | None] = []
    i = 0
    while i < len(words):
        group, end = _plural_group(words, i)
        if group:
            objects.extend(group)
            bob_slots.extend([None] * len(group))
            i = end
            continue
        size = _SIZE_OF.get(words[i])
        k = i + (size is not None)
        if k + 1 < len(words) and words[k] in scenes.COLORS and words[k + 1] in _SHAPE_OF:
            objects.append({"shape": _SHAPE_OF[words[k + 1]], "color": words[k], "size": size, "slot": None})
            rest = " ".join(words[k + 2 : k + 4])
            bob_slots.append(_BOB_SLOT_OF.get(rest))
            i = k + 2
        else:
            i += 1
    if background is None or not objects:
        return None
    if all(s is not None for s in bob_slots):
        slots = tuple(bob_slots)
    elif any(s is not None for s in bob_slots):
        return None
    else:
        said = next((p for p in ("on the left", "on the right") if f" {p} " in text), "")
        slots = next((k for k, p in scenes.ALICE_LAYOUT.items() if len(k) == len(objects) and p == said), None)
        if slots is None:
            return None
        for o in objects:
            o["size"] = o["size"] or _UNMARKED_SIZE
    if len(set(slots)) != len(slots):
        return None
    for o, slot in zip(objects, slots):
        o["slot"] = slot
    objects.sort(key=lambda o: scenes.SLOTS.index(o["slot"]))
    return {"background": background, "count": len(objects), "objects": objects}
