"""Transform `resize`: bring images to a common size (bilinear, antialiased when shrinking)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field


class ResizeParams(BaseModel):
    """Parameters of the `resize` transform."""

    model_config = ConfigDict(extra="forbid")

    height: int = Field(ge=1, description="Output rows.")
    width: int = Field(ge=1, description="Output columns.")


def build(params: ResizeParams) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable resizing an H×W image to params.height×params.width, staying in [0, 1]."""
    size = (params.height, params.width)

    def resize(image: torch.Tensor) -> torch.Tensor:
        if tuple(image.shape) == size:
            return image.to(torch.float32)
        # Antialiasing only matters when shrinking: without it thin strokes alias away.
        shrink = params.height < image.shape[0] or params.width < image.shape[1]
        out = F.interpolate(
            image.to(torch.float32)[None, None], size=size, mode="bilinear",
            align_corners=False, antialias=shrink,
        )[0, 0]
        # Antialiased kernels can overshoot slightly; images must stay in [0, 1].
        return out.clamp_(0.0, 1.0)

    return resize
