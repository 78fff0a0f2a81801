"""Small building blocks shared by ``ncf`` and ``dpr``: the split-input MLP and visit scatter/gather.

DPR scores concatenations such as ``[u_i || d_j]`` for every (visit, drug) pair or
``[d^_u || d^_v]`` for every edge. Its MLPs start with a linear layer, and
``W [x || y] + b = W_x x + W_y y + b``, so :class:`SplitMLP` applies the two halves of the
first layer to the (few) distinct inputs and adds them per pair: exact, and no
``[pairs, 2 D]`` concatenation is ever built.
"""

from __future__ import annotations

import torch
from torch import nn


class SplitMLP(nn.Module):
    """``MLP([x || y]) = out(ReLU(left(x) + right(y)))`` with the first layer split in two.

    Parameters: ``left`` (``Linear(left_dim, hidden)`` with the bias), ``right``
    (``Linear(right_dim, hidden, bias=False)``) and ``out`` (``Linear(hidden, out_dim)``),
    i.e. the same function as ``Sequential(Linear(left_dim + right_dim, hidden), ReLU(),
    Linear(hidden, out_dim))`` with ``W = [left.weight | right.weight]``.

    Args:
        left_dim: width of ``x``.
        right_dim: width of ``y``.
        hidden: hidden width.
        out_dim: output width.
        out_bias: whether ``out`` has a bias (False for ``a^T`` of DPR's Eq. 10).
    """

    def __init__(self, left_dim: int, right_dim: int, hidden: int, out_dim: int, out_bias: bool = True) -> None:
        super().__init__()
        self.left = nn.Linear(left_dim, hidden)
        self.right = nn.Linear(right_dim, hidden, bias=False)
        self.out = nn.Linear(hidden, out_dim, bias=out_bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``MLP([x || y])`` for aligned rows: ``x [..., left_dim]``, ``y [..., right_dim]`` -> ``[..., out_dim]``.

        Broadcasting applies to the hidden activations, so ``x [V, 1, Dx]`` with
        ``y [1, N, Dy]`` scores every (row, column) pair: ``[V, N, out_dim]``.
        """
        return self.out(torch.relu(self.left(x) + self.right(y)))

    def gathered(
        self, x: torch.Tensor, x_index: torch.Tensor, y: torch.Tensor, y_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``MLP([x[x_index] || y[y_index]])`` with the first layer applied before the gather.

        Args:
            x: ``[A, left_dim]`` distinct left inputs.
            x_index: ``[P]`` int64 row of ``x`` per pair.
            y: ``[C, right_dim]`` distinct right inputs.
            y_index: ``[P]`` int64 row of ``y`` per pair (None: ``y`` is already one row per pair).

        Returns:
            ``[P, out_dim]``.
        """
        right = self.right(y)
        return self.out(torch.relu(self.left(x)[x_index] + (right if y_index is None else right[y_index])))


def mlp(width: int, hidden: int, out: int) -> nn.Sequential:
    """``Linear(width, hidden) -> ReLU -> Linear(hidden, out)`` (the paper's ``MLP``)."""
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, out))


def scatter_visits(values: torch.Tensor, visit_mask: torch.Tensor) -> torch.Tensor:
    """Place per-real-visit rows back into the padded layout.

    Args:
        values: ``[V, ...]`` one row per real visit, in row-major ``visit_mask`` order.
        visit_mask: ``[B, T]`` bool with ``V`` True entries.

    Returns:
        ``[B, T, ...]`` with zeros at padding visits.

    Raises:
        ValueError: the number of rows is not the number of real visits.
    """
    count = int(visit_mask.sum())
    if values.shape[0] != count:
        raise ValueError(f"scatter_visits: {values.shape[0]} rows for {count} real visits")
    out = values.new_zeros((*visit_mask.shape, *values.shape[1:]))
    out[visit_mask] = values
    return out
