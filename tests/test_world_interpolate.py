"""`lsc world interpolate`: Bob's generator between a base and fine-tunes of it (WiSE-FT), then calibrated.

The shipped generator is made this way (docs/world_meaning.md), so the arithmetic is pinned down to the
bit: fp16 mean of the fine-tunes first, then base + alpha * (mean - base) rounded to fp16 once."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from lsc.backends.world.release import GENERATOR_DERIVED_FILES, write_random_weights


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A base and two 'fine-tunes': the base's files with the generator's tensors from other random seeds."""
    root = tmp_path_factory.mktemp("interp")
    base = write_random_weights(root / "base", seed=0)
    (base / "prior.safetensors").write_bytes(b"made from the base generator")  # a derived file: must not travel
    tuned = []
    for seed in (1, 2):
        other = write_random_weights(root / f"other{seed}", seed=seed)
        folder = root / f"tuned{seed}"
        shutil.copytree(base, folder)
        for name in ("bob_text.safetensors", "bob_unet.safetensors"):
            shutil.copyfile(other / name, folder / name)
        meta = json.loads((folder / "world.json").read_text())
        meta["training"] = {"generator": {"seed": seed, "step": 100 * seed}}
        (folder / "world.json").write_text(json.dumps(meta))
        tuned.append(folder)
    return base, tuned


def interpolate(lsc_main, base, tuned, out, alpha):
    args = ["world", "interpolate", "--base", str(base), "--alpha", str(alpha), "--out", str(out), "--scenes", "3"]
    for folder in tuned:
        args += ["--fine-tuned", str(folder)]
    return lsc_main(*args)


def test_the_generator_is_the_interpolation_and_the_rest_is_the_base(folders, lsc_main, tmp_path):
    base, tuned = folders
    result = interpolate(lsc_main, base, tuned, tmp_path / "mix", 0.75)
    assert result.returncode == 0, result.stderr
    b, t1, t2 = (load_file(str(f / "bob_unet.safetensors")) for f in (base, *tuned))
    mixed = load_file(str(tmp_path / "mix" / "bob_unet.safetensors"))
    for k in b:
        mean = ((t1[k].float() + t2[k].float()) / 2).half()
        assert torch.equal(mixed[k], (b[k].float() + 0.75 * (mean.float() - b[k].float())).half()), k
    assert any(not torch.equal(mixed[k], b[k]) for k in b) and any(not torch.equal(mixed[k], t1[k]) for k in b)
    for name in ("alice.safetensors", "attributes.safetensors", "perceptual.safetensors"):
        assert (tmp_path / "mix" / name).read_bytes() == (base / name).read_bytes()
    assert not any((tmp_path / "mix" / name).exists() for name in GENERATOR_DERIVED_FILES)
    meta = json.loads((tmp_path / "mix" / "world.json").read_text())
    record = meta["training"]["generator"]
    assert record["seed"] == 2 and record["weight_interpolation"]["alpha"] == 0.75
    assert [f["seed"] for f in record["weight_interpolation"]["fine_tuned"]] == [1, 2]
    assert meta["eval"]["scenes"] == 3 and meta["threshold"] == json.loads(result.stdout)["derived_threshold"]


def test_alpha_zero_is_the_base_and_one_is_the_fine_tune(folders, lsc_main, tmp_path):
    base, tuned = folders
    for alpha, expected in ((0, base), (1, tuned[0])):
        assert interpolate(lsc_main, base, tuned[:1], tmp_path / f"a{alpha}", alpha).returncode == 0
        for name in ("bob_text.safetensors", "bob_unet.safetensors"):
            got, want = load_file(str(tmp_path / f"a{alpha}" / name)), load_file(str(expected / name))
            assert all(torch.equal(got[k], want[k]) for k in want), (alpha, name)


def test_bad_input_is_refused_in_one_line_before_anything_is_written(folders, lsc_main, tmp_path):
    base, tuned = folders
    odd = tmp_path / "odd"
    shutil.copytree(tuned[0], odd)
    save_file({"w": torch.zeros(2, dtype=torch.float16)}, str(odd / "alice.safetensors"))  # another captioner
    cases = {
        "alpha": interpolate(lsc_main, base, tuned, tmp_path / "o1", 1.5),
        "differs": interpolate(lsc_main, base, [odd], tmp_path / "o2", 0.5),
        "input": interpolate(lsc_main, base, tuned, tuned[0], 0.5),
        "not weights": interpolate(lsc_main, tmp_path, tuned, tmp_path / "o3", 0.5),
    }
    for why, result in cases.items():
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, (why, result.stderr)
    assert "alice.safetensors" in cases["differs"].stderr
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))
