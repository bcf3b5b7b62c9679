"""The embedded scene world: its scenes, small models, their training and the `world` backend."""

# Training step cap of each part (its batch size is train.py's): the defaults of `lsc world train` and of
# `train()` for a part given no cap. The shipped weights were trained with these.
STEP_CAPS = {"classifier": 3000, "perceptual": 1500, "captioner": 3360, "generator": 14000, "policy": 2000}
# The flow_fast distillation's step cap (batch 32; `lsc world train --part flow_fast --flow-fast-steps`).
FLOW_FAST_STEP_CAP = 3000
