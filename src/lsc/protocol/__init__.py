"""The model-agnostic transmission protocol: caption words, the progressive loop, per-step records."""
