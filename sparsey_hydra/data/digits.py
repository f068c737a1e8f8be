"""Dataset type `digits`: scikit-learn's embedded 8×8 handwritten digits (no download needed)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from sparsey_hydra.data.image_set import ImageSet

#: The embedded images use the integer range 0..16; dividing by it maps them onto [0, 1].
_MAX_PIXEL = 16.0


class DigitsParams(BaseModel):
    """Parameters of the `digits` dataset."""

    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(default=None, ge=1, description="Keep only the first N items.")


def load(params: DigitsParams) -> ImageSet:
    """Load the 1797 embedded digits as 8×8 float32 images in [0, 1], labels 0..9."""
    from sklearn.datasets import load_digits  # imported lazily: sklearn is slow to import

    bunch = load_digits()
    count = len(bunch.target) if params.limit is None else min(params.limit, len(bunch.target))
    images = torch.from_numpy(bunch.images[:count] / _MAX_PIXEL).to(torch.float32)
    labels = [int(t) for t in bunch.target[:count]]
    return ImageSet(
        images=list(images.unbind(0)),
        labels=labels,
        names=[f"{label}/{i}" for i, label in enumerate(labels)],
    )
