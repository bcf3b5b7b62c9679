"""Scheme `learned` and its policy: no generator call to plan, unknown words, traces, resumable training."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from lsc.schemes import policy_training as P
from lsc.backends.world import scenes
from lsc.cli import app
from lsc.errors import ConfigError
from lsc.protocol.loop import ImageContext, LoopSettings, transmit
from lsc.protocol.testing import FakeGenerator, fake_backend
from lsc.schemes import get_scheme, list_schemes
from lsc.schemes.learned import packaged_policy
from lsc.schemes.policy_net import UNK_ID, OrderPolicy, PolicyConfig, PolicyVocab, load_policy, save_policy

VOCAB = ["a", "red", "blue", "ball", "box", "on", "the", "left", "grass", "sky", "and", "small"]
# The synthetic greedy: the unsent word of highest value goes next (LPIPS = 2 - value), ties to the lowest index.
VALUE = {"red": 1.0, "blue": 1.0, "ball": 0.8, "box": 0.8, "grass": 0.6, "sky": 0.6, "left": 0.4, "small": 0.3,
         "on": 0.1, "the": 0.1, "a": 0.0, "and": 0.05}


def random_policy(path, seed=0):
    torch.manual_seed(seed)
    vocab = PolicyVocab(VOCAB)
    save_policy(path, OrderPolicy(PolicyConfig(vocab_size=len(vocab))), vocab, {"test": True})
    return path


def counting_ctx(caption="a red ball on the left on grass"):
    gen = FakeGenerator(size=8)
    backend = fake_backend(caption, generator=gen, perceptual_size=8)
    image = scenes.render(scenes.world_scene(0, 0))
    return ImageContext(backend, "img", image, caption, seed=0), gen


def test_learned_is_registered_as_her_own_policy():
    info = {s.name: s for s in list_schemes()}["learned"]
    assert info.alice_holds == "her own policy"
    assert info.requires == frozenset({"generator"})


def test_learned_plans_with_zero_generator_calls_and_is_deterministic(tmp_path):
    path = random_policy(tmp_path / "policy.safetensors")
    ctx, gen = counting_ctx()
    scheme = get_scheme("learned", weights=str(path))
    plan = scheme.plan(ctx, LoopSettings())
    assert gen.calls == [] and ctx.generator_calls == 0 and ctx.generated_images == 0
    assert sorted(plan.order) == list(range(len(ctx.words)))
    assert plan.info["alice_generator_calls"] == 0
    # the same order again, from a fresh load of the same file, and from the folder holding it
    again = get_scheme("learned", weights=str(tmp_path)).plan(counting_ctx()[0], LoopSettings())
    assert again.order == plan.order
    assert load_policy(path).order(ctx.words)[0] == plan.order
    # the transmission then generates only the n+1 points of the curve
    result = transmit(ctx, scheme, LoopSettings(prompt_order="caption", threshold=0.0))
    assert [s.word_sent for s in result.steps[1:]] == [ctx.words[i] for i in plan.order]
    assert ctx.generated_images <= len(ctx.words) + 1


def test_unknown_words_map_to_unk_and_do_not_crash(tmp_path):
    path = random_policy(tmp_path / "policy.safetensors")
    vocab = PolicyVocab(VOCAB)
    assert vocab.ids(["Red", "ball.", "zebra", "!!", "Ã©tÃ©"]) == [vocab.stoi["red"], vocab.stoi["ball"], UNK_ID, UNK_ID, UNK_ID]
    caption = "A zebra, quite purple, runs through tall grass!" + " word" * 40  # longer than the position table
    ctx, gen = counting_ctx(caption)
    plan = get_scheme("learned", weights=str(path)).plan(ctx, LoopSettings())
    assert sorted(plan.order) == list(range(len(ctx.words))) and gen.calls == []
    assert get_scheme("learned", weights=str(path)).plan(counting_ctx("")[0], LoopSettings()).order == []


def test_a_missing_policy_file_is_a_one_line_error(tmp_path):
    ctx, _ = counting_ctx()
    with pytest.raises(ConfigError, match="no policy file"):
        get_scheme("learned", weights=str(tmp_path / "nope.safetensors")).plan(ctx, LoopSettings())
    with pytest.raises(ConfigError, match="has no option"):
        get_scheme("learned", weight="x")


def test_scene_trace_records_every_candidate_and_the_greedy_pick():
    backend = fake_backend("a red ball on the left on grass", generator=FakeGenerator(size=8), perceptual_size=8)
    trace = P.scene_trace(backend, 3, 7777)
    n = len(trace["words"])
    assert trace["image_id"] == "world-7777-00003" and sorted(trace["order"]) == list(range(n))
    assert 0 < trace["images"] <= n * (n + 1) // 2  # fewer when two prompts coincide ("on" twice)
    assert backend.generator.generated == trace["images"]  # the candidates' LPIPS came from the cache
    for k, step in enumerate(trace["steps"]):
        assert step["candidates"] == [j for j in range(n) if j not in trace["order"][:k]]
        lp = np.array(step["lpips"])
        assert step["pick"] == step["candidates"][int(np.argmin(lp))]  # greedy: lowest LPIPS, lowest index on ties


def synthetic_traces(count, seed=0):
    """Traces whose greedy follows VALUE: the policy can learn it from the words alone."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        words = [VOCAB[k] for k in rng.choice(len(VOCAB), size=int(rng.integers(3, 9)), replace=False)]
        order, steps = [], []
        for _ in range(len(words)):
            rest = [j for j in range(len(words)) if j not in order]
            lpips = [2.0 - VALUE[words[j]] + 0.001 * j for j in rest]
            pick = rest[int(np.argmin(lpips))]
            steps.append({"candidates": rest, "lpips": lpips, "pick": pick})
            order.append(pick)
        out.append({"index": i, "image_id": f"world-7777-{i:05d}", "caption": " ".join(words), "words": words,
                    "order": order, "steps": steps, "images": 0, "seconds": 0.0})
    return out


def synthetic_folder(tmp_path, count):
    weights = tmp_path / "weights"
    weights.mkdir(parents=True)
    (weights / "world.json").write_text(json.dumps({"alice_vocab": ["[PAD]", "[UNK]", "[BOS]", "[EOS]"] + VOCAB}))
    folder = tmp_path / "train" / "policy"
    folder.mkdir(parents=True)
    meta = {"fingerprint": P.weights_fingerprint(weights), "trace_seed": P.TRACE_SEED, "bob_seed": P.BOB_SEED,
            "prompt_order": P.PROMPT_ORDER, "scheme": "lowest_lpips greedy", "caption_source": "alice"}
    (folder / "traces.json").write_text(json.dumps(meta))
    (folder / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in synthetic_traces(count)))
    return weights, folder


def test_cached_traces_are_not_regenerated_and_a_cut_line_is_dropped(tmp_path, monkeypatch):
    weights, folder = synthetic_folder(tmp_path, 5)
    import lsc.backends.world.backend as B

    monkeypatch.setattr(B, "load_world_backend", lambda *a, **k: pytest.fail("traces were regenerated"))
    assert len(P.ensure_traces(folder, weights, 5, P.TRACE_SEED, deadline=float("inf"))) == 5
    with (folder / "traces.jsonl").open("a") as f:
        f.write('{"index": 5, "words": ["a"')  # a kill in the middle of a line
    assert len(P._read_traces(folder / "traces.jsonl")) == 5
    assert (folder / "traces.jsonl").read_text().endswith("}\n")
    assert len(P.ensure_traces(folder, weights, 5, P.TRACE_SEED, deadline=0.0)) == 5
    with pytest.raises(ConfigError, match="trace_seed"):
        P.ensure_traces(folder, weights, 5, 1234, deadline=float("inf"))
    (weights / "world.json").write_text(json.dumps({"alice_vocab": VOCAB, "other": 1}))
    with pytest.raises(ConfigError, match="fingerprint"):
        P.ensure_traces(folder, weights, 5, P.TRACE_SEED, deadline=float("inf"))


def test_policy_learns_the_greedy_from_traces(tmp_path):
    torch.set_num_threads(1)
    weights, folder = synthetic_folder(tmp_path, 60)
    state = P.train_policy(tmp_path / "train", minutes=5, max_steps=200, weights=weights, trace_scenes=60, batch_size=32)
    assert state["complete"] and state["traces"] == 60 and state["held_out_scenes"] == 6
    assert state["validation"]["agree"] > 0.9  # held-out scenes: the rule, not the examples, was learnt
    path = P.export_policy(tmp_path / "train", tmp_path / "out" / "policy.safetensors")
    policy = load_policy(path)
    assert policy.meta["traces"]["trace_seed"] == P.TRACE_SEED and "weights" not in policy.meta["traces"]
    assert all(v.dtype == torch.float16 for v in load_file(str(path)).values())
    words = "a small blue box on the sky".split()
    assert [words[i] for i in policy.order(words)[0]][:3] == ["blue", "box", "sky"]



def test_policy_training_resumed_equals_uninterrupted(tmp_path):
    torch.set_num_threads(1)
    runs = {}
    for name, stops in (("a", [None]), ("b", [7, None])):  # b is interrupted at step 7, then resumed
        weights, folder = synthetic_folder(tmp_path / name, 20)
        for stop in stops:
            state = P.train_policy(tmp_path / name / "train", minutes=5, max_steps=16, weights=weights, trace_scenes=20,
                                   batch_size=8, stop_at=stop)
            assert state["complete"] == (stop is None) and state["step"] == (stop or 16)
        runs[name] = load_file(str(folder / "checkpoint.safetensors"))
    a, b = runs["a"], runs["b"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_policy_part_trains_alone(tmp_path):
    result = CliRunner().invoke(app, ["world", "train", "--out", str(tmp_path), "--part", "policy", "--part", "generator"])
    assert result.exit_code != 0 and "call of its own" in str(result.exception or result.output)


def test_shipped_policy_is_small_fp16_and_plans_a_world_caption():
    path = packaged_policy()
    assert path.is_file() and path.stat().st_size < 4 * 2**20
    policy = load_policy(path)
    assert policy.meta["traces"]["trace_seed"] not in (0, 2024)  # disjoint from the studies' and the eval's scenes
    from lsc.backends.world.backend import PACKAGED_WEIGHTS

    assert policy.meta["traces"]["fingerprint"] == P.weights_fingerprint(PACKAGED_WEIGHTS), (
        "the shipped policy was traced with other weights: retrain it (lsc world train --part policy)")
    ctx, gen = counting_ctx(scenes.alice_caption(scenes.world_scene(1, 0)))
    order = get_scheme("learned").plan(ctx, LoopSettings()).order
    assert sorted(order) == list(range(len(ctx.words))) and gen.calls == []


@pytest.mark.slow
def test_world_train_policy_command_traces_and_exports(tmp_path):
    out = tmp_path / "train"
    args = ["world", "train", "--out", str(out), "--part", "policy", "--policy-scenes", "2", "--policy-steps", "3",
            "--minutes", "5", "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    traces = [json.loads(line) for line in (out / "policy" / "traces.jsonl").read_text().splitlines()]
    assert [t["image_id"] for t in traces] == ["world-7777-00000", "world-7777-00001"]
    for t in traces:
        n = len(t["words"])
        assert t["images"] <= n * (n + 1) // 2 and len(t["steps"]) == n
    assert load_policy(out / "weights" / "policy.safetensors").meta["training"]["step"] == 3
    again = CliRunner().invoke(app, args)  # finished: nothing is traced or trained again
    assert again.exit_code == 0 and (out / "policy" / "traces.jsonl").read_text().count("\n") == 2
