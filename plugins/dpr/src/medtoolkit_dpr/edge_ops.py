"""Per-edge work of DPR-WG over pair-edges, fast and in bounded memory.

The two computations that cannot be factorised per node are evaluated edge by edge:

* :func:`edge_context`: Eq. 10's ``c_vu = tanh(a^T ReLU(A_u + B_v))`` with ``A = W_l d^`` and
  ``B = W_r d^`` computed once per pair-node (the first layer of ``MLP([d^_u || d^_v])`` split);
* :func:`edge_gru_sum`: Eq. 12's ``M_u = sum_v GRU(e^_vu m_v, h_u)`` with the GRU's input
  transform computed once per pair-node (``W_ih (e m) = e (W_ih m)``, exact) and its hidden
  transform once per pair-node, so an edge costs a handful of element-wise vector operations.

Both are :class:`torch.autograd.Function` s with hand-written backward passes (checked
against autograd by ``gradcheck`` in the tests). They run over blocks of :data:`EDGE_BLOCK`
edges, vectorised inside a block and in place where possible, so a block's intermediates
(``[block, 3 D]``) stay in the CPU cache; only the inputs and the per-edge output are kept
for the backward pass, which recomputes the block's gates. Memory is ``O(nodes + edges)``,
never ``O(edges x D)``.
"""

from __future__ import annotations

from typing import Any

import torch

#: pair-edges per vectorised block (a block's [block, 3 D] gates fit in the cache)
EDGE_BLOCK = 2048


def _blocks(count: int, block: int) -> range:
    return range(0, count, max(int(block), 1))


class _EdgeContext(torch.autograd.Function):
    """``c = tanh(ReLU(left[target] + right[source]) @ weight)`` per edge."""

    @staticmethod
    def forward(ctx: Any, left: torch.Tensor, right: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                target: torch.Tensor, source: torch.Tensor, block: int) -> torch.Tensor:
        out = left.new_empty(target.shape[0])
        for start in _blocks(target.shape[0], block):
            stop = start + block
            hidden = left.index_select(0, target[start:stop]).add_(right.index_select(0, source[start:stop]))
            torch.tanh(hidden.relu_() @ weight, out=out[start:stop])
        ctx.save_for_backward(left, right, weight, target, source, out)
        ctx.block = block
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        left, right, weight, target, source, out = ctx.saved_tensors
        block = ctx.block
        grad_left, grad_right = torch.zeros_like(left), torch.zeros_like(right)
        grad_weight = torch.zeros_like(weight)
        pre = grad * (1 - out * out)  # d c / d (a . relu(z)), [PE]
        for start in _blocks(target.shape[0], block):
            stop = start + block
            t, s = target[start:stop], source[start:stop]
            hidden = left.index_select(0, t).add_(right.index_select(0, s))
            active = hidden > 0
            hidden.relu_()
            grad_weight.add_(hidden.T @ pre[start:stop])
            grad_hidden = torch.outer(pre[start:stop], weight).mul_(active)
            grad_left.index_add_(0, t, grad_hidden)
            grad_right.index_add_(0, s, grad_hidden)
        return grad_left, grad_right, grad_weight, None, None, None


def edge_context(
    left: torch.Tensor,
    right: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    source: torch.Tensor,
    block: int = EDGE_BLOCK,
) -> torch.Tensor:
    """``c_e = tanh(weight . ReLU(left[target_e] + right[source_e]))`` for every edge ``e``.

    Args:
        left: ``[PN, H]`` first-layer half applied to the target's features (with the bias).
        right: ``[PN, H]`` first-layer half applied to the source's features.
        weight: ``[H]`` the vector ``a``.
        target: ``[PE]`` int64 target pair-node per edge.
        source: ``[PE]`` int64 source pair-node per edge.
        block: edges per vectorised block.

    Returns:
        ``[PE]`` values in ``(-1, 1)``.
    """
    return _EdgeContext.apply(left, right, weight, target, source, block)


def _gates(input_gates: torch.Tensor, input_bias: torch.Tensor, hidden_gates: torch.Tensor,
           weight: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
           dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One block's ``(x, g, rz, n)``: input pre-activations ``e W_ih m_v + b_ih`` ``[C, 3D]``, hidden
    pre-activations ``W_hh h_u + b_hh`` ``[C, 3D]``, ``sigmoid`` of the reset/update gates
    ``[C, 2D]`` and the candidate ``n`` ``[C, D]``."""
    x = input_gates.index_select(0, source).mul_(weight.unsqueeze(1)).add_(input_bias)
    g = hidden_gates.index_select(0, target)
    rz = torch.add(x[:, :2 * dim], g[:, :2 * dim]).sigmoid_()
    n = torch.addcmul(x[:, 2 * dim:], rz[:, :dim], g[:, 2 * dim:]).tanh_()
    return x, g, rz, n


class _EdgeGRUSum(torch.autograd.Function):
    """``M = index_add(target, GRUCell(weight * m[source], h[target]))`` (gate order r, z, n)."""

    @staticmethod
    def forward(ctx: Any, input_gates: torch.Tensor, input_bias: torch.Tensor,  # type: ignore[override]
                hidden_gates: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor,
                source: torch.Tensor, target: torch.Tensor, block: int) -> torch.Tensor:
        dim = hidden.shape[1]
        total = torch.zeros_like(hidden)
        for start in _blocks(target.shape[0], block):
            stop = start + block
            t = target[start:stop]
            _, _, rz, n = _gates(input_gates, input_bias, hidden_gates, weight[start:stop],
                                 source[start:stop], t, dim)
            # (1 - z) n + z h_u = n + z (h_u - n)
            out = hidden.index_select(0, t).sub_(n).mul_(rz[:, dim:]).add_(n)
            total.index_add_(0, t, out)
        ctx.save_for_backward(input_gates, input_bias, hidden_gates, hidden, weight, source, target)
        ctx.block = block
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        input_gates, input_bias, hidden_gates, hidden, weight, source, target = ctx.saved_tensors
        block, dim = ctx.block, hidden.shape[1]
        grad = grad.contiguous()
        grad_input_gates = torch.zeros_like(input_gates)
        grad_hidden_gates = torch.zeros_like(hidden_gates)
        grad_hidden = torch.zeros_like(hidden)
        grad_bias = torch.zeros_like(input_bias)
        grad_weight = torch.zeros_like(weight)
        for start in _blocks(target.shape[0], block):
            stop = start + block
            s, t, w = source[start:stop], target[start:stop], weight[start:stop]
            x, g, rz, n = _gates(input_gates, input_bias, hidden_gates, w, s, t, dim)
            r, z = rz[:, :dim], rz[:, dim:]
            go = grad.index_select(0, t)  # dL/d out per edge
            grad_hidden.index_add_(0, t, go * z)
            d_pre = torch.empty_like(x)  # dL/d (input pre-activations) of r, z, n
            d_n = go * (1 - z)
            d_pre[:, 2 * dim:] = d_n.mul_(1 - n * n)
            # z: dL/dz = go (h_u - n); pre-activation through the sigmoid
            d_pre[:, dim:2 * dim] = hidden.index_select(0, t).sub_(n).mul_(go).mul_(z * (1 - z))
            # r: n = tanh(x_n + r g_n)
            d_pre[:, :dim] = (d_pre[:, 2 * dim:] * g[:, 2 * dim:]).mul_(r * (1 - r))
            d_hidden_gates = d_pre.clone()
            d_hidden_gates[:, 2 * dim:].mul_(r)
            grad_hidden_gates.index_add_(0, t, d_hidden_gates)
            grad_bias.add_(d_pre.sum(0))
            raw = input_gates.index_select(0, s)
            grad_weight[start:stop] = (d_pre * raw).sum(1)
            grad_input_gates.index_add_(0, s, d_pre.mul_(w.unsqueeze(1)))
        return grad_input_gates, grad_bias, grad_hidden_gates, grad_hidden, grad_weight, None, None, None


def edge_gru_sum(
    input_gates: torch.Tensor,
    input_bias: torch.Tensor,
    hidden_gates: torch.Tensor,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    block: int = EDGE_BLOCK,
) -> torch.Tensor:
    """``M_u = sum over edges v -> u of GRUCell(weight_e * m_v, h_u)``, exactly as ``torch.nn.GRUCell``.

    Args:
        input_gates: ``[PN, 3D]`` ``W_ih m`` per pair-node (no bias; gate order r, z, n).
        input_bias: ``[3D]`` ``b_ih``.
        hidden_gates: ``[PN, 3D]`` ``W_hh h + b_hh`` per pair-node.
        hidden: ``[PN, D]`` ``h`` per pair-node.
        weight: ``[PE]`` scalar edge weight ``e^`` per edge.
        source: ``[PE]`` int64 source pair-node ``v``.
        target: ``[PE]`` int64 target pair-node ``u``.
        block: edges per vectorised block.

    Returns:
        ``[PN, D]``; 0 at pair-nodes without incoming edges.
    """
    return _EdgeGRUSum.apply(input_gates, input_bias, hidden_gates, hidden, weight, source, target, block)
