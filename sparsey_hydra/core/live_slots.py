"""Live input slots: the (frame, MAC, RF slot) triples whose lower MAC is active.

A MAC's input slots are its RF's lower MACs × their CMs. Whether a slot carries an active
input depends on the input alone — the gate counts active lower MACs, never their codes — so
the live slots of a whole block of frames are enumerated ahead, in one `nonzero`, and
familiarity and learning then touch only those: on MNIST about a quarter of the padded table
(every RF padded to the largest, every slot of an inactive input or MAC included).
"""

from __future__ import annotations

import torch


def live_inputs(rf_index: torch.Tensor, active: torch.Tensor,
                lower_active: torch.Tensor) -> torch.Tensor:
    """Which RF entries of one layer carry an active input, over F frames.

    rf_index: M×R (padded with M_low); active: F×M; lower_active: F×M_low. Returns the live
    mask F×M×R: the MAC and its r-th RF MAC both active.
    """
    frames, macs = active.shape
    padded = torch.cat([lower_active, lower_active.new_zeros(frames, 1)], dim=1)
    # gather with an expanded index is several times faster than index_select on bools
    live = active.unsqueeze(-1) & torch.gather(
        padded, 1, rf_index.view(1, -1).expand(frames, -1)).view(frames, macs, -1)
    return live


def live_counts(live: torch.Tensor) -> torch.Tensor:
    """Live RF entries per (frame, MAC), int32 (a bool sum into int64 is ~15× slower)."""
    return live.sum(dim=-1, dtype=torch.int32)


def bag_offsets(counts: torch.Tensor) -> torch.Tensor:
    """Exclusive cumulative sum over the flattened counts: where each bag starts."""
    flat = counts.reshape(-1)
    return (flat.cumsum(0) - flat).view(counts.shape)
