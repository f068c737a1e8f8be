"""Device choice: CUDA, then MPS, then CPU, unless the user forces one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def intra_op_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Run a block with `threads` CPU threads per operator (no-op off the CPU or for None).

    The learning loop is a long chain of small operators: waking a second thread for each
    costs more than it saves, and far more when the other core is busy.
    """
    if device.type != "cpu" or threads is None or threads == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
