"""lsc: language-oriented semantic communication for progressive text-to-image generation."""

__version__ = "0.1.0"
