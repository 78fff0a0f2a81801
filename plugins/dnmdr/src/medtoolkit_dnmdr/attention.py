"""Dense, edge-weighted graph attention (GAT, Velickovic et al. 2018) for small batched graphs.

DNMDR runs graph attention on two kinds of small graphs: the snapshot graph of every visit
(a few dozen code nodes; thousands of visits per batch) and the drug graphs (one graph of
``n_drugs`` nodes). Both fit dense ``[..., N, N]`` tensors, which are faster here than
scatter-based message passing and need no Python loop over graphs.

Weighted attention: with edge weights ``w_ij >= 0`` (0 = no edge),
``alpha_ij = w_ij exp(e_ij) / sum_k w_ik exp(e_ik)``, ``e_ij = LeakyReLU(a_dst . z_i + a_src . z_j)``,
that is a softmax over ``e_ij + log w_ij``. Unit weights on the edges give the plain GAT of
DNMDR Eq. 22; the snapshot graphs carry conditional probabilities (Eq. 3-4). A node without
any edge (padding) gets ``alpha = 0`` everywhere, never NaN.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def edge_bias(edge_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The additive attention bias of weighted edges, computed once and shared by layers.

    Args:
        edge_weight: ``[..., N, N]`` non-negative weights (row i: the neighbours of node i;
            0 = no edge).

    Returns:
        ``(bias, has_edge)``: ``[..., N, N]`` ``log w_ij`` on edges and the dtype's most negative
        finite value elsewhere (finite, so edge-less rows stay NaN-free in both passes), and the
        boolean edge mask.
    """
    has_edge = edge_weight > 0
    log_weight = torch.log(edge_weight.clamp_min(torch.finfo(edge_weight.dtype).tiny))
    return log_weight.masked_fill(~has_edge, torch.finfo(edge_weight.dtype).min), has_edge


def weighted_attention(
    z: torch.Tensor,
    edge_weight: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    att_dst: torch.Tensor,
    att_src: torch.Tensor,
    negative_slope: float = 0.2,
) -> torch.Tensor:
    """Attention coefficients of every node over its weighted neighbours.

    Args:
        z: ``[..., N, D]`` transformed node features ``W h``.
        edge_weight: ``[..., N, N]`` non-negative weights (row i: the neighbours of node i;
            0 = no edge), or their :func:`edge_bias`. Broadcasts against ``z``'s leading dimensions.
        att_dst: ``[D]`` attention vector applied to the receiving node i.
        att_src: ``[D]`` attention vector applied to the neighbour j.
        negative_slope: LeakyReLU slope.

    Returns:
        ``[..., N, N]`` coefficients; each row with an edge sums to 1, rows without edges are 0.
    """
    bias, has_edge = edge_weight if isinstance(edge_weight, tuple) else edge_bias(edge_weight)
    scores = (z @ att_dst).unsqueeze(-1) + (z @ att_src).unsqueeze(-2)  # [..., N, N]
    logits = nn.functional.leaky_relu(scores, negative_slope) + bias
    return torch.softmax(logits, dim=-1) * has_edge


class DenseGATLayer(nn.Module):
    """One single-head GAT layer with its own weight: ``h' = ELU(alpha (h W))`` (Eq. 22-23).

    Args:
        in_dim: input width.
        out_dim: output width.
        activation: apply ELU to the output (False for a last, linear layer).
    """

    def __init__(self, in_dim: int, out_dim: int, activation: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        self.att_dst = nn.Parameter(torch.empty(out_dim))
        self.att_src = nn.Parameter(torch.empty(out_dim))
        self.activation = activation
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        bound = math.sqrt(6.0 / (self.att_dst.shape[0] + 1))
        nn.init.uniform_(self.att_dst, -bound, bound)
        nn.init.uniform_(self.att_src, -bound, bound)

    def forward(self, h: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """``[..., N, in_dim]`` features and ``[..., N, N]`` weights -> ``[..., N, out_dim]``."""
        z = h @ self.weight
        out = weighted_attention(z, edge_weight, self.att_dst, self.att_src) @ z
        return nn.functional.elu(out) if self.activation else out
