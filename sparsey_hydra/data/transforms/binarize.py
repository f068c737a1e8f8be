"""Transform `binarize`: map pixels to 0/1, as Sparsey's binary input units expect."""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field


class BinarizeParams(BaseModel):
    """Parameters of the `binarize` transform."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="Pixels strictly above this become 1, the rest 0.",
    )


def build(params: BinarizeParams) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable returning `(image > threshold)` as float32 0/1.

    Strictly greater, so that 0/1 images stay unchanged at any threshold in [0, 1) and a
    threshold of 0 keeps every non-black pixel.
    """
    threshold = params.threshold

    def binarize(image: torch.Tensor) -> torch.Tensor:
        return (image > threshold).to(torch.float32)

    return binarize
