"""Transform `salt_and_pepper`: seeded impulse noise, for robustness experiments.

A binary image stays binary (pixels are set to exactly 0 or 1), so it can come after
`binarize`; the same seed gives the same noise over a run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field


class SaltAndPepperParams(BaseModel):
    """Parameters of the `salt_and_pepper` transform."""

    model_config = ConfigDict(extra="forbid")

    amount: float = Field(default=0.05, ge=0, le=1, description="Fraction of pixels replaced.")
    salt_ratio: float = Field(default=0.5, ge=0, le=1,
                              description="Share of the replaced pixels set to 1 (salt).")
    seed: int = Field(default=0, description="Seeds the noise; one stream per run.")


def build(params: SaltAndPepperParams) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable replacing a random `amount` of pixels with 1 (salt) or 0 (pepper)."""
    gen = torch.Generator().manual_seed(params.seed)

    def salt_and_pepper(image: torch.Tensor) -> torch.Tensor:
        hit = torch.rand(image.shape, generator=gen) < params.amount
        salt = torch.rand(image.shape, generator=gen) < params.salt_ratio
        out = image.to(torch.float32).clone()
        out[(hit & salt).to(out.device)] = 1.0
        out[(hit & ~salt).to(out.device)] = 0.0
        return out

    return salt_and_pepper
