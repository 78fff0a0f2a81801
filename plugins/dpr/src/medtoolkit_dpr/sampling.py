"""Negative sampling for the two BPR objectives, vectorised, from torch's random generator.

* :func:`sample_negative_drugs`: for every positive (visit, drug) pair, ``k`` drugs outside
  the visit's set, uniformly with replacement (Eq. 5's ``l not in P_i``).
* :func:`sample_other_rows`: for every row (a visit's package), ``k`` other rows of the batch,
  uniformly, preferring rows whose set differs (Eq. 15's ``j != i`` in-batch).

Both draw with ``torch.rand`` on the inputs' device from ``generator`` (None: torch's global
generator, which the run's seed fixes); the callers pass a freshly seeded generator in eval
mode, so validation values are the same at every call.
"""

from __future__ import annotations

import torch


def eval_generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (the eval-mode draws)."""
    return torch.Generator(device=device).manual_seed(seed)


def sample_negative_drugs(
    targets: torch.Tensor, negatives: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``negatives`` uniform negative drugs for every positive of every row that has a negative.

    Args:
        targets: ``[V, N]`` bool (or 0/1) sets, one row per visit.
        negatives: draws per positive (with replacement).
        generator: the random generator (None: torch's global one).

    Returns:
        ``(row, positive, negative)``, each ``[S]`` int64 with ``S = negatives x`` the number of
        positives in rows holding at least one negative: the row, its positive drug and a drug
        drawn uniformly among the row's absent drugs. Rows without a positive or without a
        negative give nothing.
    """
    sets = targets.bool()
    n_drugs = sets.shape[1]
    n_negative = n_drugs - sets.sum(dim=1)
    rows, positives = torch.nonzero(sets & (n_negative > 0).unsqueeze(1), as_tuple=True)
    # absent drugs first (ascending), so the r-th absent drug of row v is order[v, r]
    order = torch.argsort(sets.to(torch.int8), dim=1, stable=True)
    rows = rows.repeat_interleave(negatives)
    positives = positives.repeat_interleave(negatives)
    draw = torch.rand(rows.shape[0], device=sets.device, generator=generator)
    rank = torch.minimum((draw * n_negative[rows]).long(), n_negative[rows] - 1)
    return rows, positives, order[rows, rank]


def set_groups(sets: torch.Tensor) -> torch.Tensor:
    """``[G]`` int64 group id per row: equal rows of ``sets [G, N]`` share an id (0..groups-1)."""
    if sets.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=sets.device)
    return torch.unique(sets.to(torch.int8), dim=0, return_inverse=True)[1]


def sample_other_rows(groups: torch.Tensor, negatives: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """For every row, ``negatives`` rows drawn uniformly among rows of another group.

    A row whose group holds every row (all sets equal) draws among all rows instead.

    Args:
        groups: ``[G]`` int64 group id per row (:func:`set_groups`).
        negatives: draws per row (with replacement).
        generator: the random generator (None: torch's global one).

    Returns:
        ``[G, negatives]`` int64 row indices.
    """
    count = groups.shape[0]
    device = groups.device
    if count == 0 or negatives == 0:
        return torch.zeros((count, negatives), dtype=torch.int64, device=device)
    order = torch.argsort(groups, stable=True)  # rows sorted by group
    sizes = torch.bincount(groups)
    starts = torch.cumsum(sizes, 0) - sizes
    own_size = sizes[groups].unsqueeze(1)  # [G, 1]
    own_start = starts[groups].unsqueeze(1)
    others = count - own_size
    draw = torch.rand((count, negatives), device=device, generator=generator)
    fallback = others == 0
    pool = torch.where(fallback, torch.full_like(others, count), others)
    rank = torch.minimum((draw * pool).long(), pool - 1)
    # the rank-th row outside the own group: skip the group's block in the sorted order
    position = torch.where(fallback | (rank < own_start), rank, rank + own_size)
    return order[position]
