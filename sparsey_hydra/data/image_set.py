"""What every dataset type returns: images in [0, 1] with their labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageSet:
    """A loaded dataset: one float32 H×W tensor in [0, 1] per item, an int label each."""

    images: list[torch.Tensor]
    labels: list[int]
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)
