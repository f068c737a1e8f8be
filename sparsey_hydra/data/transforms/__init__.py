"""Built-in preprocessing transforms: each maps one H×W float32 image to another."""

from __future__ import annotations

from sparsey_hydra.data.transforms import binarize, resize, skeletonize
from sparsey_hydra.plugins import Component

BUILTIN_TRANSFORMS: list[Component] = [
    Component(
        name="resize",
        factory=resize.build,
        params=resize.ResizeParams,
        description="Bilinear resize to height×width (antialiased when shrinking).",
    ),
    Component(
        name="binarize",
        factory=binarize.build,
        params=binarize.BinarizeParams,
        description="Pixels strictly above `threshold` become 1, the rest 0.",
    ),
    Component(
        name="skeletonize",
        factory=skeletonize.build,
        params=skeletonize.SkeletonizeParams,
        description="Binarise at `threshold`, then thin strokes to one pixel (scikit-image).",
    ),
]

__all__ = ["BUILTIN_TRANSFORMS"]
