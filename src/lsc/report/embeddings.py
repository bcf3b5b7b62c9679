"""Embedding maps (`lsc report --embeddings`): PCA and t-SNE of Bob's text-encoder embedding of every
partial prompt, and of his images' features, coloured by how much of the caption was sent and by scheme.

One can see the partial prompts move towards the full caption's point (black stars) and whether some
schemes get there sooner. World backend only: the text embedding is Bob's text encoder's output averaged
over the prompt's tokens ([BOS] included, so the empty prompt has a point), the image features are the
attribute classifier's (as FID-world). scikit-learn does the PCA and t-SNE (seeded, so the maps repeat).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lsc.errors import ConfigError
from lsc.report.data import RunData


def _require_sklearn() -> None:
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        raise ConfigError("--embeddings needs scikit-learn: pip install 'lsc[metrics]' (or scikit-learn)")


def world_text_embedding(config: dict[str, Any]) -> Any:
    """A function prompts -> (N, d) mean-pooled Bob text-encoder features, from the run's world weights."""
    import torch

    from lsc.backends.world.models import load_models
    from lsc.backends.world.nets import encode_words
    from lsc.backends.world.options import world_weights_dir

    models = load_models(str(world_weights_dir((config.get("backend_options") or {}).get("weights"))))

    def embed(prompts: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), 256):
                tokens = encode_words(models.bob_vocab, [p.split() for p in prompts[i : i + 256]], models.text.cfg.max_len)
                feats, padding = models.text(tokens)
                keep = (~padding).unsqueeze(-1).float()
                out.append(((feats * keep).sum(1) / keep.sum(1)).numpy())
        return np.concatenate(out).astype(np.float64)

    return embed


def points(data: RunData, cond: str) -> list[dict[str, Any]]:
    """One point per stored step: scheme, image, step, fraction of the caption sent, prompt, image key."""
    out = []
    for (c, scheme, image_id), rows in data.steps.items():
        if c != cond or not rows:
            continue
        n = max(1, rows[-1]["step"])
        out += [{"scheme": scheme, "image_id": image_id, "step": r["step"], "frac": r["step"] / n,
                 "prompt": r["prompt"] or "", "image_key": r["image_key"], "last": r is rows[-1]} for r in rows]
    return out


def project(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-d PCA and t-SNE of the rows of x (perplexity capped for small sets)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    pca = PCA(n_components=2, svd_solver="full").fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return pca, tsne


def draw(data: RunData, out: Path, cond: str = "") -> list[tuple[str, Path]]:
    """Draw the maps into `out`; returns (title, path) per figure. World runs only (ConfigError otherwise)."""
    _require_sklearn()
    if data.config.get("backend", "world") != "world":
        raise ConfigError("--embeddings: Bob's text-encoder embeddings are implemented for the world backend only")
    pts = points(data, cond)
    if len(pts) < 5:
        return []
    from lsc.report.distribution import WorldFeatures, _load
    from lsc.runner.folder import image_path

    text = world_text_embedding(data.config)([p["prompt"] for p in pts])
    figures = [("Bob's text-encoder embedding of each partial prompt", "embeddings_text", text)]
    img_paths = [image_path(data.run_dir, p["image_key"]) for p in pts]
    if all(path.is_file() for path in img_paths):
        uniq = list(dict.fromkeys(img_paths))
        feats, _ = WorldFeatures((data.config.get("backend_options") or {}).get("weights"))(np.stack([_load(p) for p in uniq]))
        row = {p: i for i, p in enumerate(uniq)}
        figures.append(("Bob's image after each word (attribute-classifier features)", "embeddings_images",
                        feats[[row[p] for p in img_paths]]))
    drawn = []
    for title, name, x in figures:
        path = out / f"{name}.png"
        _plot(data, pts, project(x), path, title)
        drawn.append((f"{title}: PCA and t-SNE, coloured by the share of the caption sent and by scheme family", path))
    return drawn


def _plot(data: RunData, pts: list[dict[str, Any]], maps: tuple[np.ndarray, np.ndarray], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    from lsc.report.plots import BASELINE_STYLE, PALETTE, scheme_panels

    family = {"random": ("random", BASELINE_STYLE["color"])}
    for i, (fam, labels) in enumerate(scheme_panels(data)):
        family.update({lab: (fam, PALETTE[i % len(PALETTE)]) for lab in labels})
    frac = np.array([p["frac"] for p in pts])
    last = np.array([p["last"] for p in pts])
    fig, axes = plt.subplots(2, 2, figsize=(11, 9.5), layout="constrained")
    for col, (xy, method) in enumerate(zip(maps, ("PCA", "t-SNE"))):
        ax = axes[0, col]
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=frac, cmap="viridis", s=9, alpha=0.75, linewidths=0)
        ax.scatter(xy[last, 0], xy[last, 1], marker="*", s=70, c="black", label="after the last word")
        ax.set_title(f"{method}: colour = share of the caption sent", fontsize=9)
        ax.legend(fontsize=7, loc="best")
        fig.colorbar(sc, ax=ax, shrink=0.8, label="words sent / caption length")
        ax = axes[1, col]
        for fam, colour in dict(family.values()).items():
            sel = np.array([family.get(p["scheme"], ("other", "0.7"))[0] == fam for p in pts])
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], s=9, alpha=0.7, color=colour, label=fam, linewidths=0)
        ax.set_title(f"{method}: colour = scheme family", fontsize=9)
        ax.legend(fontsize=7, loc="best", markerscale=2)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} ({len(pts)} steps)", fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)
