"""A small encoder-decoder that rewrites a caption in another style: the `seq2seq` SKD engine's model.

Semantic knowledge distillation needs something that knows both styles. The research code asked a
chat LLM; where captions of the same images in both styles can be had in any number (the embedded
world), Alice can instead train her own translator on (her caption, Bob's caption) pairs, as she
trains her captioner: a word-level transformer encoder-decoder of a few hundred thousand parameters,
decoded greedily (deterministic). It sees caption pairs only, never Bob's generator.

Model-agnostic: the vocabularies and sizes travel in the safetensors file's metadata, so any pair of
styles can be learnt (`lsc.backends.world.skd_translator` trains the world's).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(len(SPECIALS))
FORMAT = "lsc-style-translator-1"


@dataclass
class TranslatorConfig:
    """Sizes and vocabularies of a translator (stored in its weights file)."""

    source_words: list[str] = field(default_factory=list)
    target_words: list[str] = field(default_factory=list)
    dim: int = 64
    heads: int = 4
    layers: int = 2  # encoder layers, and as many decoder layers
    ff: int = 256
    max_len: int = 32  # tokens per side, [BOS] and [EOS] included


class StyleTranslator(nn.Module):
    """Pre-norm transformer encoder-decoder over words (no dropout: training is deterministic per step)."""

    def __init__(self, cfg: TranslatorConfig):
        super().__init__()
        self.cfg = cfg
        self.source_itos = list(SPECIALS) + [w for w in cfg.source_words if w not in SPECIALS]
        self.target_itos = list(SPECIALS) + [w for w in cfg.target_words if w not in SPECIALS]
        self.source_stoi = {w: i for i, w in enumerate(self.source_itos)}
        self.source_embed = nn.Embedding(len(self.source_itos), cfg.dim)
        self.target_embed = nn.Embedding(len(self.target_itos), cfg.dim)
        self.source_pos = nn.Parameter(torch.randn(cfg.max_len, cfg.dim) * 0.02)
        self.target_pos = nn.Parameter(torch.randn(cfg.max_len, cfg.dim) * 0.02)
        enc = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.ff, dropout=0.0, batch_first=True, norm_first=True)
        dec = nn.TransformerDecoderLayer(cfg.dim, cfg.heads, cfg.ff, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, cfg.layers, norm=nn.LayerNorm(cfg.dim), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, cfg.layers, norm=nn.LayerNorm(cfg.dim))
        self.out = nn.Linear(cfg.dim, len(self.target_itos))

    # ------------------------------------------------------------------------------------ tokens
    def unknown_words(self, words: Sequence[str]) -> list[str]:
        """Words of a caption the translator never saw (it cannot translate them)."""
        return [w for w in words if w not in self.source_stoi or w in SPECIALS]

    def source_tokens(self, captions: Sequence[Sequence[str]]) -> torch.Tensor:
        """(B, L) source ids: the words then [EOS], padded; cut to max_len."""
        rows = [[self.source_stoi.get(w, UNK_ID) for w in c][: self.cfg.max_len - 1] + [EOS_ID] for c in captions]
        return _pad(rows)

    def target_tokens(self, captions: Sequence[Sequence[str]]) -> torch.Tensor:
        """(B, L) target ids: [BOS], the words, [EOS], padded; a word outside the vocabulary is an error."""
        stoi = {w: i for i, w in enumerate(self.target_itos)}
        rows = [[BOS_ID] + [stoi[w] for w in c][: self.cfg.max_len - 2] + [EOS_ID] for c in captions]
        return _pad(rows)

    # ----------------------------------------------------------------------------------- network
    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad = source == PAD_ID
        x = self.source_embed(source) * math.sqrt(self.cfg.dim) + self.source_pos[: source.shape[1]]
        return self.encoder(x, src_key_padding_mask=pad), pad

    def decode(self, target_in: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        n = target_in.shape[1]
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        y = self.target_embed(target_in) * math.sqrt(self.cfg.dim) + self.target_pos[:n]
        h = self.decoder(y, memory, tgt_mask=causal, tgt_key_padding_mask=target_in == PAD_ID,
                         memory_key_padding_mask=memory_pad)
        return self.out(h)

    def loss(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced cross-entropy, and the share of target tokens predicted right."""
        memory, pad = self.encode(source)
        logits = self.decode(target[:, :-1], memory, pad)
        gold = target[:, 1:]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1), ignore_index=PAD_ID)
        keep = gold != PAD_ID
        accuracy = (logits.argmax(-1) == gold)[keep].float().mean()
        return loss, accuracy

    @torch.inference_mode()
    def translate(self, captions: Sequence[Sequence[str]]) -> list[list[str]]:
        """Greedy decoding, one list of words per caption (deterministic)."""
        if not captions:
            return []
        memory, pad = self.encode(self.source_tokens(captions))
        out = torch.full((len(captions), 1), BOS_ID, dtype=torch.long)
        done = torch.zeros(len(captions), dtype=torch.bool)
        for _ in range(self.cfg.max_len - 1):
            step = self.decode(out, memory, pad)[:, -1]
            step[:, [PAD_ID, UNK_ID, BOS_ID]] = float("-inf")
            nxt = step.argmax(-1)
            nxt[done] = PAD_ID
            out = torch.cat([out, nxt[:, None]], 1)
            done |= nxt == EOS_ID
            if bool(done.all()):
                break
        words = []
        for row in out[:, 1:].tolist():
            ids = row[: row.index(EOS_ID)] if EOS_ID in row else row
            words.append([self.target_itos[i] for i in ids if i != PAD_ID])
        return words


def _pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_translator(model: StyleTranslator, path: Path, half: bool = True) -> None:
    """Weights (fp16 by default) with the config in the file's metadata: one self-describing file."""
    from safetensors.torch import save_file

    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    tmp = Path(str(path) + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "config": json.dumps(asdict(model.cfg))})
    tmp.replace(path)


def read_config(path: Path) -> TranslatorConfig:
    """The config stored in a translator file; ValueError when the file is not one."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an lsc style translator (format {meta.get('format')!r})")
    return TranslatorConfig(**json.loads(meta["config"]))


@functools.lru_cache(maxsize=4)
def load_translator(path: str) -> StyleTranslator:
    """A translator from its safetensors file, in float32 and eval mode (cached per path)."""
    from safetensors.torch import load_file

    model = StyleTranslator(read_config(Path(path)))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()})
    return model.eval()


def describe(model: StyleTranslator) -> dict[str, Any]:
    return {"parameters": parameter_count(model), **{k: v for k, v in asdict(model.cfg).items() if not k.endswith("_words")}}
