"""Per-image state of a transmission: what a scheme reads and what the loop drives.

`ImageContext` (the image, its caption words, Bob's image cache), `LoopSettings`, `make_prompt` (how Bob
orders the words he holds), `Plan` (a scheme's answer) and `ImageError` live here, below both the
schemes and the loop, so that schemes import the protocol and the protocol never imports a scheme.

Everything model-related goes through `ImageContext`, which computes the reference image's perceptual
features once, and caches Bob's images by (prompt, seed) for every scheme run on the same image, so
that a prompt is never generated twice and a batch only carries what is new. With a `CacheJournal`
the cache also outlives the process: every generator call is saved as it completes and a new context
for the same image starts from what was saved, so a killed run loses at most the batch in flight.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Protocol, Sequence

import numpy as np

from lsc.errors import CapabilityError, LscError
from lsc.interfaces import Backend
from lsc.metrics.image import psnr, resize, ssim
from lsc.protocol.words import clean_words, image_key, join_words, stable_seed

PromptOrder = Literal["send", "caption"]


class ImageError(LscError):
    """An image of the study cannot be used (unreadable, wrong shape); the runner records it as failed."""


def make_prompt(words: Sequence[str] | Mapping[int, str], sent: Sequence[int], prompt_order: str = "send") -> str:
    """Bob's prompt from the indices received so far: in send order (research code) or caption order.

    `words` maps a caption index to the word Bob holds for it (a list, or the received words by index).
    """
    indices = list(sent) if prompt_order == "send" else sorted(sent)
    return join_words([words[i] for i in indices])


JournalEntry = tuple[str, str, float, "np.ndarray | None"]
"""(image key, prompt, LPIPS, Bob's image or None when the context did not keep it)."""


class CacheJournal(Protocol):
    """Durable storage of an image context's cache (the run's results.sqlite, see lsc.runner.store).

    Why: a lowest_lpips transmission generates n(n+1)/2 images before its result exists; without a
    journal a kill loses all of them. Entries must come back exactly as recorded (bit for bit), since a
    resumed run has to give the numbers of an uninterrupted one.
    """

    def load(self, image_id: str) -> Iterable[JournalEntry]:
        ...

    def record(self, image_id: str, entries: Sequence[JournalEntry]) -> None:
        ...


class ImageContext:
    """Per-image state shared by all schemes: the reference's perceptual features and Bob's image cache.

    `seed` is Bob's generation seed: the same (prompt, seed) always gives the same image, so the cache
    is exact. Counters (`generator_calls`, `generated_images`, `reference_computations`, `preloaded`)
    let benchmarks and tests check that nothing is recomputed. `journal` (optional) makes the cache
    durable: it is preloaded here and every generator call is recorded as soon as it returns.
    """

    def __init__(self, backend: Backend, image_id: str, image: np.ndarray | None, caption: str, seed: int = 0,
                 max_batch: int | None = None, journal: CacheJournal | None = None) -> None:
        if image is None:
            raise ImageError(f"image {image_id!r} has no pixels")
        arr = np.asarray(image, dtype=np.float32)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageError(f"image {image_id!r} has shape {arr.shape}, expected (H, W, 3)")
        self.backend = backend
        self.image_id = image_id
        self.image = arr
        self.caption = caption
        self.words = clean_words(caption)
        self.seed = int(seed)
        self.max_batch = max_batch
        self.generator_calls = 0
        self.generated_images = 0
        self.generation_s = 0.0  # wall time inside the generator and metric: what a progress note's estimate reads
        self.reference_computations = 0
        self._reference: Any = None
        self._has_reference = False
        self._images: dict[str, np.ndarray] = {}
        self._lpips: dict[str, float] = {}
        self._fidelity: dict[str, tuple[float, float]] = {}
        self._resized_refs: dict[tuple[int, int], np.ndarray] = {}
        self._memo: dict[Any, Any] = {}
        self.journal = journal
        self.preloaded = 0
        self.steps: int | None = None  # sampler steps of a proxy context (see `proxy`); None = the backend's own
        self._proxies: dict[int, ImageContext] = {}
        self._tallies: list[set[str]] = []  # open `counting_prompts` blocks
        if journal is not None:
            self._preload(journal)

    @contextmanager
    def counting_prompts(self) -> Iterator[set[str]]:
        """The distinct prompts (their keys) asked of this context inside the block, cached or not.

        Why: a plan's cost is the images a fresh run would generate for it; `generated_images` misses
        those another scheme or a resumed run's journal already cached for the same image.
        """
        asked: set[str] = set()
        self._tallies.append(asked)
        try:
            yield asked
        finally:  # by identity: nested blocks may hold equal sets
            self._tallies = [t for t in self._tallies if t is not asked]

    def proxy(self, steps: int) -> "ImageContext":
        """A context over the same image whose generator samples with `steps` steps (multi-fidelity search).

        Why separate: its images are cheaper and rougher, so they get their own cache with keys ending in
        `@steps<n>` and never enter this context's cache, its journal or a study's stored images; the
        reference's perceptual features are shared. One proxy per step count, kept for the image's life.
        """
        steps = int(steps)
        if steps not in self._proxies:
            with_steps = getattr(self.backend.generator, "with_steps", None)
            if with_steps is None:
                raise CapabilityError(f"backend {self.backend.name!r}'s generator cannot sample with fewer steps (no with_steps)")
            sub = ImageContext(replace(self.backend, generator=with_steps(steps)), self.image_id, self.image,
                               self.caption, seed=self.seed, max_batch=self.max_batch)
            sub.steps = steps
            sub._reference, sub._has_reference = self.reference, True
            self._proxies[steps] = sub
        return self._proxies[steps]

    def _preload(self, journal: CacheJournal) -> None:
        """Start from what an earlier (killed) process generated for this image with this seed."""
        for key, prompt, lpips, image in journal.load(self.image_id):
            if key != self.key(prompt):
                continue  # another seed's image: not this context's
            self._lpips[key] = float(lpips)
            if image is not None:
                self._images[key] = np.asarray(image, dtype=np.float32)
            self.preloaded += 1

    @property
    def reference(self) -> Any:
        """The perceptual handle of the original image, computed on first use and never again."""
        if not self._has_reference:
            self._reference = self.backend.perceptual.reference(self.image)
            self._has_reference = True
            self.reference_computations += 1
        return self._reference

    def key(self, prompt: str) -> str:
        """Cache key and file name of Bob's image for this prompt (a proxy's keys name its step count)."""
        key = image_key(prompt, self.seed)
        return key if self.steps is None else f"{key}@steps{self.steps}"

    def evaluate(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Bob's images (B, H, W, 3) and their LPIPS (B,) for prompts; only uncached prompts are generated, in one call.

        Duplicates within `prompts` are generated once. With `max_batch` set, new prompts go in chunks.
        """
        keys = self._ensure(prompts, need_images=True, keep_images=True)
        if not keys:
            return np.zeros((0,) + self.image.shape, dtype=np.float32), np.zeros((0,), dtype=np.float64)
        images = np.stack([self._images[k] for k in keys])
        return images, np.array([self._lpips[k] for k in keys], dtype=np.float64)

    def distances(self, prompts: Sequence[str], keep_images: bool = True, need_images: bool = False) -> np.ndarray:
        """LPIPS (B,) of Bob's images for prompts, generating only uncached ones in one call.

        keep_images=False keeps only the distances of newly generated images (the oracle's 2^n images
        would not fit in memory at Stable Diffusion sizes); such a prompt is generated again if its image
        is asked for later. need_images=True makes sure every prompt's image is in the cache afterwards.
        """
        keys = self._ensure(prompts, need_images=need_images, keep_images=keep_images or need_images)
        return np.array([self._lpips[k] for k in keys], dtype=np.float64)

    def _ensure(self, prompts: Sequence[str], need_images: bool, keep_images: bool) -> list[str]:
        keys = [self.key(p) for p in prompts]
        for asked in self._tallies:
            asked.update(keys)
        todo: dict[str, str] = {}
        for p, k in zip(prompts, keys):
            missing = k not in self._lpips or (need_images and k not in self._images)
            if missing and k not in todo:
                todo[k] = p
        if todo:
            items = list(todo.items())
            step = self.max_batch or len(items)
            for start in range(0, len(items), step):
                chunk = items[start : start + step]
                self._generate([p for _, p in chunk], [k for k, _ in chunk], keep_images)
        return keys

    def seconds_per_image(self) -> float | None:
        """Seconds per image this context's generator calls have taken so far (None before the first)."""
        return self.generation_s / self.generated_images if self.generated_images else None

    def _generate(self, prompts: list[str], keys: list[str], keep_images: bool = True) -> None:
        t0 = time.perf_counter()
        images = np.asarray(self.backend.generator.generate(prompts, self.seed), dtype=np.float32)
        self.generator_calls += 1
        self.generated_images += len(prompts)
        if images.ndim != 4 or images.shape[0] != len(prompts) or images.shape[3] != 3:
            raise LscError(f"generator returned shape {images.shape} for {len(prompts)} prompts, expected (B, H, W, 3)")
        dists = np.asarray(self.backend.perceptual.distances(self.reference, images), dtype=np.float64).reshape(-1)
        if dists.shape[0] != len(prompts):
            raise LscError(f"perceptual metric returned {dists.shape[0]} distances for {len(prompts)} images")
        for k, img, d in zip(keys, images, dists):
            if keep_images:
                self._images[k] = img
            self._lpips[k] = float(d)
        self.generation_s += time.perf_counter() - t0
        if self.journal is not None:  # saved per call: a kill loses at most the call in flight
            self.journal.record(self.image_id, [(k, p, self._lpips[k], self._images.get(k) if keep_images else None)
                                                for p, k in zip(prompts, keys)])

    def lpips_of(self, prompt: str) -> float:
        """LPIPS of Bob's image for one prompt (generated if needed)."""
        return float(self.distances([prompt])[0])

    def image_for(self, key: str) -> np.ndarray:
        """Bob's cached image by key (see `key`)."""
        try:
            return self._images[key]
        except KeyError:
            raise KeyError(f"no cached image {key!r} for image {self.image_id!r}") from None

    def cached_keys(self) -> list[str]:
        return list(self._images)

    def fidelity(self, key: str) -> tuple[float, float]:
        """(SSIM, PSNR) of Bob's image against the original, resized to Bob's resolution once per size."""
        if key not in self._fidelity:
            img = self.image_for(key)
            shape = (int(img.shape[0]), int(img.shape[1]))
            if shape not in self._resized_refs:
                self._resized_refs[shape] = resize(self.image, *shape)
            ref = self._resized_refs[shape]
            self._fidelity[key] = (ssim(ref, img), psnr(ref, img))
        return self._fidelity[key]

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Per-image memo for model outputs several schemes read (attention matrices, heat maps)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


@dataclass(frozen=True)
class LoopSettings:
    """How a transmission runs. `seed` is the study seed for random schemes (Bob's seed is the context's).

    step_batch: steps evaluated per generator call; 0 = all steps at once, or 4 at a time when
    stop_at_success (so a run that succeeds early wastes at most 3 generations).
    """

    prompt_order: PromptOrder = "send"
    threshold: float = 0.6
    stop_at_success: bool = False
    seed: int = 0
    step_batch: int = 0

    def __post_init__(self) -> None:
        if self.prompt_order not in ("send", "caption"):
            raise LscError(f"prompt_order must be 'send' or 'caption', not {self.prompt_order!r}")
        if self.step_batch < 0:
            raise LscError(f"step_batch must be >= 0, not {self.step_batch}")

    def rng(self, image_id: str, scheme: str) -> np.random.Generator:
        """The random generator of a scheme on an image, stable across processes and machines."""
        return np.random.default_rng(stable_seed(self.seed, image_id, scheme))


@dataclass
class Plan:
    """Words to send from (the caption, or its SKD rewrite) and indices into them in send order."""

    words: list[str]
    order: list[int]
    rewritten: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
