"""The shipped world weights: they know Bob's whole vocabulary, and meet issue 3's targets.

A small held-out sample (the same evaluation as `lsc world eval`, fewer scenes) guards against shipping
weights that regress; the full 200-scene figures are in README.md and in the weights' world.json.
"""

import json

from lsc.backends.world import scenes
from lsc.backends.world.backend import PACKAGED_WEIGHTS, load_models, load_world_backend
from lsc.backends.world.evaluate import evaluate_world


def test_shipped_weights_know_bobs_words():
    backend = load_world_backend(None)
    assert backend.bob_vocabulary == frozenset(scenes.BOB_WORDS)
    meta = json.loads((PACKAGED_WEIGHTS / "world.json").read_text())
    assert backend.default_threshold == meta["threshold"] and "untrained" not in meta
    assert sum(f.stat().st_size for f in PACKAGED_WEIGHTS.glob("*.safetensors")) < 30 * 2**20


def test_shipped_weights_meet_the_targets_on_held_out_scenes():
    backend = load_world_backend(None)
    classifier = load_models(str(PACKAGED_WEIGHTS.resolve())).classifier
    result = evaluate_world(backend, classifier, n_scenes=24, seed=2024)
    assert result["captioner_exact"] >= 0.95
    acc = result["generator_accuracy"]
    targets = {"background": 0.98, "color": 0.90, "count": 0.90, "position": 0.85, "shape": 0.80}
    assert all(acc[k] >= v for k, v in targets.items()), acc
    curve = result["lpips_by_words"]
    assert curve[-1] < curve[len(curve) // 2] < curve[0]
    assert curve[-1] < backend.default_threshold  # a whole caption reaches the success threshold on average
