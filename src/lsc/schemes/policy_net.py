"""Alice's ordering policy: a small transformer over the caption's words that scores the next word to send.

Input per word: its token (Alice's vocabulary; a word outside it is [UNK]), its caption position counted
from the start and from the end (clipped to `max_pos - 1`), and whether it was already sent. A bidirectional
encoder reads them all; one score per word comes out. The next word is the unsent word of highest score.

Trained (lsc.schemes.policy_training) to imitate lowest_lpips' greedy choice on world scenes, so planning an
order costs n forward passes of an n-word sequence and no image at all. Saved as one safetensors file whose
metadata holds the vocabulary, the configuration and the training record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1
_PUNCTUATION = ".,;:!?\"'()[]{}"
SCORE_DECIMALS = 5  # scores are rounded before the argmax, so thread-dependent float rounding cannot reorder


@dataclass(frozen=True)
class PolicyConfig:
    vocab_size: int
    dim: int = 64
    layers: int = 2
    heads: int = 4
    ff: int = 128
    max_pos: int = 32
    dropout: float = 0.1


def normalise(word: str) -> str:
    """A word as the policy's vocabulary holds it: lower case, surrounding punctuation stripped."""
    return word.lower().strip(_PUNCTUATION) or UNK


class PolicyVocab:
    """Words -> ids; [PAD] is 0, [UNK] 1, and any word not listed maps to [UNK]."""

    def __init__(self, words: Sequence[str]) -> None:
        self.itos = [PAD, UNK] + [w for w in words if w not in (PAD, UNK)]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def ids(self, words: Sequence[str]) -> list[int]:
        return [self.stoi.get(normalise(w), UNK_ID) for w in words]


class OrderPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos = nn.Embedding(cfg.max_pos, cfg.dim)
        self.rpos = nn.Embedding(cfg.max_pos, cfg.dim)
        self.sent = nn.Embedding(2, cfg.dim)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.score = nn.Linear(cfg.dim, 1)

    def forward(self, tokens: torch.Tensor, sent: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores (B, L) for tokens (B, L), sent flags (B, L) and caption lengths (B,); padding scores -inf."""
        b, length = tokens.shape
        idx = torch.arange(length)[None].expand(b, -1)
        pad = idx >= lengths[:, None]
        top = self.cfg.max_pos - 1
        rpos = (lengths[:, None] - 1 - idx).clamp(0, top)
        x = self.embed(tokens) + self.pos(idx.clamp(max=top)) + self.rpos(rpos) + self.sent(sent.long())
        h = self.norm(self.encoder(x, src_key_padding_mask=pad))
        return self.score(h)[..., 0].masked_fill(pad, float("-inf"))


class Policy:
    """A loaded policy: the network in eval mode and its vocabulary."""

    def __init__(self, model: OrderPolicy, vocab: PolicyVocab, meta: dict[str, Any] | None = None) -> None:
        self.model = model.eval().requires_grad_(False)
        self.vocab = vocab
        self.meta = meta or {}

    @torch.inference_mode()
    def order(self, words: Sequence[str]) -> tuple[list[int], list[list[float]]]:
        """The send order of all words and each step's scores of the unsent words (in word order)."""
        n = len(words)
        if n == 0:
            return [], []
        tokens = torch.tensor([self.vocab.ids(words)])
        lengths = torch.tensor([n])
        sent = torch.zeros(1, n, dtype=torch.long)
        order: list[int] = []
        scores: list[list[float]] = []
        for _ in range(n):
            s = self.model(tokens, sent, lengths)[0].double()
            rest = [j for j in range(n) if not sent[0, j]]
            vals = [round(float(s[j]), SCORE_DECIMALS) for j in rest]
            best = rest[max(range(len(rest)), key=lambda k: (vals[k], -rest[k]))]  # ties: lowest index
            order.append(best)
            scores.append(vals)
            sent[0, best] = 1
        return order, scores


def save_policy(path: Path, model: OrderPolicy, vocab: PolicyVocab, meta: dict[str, Any]) -> None:
    """fp16 safetensors; metadata: vocab, config and `meta` (all JSON strings)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    metadata = {"vocab": json.dumps(vocab.itos[2:]), "config": json.dumps(asdict(model.cfg)), "meta": json.dumps(meta)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def load_policy(path: Path) -> Policy:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    vocab = PolicyVocab(json.loads(metadata["vocab"]))
    model = OrderPolicy(PolicyConfig(**json.loads(metadata["config"])))
    model.load_state_dict(tensors)
    return Policy(model, vocab, json.loads(metadata.get("meta", "{}")))
