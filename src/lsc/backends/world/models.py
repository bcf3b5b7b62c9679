"""The world's networks, loaded once per weights folder: Bob's text encoder and flow U-Net, Alice's
captioner, the attribute classifier and the perceptual metric's channel weights. A receiver's own
files (lsc.backends.world.receivers) load on first use through `WorldModels.cached`."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

from lsc.backends.world import nets
from lsc.backends.world.perceptual import LinearWeights
from lsc.errors import ConfigError, ModelUnavailableError


class WorldModels:
    """Every network of the world, loaded once from a weights folder."""

    def __init__(self, weights_dir: Path):
        meta_path = weights_dir / "world.json"
        if not meta_path.exists():
            raise ModelUnavailableError(
                f"world weights not found in {weights_dir}; train them with `lsc world train --out DIR` "
                "and pass --set backend_options.weights=DIR/weights"
            )
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.bob_vocab = nets.WordVocab(self.meta["bob_vocab"][4:])
        self.alice_vocab = nets.WordVocab(self.meta["alice_vocab"][4:])

        def load(module: torch.nn.Module, name: str) -> torch.nn.Module:
            state = {k: v.float() for k, v in load_file(str(weights_dir / name)).items()}
            module.load_state_dict(state)
            return module.eval().requires_grad_(False)

        self.text = load(nets.BobTextEncoder(nets.TextEncoderConfig(vocab_size=len(self.bob_vocab))), "bob_text.safetensors")
        # channels-last convolutions: 17% less time per image on this CPU (oneDNN's preferred layout);
        # an image may differ from the default layout's by one 8-bit level in a few pixels.
        self.unet = load(nets.FlowUNet(nets.UNetConfig()), "bob_unet.safetensors").to(memory_format=torch.channels_last)
        self.captioner = load(nets.AliceCaptioner(nets.CaptionerConfig(vocab_size=len(self.alice_vocab))), "alice.safetensors")
        self.classifier = load(nets.AttributeNet(nets.ClassifierConfig()), "attributes.safetensors")
        self.channel_weights: list[torch.Tensor] | None = None  # LPIPS "lin" weights; None = baseline
        if (weights_dir / "perceptual.safetensors").exists():
            lin = load(LinearWeights(self.classifier.cfg.channels), "perceptual.safetensors")
            self.channel_weights = [w.detach() for w in lin.weights()]
        self.weights_dir = weights_dir
        self._cache: dict[str, Any] = {}  # a receiver's own files, read on first use

    def cached(self, key: str, load: Callable[[Path], Any]) -> Any:
        """`load(weights_dir)`, run once per key and kept: a receiver's files load on first use."""
        if key not in self._cache:
            self._cache[key] = load(self.weights_dir)
        return self._cache[key]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_text_encoder(folder: Path, expected: str | None, what: str, fix: str) -> None:
    """A receiver trained on Bob's text features must meet the same text encoder it was trained with: a
    one-line ConfigError "<what> another text encoder than this folder's bob_text.safetensors; <fix>"."""
    if expected and expected != file_sha256(Path(folder) / "bob_text.safetensors"):
        raise ConfigError(f"{what} another text encoder than this folder's bob_text.safetensors; {fix}")


@lru_cache(maxsize=4)
def load_models(weights_dir: str) -> WorldModels:
    return WorldModels(Path(weights_dir))

