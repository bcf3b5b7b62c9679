"""The study's identity covers its models: every weights file a run reads is recorded with its fingerprint in
config.resolved.yaml, one function says which world weights folder is used, and a folder refuses to resume on
other weights with one line naming the file. Tests build their own tiny weights (never the shipped ones)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from lsc.config import validate_config
from lsc.errors import ConfigError


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lsc.backends.world.release import write_random_weights

    return write_random_weights(tmp_path_factory.mktemp("w") / "weights", sampler_steps=1)


def _sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _world(weights: Path | None, *extra: tuple[str, object]) -> dict:
    data: dict = {"backend": "world", "images": {"source": "world", "count": 1}, "schemes": ["random"],
                  "oracle": False, "metrics": [], "save_images": False}
    if weights is not None:
        data["backend_options"] = {"weights": str(weights)}
    data.update(dict(extra))
    return data


def test_every_world_weights_file_is_recorded_with_its_sha256(tiny_weights: Path) -> None:
    from lsc.runner.models import model_files

    got = model_files(validate_config(_world(tiny_weights)))
    files = sorted(p.name for p in tiny_weights.iterdir())
    assert "world.json" in files and "bob_unet.safetensors" in files
    assert got == {f"world/{name}": _sha(tiny_weights / name) for name in files}


def test_one_owner_of_the_weights_folder_option_then_variable_then_packaged(tiny_weights: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from lsc.backends.world.options import PACKAGED_WEIGHTS, WEIGHTS_VARIABLE, world_weights_dir
    from lsc.runner.models import model_files

    monkeypatch.delenv(WEIGHTS_VARIABLE, raising=False)
    assert world_weights_dir() == PACKAGED_WEIGHTS.resolve()
    monkeypatch.setenv(WEIGHTS_VARIABLE, str(tiny_weights))
    assert world_weights_dir() == tiny_weights.resolve()
    assert world_weights_dir(tmp_path) == tmp_path.resolve()  # the option wins over the variable
    # the variable reaches the study's record as the option does
    assert model_files(validate_config(_world(None))) == model_files(validate_config(_world(tiny_weights)))


def test_a_folder_refuses_to_resume_on_other_weights_naming_the_file(tiny_weights: Path, tmp_path: Path) -> None:
    import shutil

    from lsc.api import resolved_config
    from lsc.runner.study import run_study

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    cfg = validate_config(_world(weights))
    out = tmp_path / "run"
    run_study(cfg, out, progress=False)
    recorded = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert recorded["models"]["world/world.json"] == _sha(weights / "world.json")
    assert recorded == resolved_config(cfg).to_dict()
    meta = json.loads((weights / "world.json").read_text())
    (weights / "world.json").write_text(json.dumps({**meta, "note": "retrained"}))
    with pytest.raises(ConfigError) as err:
        run_study(cfg, out, progress=False)
    line = str(err.value)
    assert "\n" not in line and "was run on other model files" in line
    assert f"world/world.json changed ({recorded['models']['world/world.json'][:19]} recorded" in line
    # a copied config.resolved.yaml pins its weights: a run on other files is refused before anything runs
    with pytest.raises(ConfigError, match=r"^models: the configuration pins other model files: world/world.json changed"):
        run_study(validate_config(recorded), tmp_path / "other", progress=False)


def test_a_schemes_own_model_files_are_recorded(tmp_path: Path) -> None:
    from lsc.runner.models import model_files

    policy = tmp_path / "my_policy.safetensors"
    policy.write_bytes(b"not a real policy, only its bytes matter here")
    cfg = validate_config({"backend": "lsc.protocol.testing:load_fake_backend", "images": {"source": "world"},
                           "schemes": [{"name": "learned", "weights": str(policy), "label": "mine"}]})
    got = model_files(cfg)
    assert got["scheme mine/my_policy.safetensors"] == _sha(policy)
    assert list(got) == ["scheme mine/my_policy.safetensors"]  # a plugin backend's version is `plugins:`'s
