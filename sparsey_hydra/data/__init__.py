"""Datasets and preprocessing: every dataset type loads into an `ImageSet` in [0, 1]."""

from __future__ import annotations

from sparsey_hydra.data import digits, image_folder, sparsey_raw
from sparsey_hydra.data.image_set import ImageSet
from sparsey_hydra.plugins import Component

BUILTIN_DATASETS: list[Component] = [
    Component(
        name="digits",
        factory=digits.load,
        params=digits.DigitsParams,
        description="scikit-learn's embedded 8×8 handwritten digits (1797 items, no download).",
    ),
    Component(
        name="image_folder",
        factory=image_folder.load,
        params=image_folder.ImageFolderParams,
        description="Class subfolders of PNG/JPEG images, loaded as grayscale.",
    ),
    Component(
        name="sparsey_raw",
        factory=sparsey_raw.load,
        params=sparsey_raw.SparseyRawParams,
        description="Class subfolders of Sparsey .raw files (one byte per pixel, row-major).",
    ),
]

__all__ = ["BUILTIN_DATASETS", "ImageSet"]
