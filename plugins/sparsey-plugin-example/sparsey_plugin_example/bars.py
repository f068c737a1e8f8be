"""Dataset type `bars`: synthetic horizontal and vertical bars (Földiák 1990).

A classic test for sparse, distributed codes: each image holds a few full-length bars, so the
ideal code is compositional. Generated from a seed, so no files and no download.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sparsey_hydra.data.image_set import ImageSet


class BarsParams(BaseModel):
    """Parameters of the `bars` dataset (`dataset.type: bars`)."""

    model_config = ConfigDict(extra="forbid")

    height: int = Field(default=8, ge=2)
    width: int = Field(default=8, ge=2)
    num_items: int = Field(default=200, ge=1)
    bars_per_image: int = Field(default=1, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> BarsParams:
        if self.bars_per_image > self.height + self.width:
            raise ValueError(f"bars_per_image must be <= height + width "
                             f"({self.height + self.width})")
        return self


def load(params: BarsParams) -> ImageSet:
    """`num_items` binary images; the label is the first bar's index (rows, then columns)."""
    gen = torch.Generator().manual_seed(params.seed)
    h, w = params.height, params.width
    images, labels = [], []
    for _ in range(params.num_items):
        bars = torch.randperm(h + w, generator=gen)[:params.bars_per_image].tolist()
        image = torch.zeros(h, w)
        for bar in bars:
            if bar < h:
                image[bar, :] = 1.0
            else:
                image[:, bar - h] = 1.0
        images.append(image)
        labels.append(int(bars[0]))
    return ImageSet(images=images, labels=labels,
                    names=[f"bar{label}/{i}" for i, label in enumerate(labels)])
