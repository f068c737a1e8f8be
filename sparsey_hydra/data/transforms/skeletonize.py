"""Transform `skeletonize`: thin strokes to one pixel, so codes depend on shape, not weight."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field


class SkeletonizeParams(BaseModel):
    """Parameters of the `skeletonize` transform."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="Pixels strictly above this count as foreground before thinning.",
    )


def build(params: SkeletonizeParams) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable binarising at `threshold` (strictly above) and thinning; float32 0/1 output."""
    from skimage.morphology import skeletonize as sk_skeletonize  # lazy: skimage imports slowly

    threshold = params.threshold

    def skeletonize(image: torch.Tensor) -> torch.Tensor:
        mask = (image > threshold).cpu().numpy()
        thin = sk_skeletonize(mask)
        return torch.from_numpy(np.asarray(thin, dtype=np.float32))

    return skeletonize
