"""The embedded scene world: its scenes, small models, their training and the `world` backend."""

# Training step cap of each part (its batch size is its module's in lsc.backends.world.training): the defaults of
# `lsc world train` and of `training.parts.train()` for a part given no cap. The shipped weights were trained with these.
# Step caps of every training part (`lsc world train --<part>-steps`; flow_fast: batch 32 distillation steps).
STEP_CAPS = {"classifier": 3000, "perceptual": 1500, "captioner": 3360, "generator": 14000, "policy": 2000, "flow_fast": 3000,
              "vqvae": 3000, "prior": 3000}
# Share of Bob's training captions stripped of their function words before being cut (`--content-only-rate`).
CONTENT_ONLY_RATE = 0.3
