"""Device choice: CUDA, then MPS, then CPU, unless the user forces one."""

from __future__ import annotations

import torch


def select_device(requested: str = "auto") -> torch.device:
    """`auto` picks CUDA → MPS → CPU; any other value is used as given (and must exist)."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"system.device={requested} but CUDA is not available; use auto or cpu")
    return dev
