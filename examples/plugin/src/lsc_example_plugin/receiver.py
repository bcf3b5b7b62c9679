"""mse_receiver: a backend (a receiver) whose perceptual distance is the mean squared pixel error.

A backend is a loader function: its keyword arguments are the study's `backend_options`, it returns a
`lsc.interfaces.Backend`. This one keeps lsc's tiny fake Bob and Alice and swaps the distance.
"""

import dataclasses

import numpy as np

from lsc.interfaces import Backend
from lsc.protocol.testing import load_fake_backend


class MeanSquaredError:
    def reference(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(image, dtype=np.float64)

    def distances(self, reference: np.ndarray, images: np.ndarray) -> np.ndarray:
        imgs = np.asarray(images, dtype=np.float64)
        if imgs.shape[1:] != reference.shape:  # compare at Bob's resolution
            step = reference.shape[0] // imgs.shape[1]
            reference = reference[::step, ::step]
        return ((imgs - reference[None]) ** 2).reshape(len(imgs), -1).mean(axis=1)


def load_mse_receiver(caption: str = "a red ball on green grass", threshold: float = 0.002) -> Backend:
    base = load_fake_backend(caption=caption, threshold=threshold)
    return dataclasses.replace(base, name="mse_receiver", perceptual=MeanSquaredError())
