"""The Code Selection Algorithm (spec §3): familiarity → expansivity → μ → one winner per CM.

All functions work on every MAC of a layer at once (any leading axes: frames, MACs). The
learning loop and batched recognition call the very same functions, so a frame's code does
not depend on how many frames were processed together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MU_FORMS = ("floor", "paper", "compat")
COMPAT_EPSILON = 1e-6


@dataclass(frozen=True)
class CSAParams:
    """The CSA's knobs, in canonical meaning (compat: sparseypy's meaning of the same keys)."""

    num_cms: int
    num_neurons: int
    sigmoid_lambda: float = 28.0
    sigmoid_phi: float = 0.5
    sigmoid_chi: float = 100.0
    min_familiarity: float = 0.1
    familiarity_exponent: float = 2.0
    mu_form: str = "floor"
    mu_floor: float = 1.0
    v_hi: float | None = 0.999
    v_lo: float = 0.0


def exact_dtype(device: torch.device) -> torch.dtype:
    """float64 for the CSA's short sums (exact there); MPS has no float64, so float32."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass(frozen=True)
class PaddedCMs:
    """MACs of several layers stacked with Q and K padded to the largest (the fused loop).

    Per MAC: its Q (float64, for G) and χ·K; padded cells have u = 0 and are given μ = 0 by
    the caller, so they are never drawn.
    """

    num_cms: torch.Tensor  # M float64: Q_ℓ
    chi_k: torch.Tensor  # M float: χ·K_ℓ


def familiarity(
    u: torch.Tensor, n_safe: torch.Tensor, p: CSAParams, padded: PaddedCMs | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """V = u / n shaped …×Q×K, and G = mean over CMs of max_k V.

    `n_safe` is the active-input count clamped to ≥ 1: where n = 0, u = 0 and so V = 0.
    """
    v = (u / n_safe.unsqueeze(-1)).view(*u.shape[:-1], p.num_cms, p.num_neurons)
    return v, global_familiarity(v.amax(dim=-1),
                                 p.num_cms if padded is None else padded.num_cms)


def global_familiarity(v_max: torch.Tensor, num_cms: int | torch.Tensor,
                       cm_dim: int = -1) -> torch.Tensor:
    """G = mean over CMs of max_k V, from the per-CM maxima (CMs on `cm_dim`).

    The sum over CMs is taken in float64, where it is exact (Q values u/n of float32), so no
    summation order — and no padding with zero CMs — can change G by a bit.
    """
    return (v_max.sum(dim=cm_dim, dtype=exact_dtype(v_max.device)) / num_cms).float()


def expansivity(g: torch.Tensor, p: CSAParams, padded: PaddedCMs | None = None) -> torch.Tensor:
    """η = 1 + χ·K·ĝ^γ with ĝ the familiarity above the floor G⁻ (canonical, [SC])."""
    g_hat = ((g - p.min_familiarity) / (1.0 - p.min_familiarity)).clamp_(min=0.0)
    chi_k = p.sigmoid_chi * p.num_neurons if padded is None else padded.chi_k
    return g_hat.pow_(p.familiarity_exponent).mul_(chi_k).add_(1.0)


def selection_weights(v: torch.Tensor, g: torch.Tensor, p: CSAParams,
                      padded: PaddedCMs | None = None) -> torch.Tensor:
    """μ per cell (…×Q×K) in the configured form; the contrast grows with G."""
    if p.mu_form == "compat":
        # sparseypy's form (B1): η has no floor, so it cancels in ρ; kept only for comparison.
        if padded is not None:
            raise ValueError("mu_form compat is not fused across layers")
        eta_sp = (p.sigmoid_chi * (g - p.min_familiarity) / (1.0 - p.min_familiarity)).clamp(min=0)
        return eta_sp[..., None, None] / (1 + torch.exp(-p.sigmoid_lambda * v + p.sigmoid_phi)) \
            + COMPAT_EPSILON
    eta = expansivity(g, p, padded)[..., None, None]
    sig = (v - p.sigmoid_phi).mul_(p.sigmoid_lambda).sigmoid_()
    if p.mu_form == "floor":
        if p.v_hi is not None:
            # V ≥ V_hi takes μ = max(η, μ_floor): exactly what σ = 1 gives in the floor form.
            sig.masked_fill_(v >= p.v_hi, 1.0)
        mu = (sig * eta).clamp_(min=p.mu_floor)
    elif p.mu_form == "paper":
        mu = (eta - 1.0) * sig + 1.0
        if p.v_hi is not None:
            mu = torch.where(v >= p.v_hi, eta.expand_as(mu), mu)
    else:
        raise ValueError(f"mu_form must be one of {MU_FORMS}, got '{p.mu_form}'")
    if p.v_lo > 0:
        mu = torch.where(v < p.v_lo, torch.full_like(mu, p.mu_floor), mu)
    return mu


def sample_winners(mu: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One winner per CM from ρ = μ/Σμ by inverse CDF, one uniform draw per CM ([SC]).

    `uniform` has μ's shape without K. Comparing the unnormalised CDF with u·Σμ is the
    same draw as comparing the CDF of ρ with u, with one division fewer. The CDF is summed in
    float64, where it is exact (μ ∈ [μ_floor, η] spans far fewer than 29 binary orders), so
    neither the scan's order nor zero cells padded after the K real ones can change a draw.
    """
    cdf = torch.cumsum(mu, dim=-1, dtype=exact_dtype(mu.device))
    # u < 1, so u·Σμ ≤ Σμ = the last CDF entry: the count is at most K − 1.
    return (cdf < (uniform * cdf[..., -1]).unsqueeze(-1)).sum(dim=-1)


def argmax_winners(v: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Recognition: argmax_k V, ties broken uniformly at random (not lowest index, B4).

    One uniform per CM (`uniform` has V's shape without K) picks the ⌊u·n⌋-th of the n tied
    cells — the same distribution as a random key per cell, with K times fewer draws.
    """
    ties = v == v.amax(dim=-1, keepdim=True)
    # bool scans into int32: into int64 they are ~3× slower on a large batch
    rank = ties.cumsum(dim=-1, dtype=torch.int32)  # a tie's rank among the ties, from 1
    count = rank[..., -1:]
    pick = torch.minimum((uniform.unsqueeze(-1) * count).int(), count - 1)
    # the (pick+1)-th tie sits after exactly the positions whose tie rank is ≤ pick
    return (rank <= pick).sum(dim=-1, dtype=torch.int32).long()


def argmax_one_hot(v: torch.Tensor, uniform: torch.Tensor, active: torch.Tensor | None = None,
                   v_max: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`argmax_winners` for V held frames last (…×K×F): the same pick from the same uniform
    (…×F), as winners (…×F, float32) and the one-hot code (…×K×F, bfloat16).

    Built for long rows of frames: no bool tensors (writing them is several times slower
    than writing numbers), comparisons into float32 (into another dtype torch makes a
    temporary and copies), and no scan along K — the tie ranks are one small matmul. Where
    `active` (broadcastable to `uniform`) is False the code is all zero. `v_max` is V's max
    over K (keepdim), when the caller has it.
    """
    k = v.shape[-2]
    if v_max is None:
        v_max = v.amax(dim=-2, keepdim=True)
    ties = torch.empty(v.shape, device=v.device)
    torch.eq(v, v_max, out=ties)
    # 2·(ties before cell k) + [k is a tie]: the tie of rank r (from 1) reads 2r − 1, every
    # other cell an even number (small integers: exact)
    steps = 2 * torch.ones(k, k, device=v.device).tril_(-1) + torch.eye(k, device=v.device)
    rank2 = torch.matmul(steps, ties)
    count = rank2[..., -1, :].add(1.0).div_(2.0).floor_()
    pick = torch.minimum((uniform * count).floor_(), count - 1.0)
    if active is not None:
        pick.masked_fill_(~active, -2.0)  # matches no rank
    code = torch.eq(rank2, pick.mul_(2.0).add_(1.0).unsqueeze(-2), out=ties)
    cells = torch.arange(k, device=v.device, dtype=torch.float32).view(1, k)
    return torch.matmul(cells, code).squeeze(-2), code.to(torch.bfloat16)
