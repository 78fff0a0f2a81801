"""The vectorised WG / AG / GNN pair scoring equals a naive per-pair, per-edge loop reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from medtoolkit_dpr.edge_ops import edge_context, edge_gru_sum
from medtoolkit_dpr.layers import SplitMLP
from medtoolkit_dpr.package_gnn import PackageGraphs, PackageScorer

torch_geometric = pytest.importorskip("torch_geometric")

DIM, HIDDEN, N_DRUGS = 4, 6, 7
SETS = [[0, 2, 5], [1, 3], [4], [0, 1, 2, 6]]
EDGES = [
    [(0, 1, 1.0, 1), (1, 0, 0.3, -1), (2, 0, -1.0, 2), (1, 2, 0.05, 0)],
    [(0, 1, 0.5, 0)],
    [],
    [(0, 1, 0.2, -1), (1, 0, 0.2, 1), (2, 3, -1.0, 2), (3, 2, 0.7, 0), (0, 3, 0.9, -1), (1, 2, 0.4, 1)],
]
PAIR_VISIT = [0, 0, 1, 2, 1, 0, 2]
PAIR_GRAPH = [0, 3, 3, 2, 1, 1, 0]


def hand_graphs(sets: Sequence[Sequence[int]], edges: Sequence[Sequence[tuple[int, int, float, int]]]) -> Any:
    """A torch_geometric ``Batch`` of package graphs written by hand.

    Args:
        sets: per graph, its drugs in ascending order (node ``k`` = ``sets[g][k]``).
        edges: per graph, ``(source node, target node, prior, label)`` with local node ids.
    """
    from torch_geometric.data import Batch, Data

    graphs = []
    for drugs, graph_edges in zip(sets, edges):
        index = torch.tensor([[s for s, _, _, _ in graph_edges], [t for _, t, _, _ in graph_edges]],
                             dtype=torch.int64).reshape(2, -1)
        graphs.append(Data(
            x=torch.tensor(list(drugs), dtype=torch.int64), edge_index=index, num_nodes=len(drugs),
            edge_prior=torch.tensor([p for _, _, p, _ in graph_edges], dtype=torch.float32),
            edge_label=torch.tensor([lab for _, _, _, lab in graph_edges], dtype=torch.int64),
            edge_cooccurrence=torch.tensor([abs(p) for _, _, p, _ in graph_edges], dtype=torch.float32)))
    return Batch.from_data_list(graphs)


def full(mlp: SplitMLP, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``MLP([x || y])`` with the concatenated first layer (independent of SplitMLP's split)."""
    weight = torch.cat([mlp.left.weight, mlp.right.weight], dim=1)
    hidden = torch.relu(weight @ torch.cat([x, y]) + mlp.left.bias)
    out = mlp.out.weight @ hidden
    return out + mlp.out.bias if mlp.out.bias is not None else out


def naive_score(scorer: PackageScorer, u: torch.Tensor, drugs: torch.Tensor, nodes: Sequence[int],
                edges: Sequence[tuple[int, int, float, int]]) -> torch.Tensor:
    """One pair, written as the paper's equations with a loop over edges."""
    d = drugs[list(nodes)]
    m = torch.sigmoid(scorer.mask(u)) if scorer.mask is not None else torch.ones_like(u)
    h = d.clone()
    if scorer.variant == "ag":
        for layer in scorer.layers:
            messages = torch.zeros_like(h)
            for s, t, _, _ in edges:
                e = full(scorer.edge_attributes, d[s], d[t])  # Eq. 16
                messages[t] = messages[t] + layer.message(m * e)  # Eq. 17-19
            h = layer.update(layer.self_loop(h) + messages)  # Eq. 20
    else:
        weights = []
        for s, t, prior, _ in edges:
            e = prior if scorer.use_prior else 1.0
            c = torch.tanh(full(scorer.context, m * d[t], m * d[s])).squeeze() if scorer.context is not None else 1.0
            weights.append(c * e)  # Eq. 10
        for layer in scorer.layers:
            messages = torch.zeros_like(h)
            for (s, t, _, _), w in zip(edges, weights):
                messages[t] = messages[t] + layer.gru((w * layer.message(h[s])).unsqueeze(0), h[t].unsqueeze(0))[0]
            h = layer.update(layer.self_loop(h) + messages)  # Eq. 11-13
    g = torch.zeros(DIM, dtype=u.dtype)
    for k in range(len(nodes)):
        g = g + torch.sigmoid(full(scorer.gate, d[k], h[k])) * full(scorer.value, d[k], h[k])  # Eq. 14
    return full(scorer.score, u, g).squeeze()


CASES = [
    ("wg", {}), ("wg", {"context": False}), ("wg", {"edge_prior": False}), ("wg", {"mask": False}),
    ("wg", {"layers": 2}), ("ag", {}), ("ag", {"mask": False}), ("ag", {"layers": 2}),
    ("gnn", {"mask": False, "context": False, "edge_prior": False}),
]


@pytest.mark.parametrize(("variant", "options"), CASES, ids=lambda c: str(c))
def test_vectorised_scores_and_gradients_equal_the_naive_loop(variant: str, options: dict) -> None:
    torch.manual_seed(0)
    scorer = PackageScorer(variant, DIM, HIDDEN, **options).double()
    u = torch.randn(3, DIM, dtype=torch.float64)
    drugs = torch.randn(N_DRUGS, DIM, dtype=torch.float64)
    graphs = PackageGraphs.of(hand_graphs(SETS, EDGES))
    graphs = PackageGraphs(graphs.x, graphs.edge_index, graphs.ptr, graphs.edge_prior.double())
    fast = scorer(u, drugs, graphs, torch.tensor(PAIR_VISIT), torch.tensor(PAIR_GRAPH))
    slow = torch.stack([naive_score(scorer, u[i], drugs, SETS[j], EDGES[j]) for i, j in zip(PAIR_VISIT, PAIR_GRAPH)])
    assert torch.allclose(fast, slow, atol=1e-10), (fast, slow)
    weights = torch.linspace(-1, 1, len(PAIR_VISIT), dtype=torch.float64)
    fast_grads = torch.autograd.grad((fast * weights).sum(), list(scorer.parameters()), allow_unused=True)
    slow_grads = torch.autograd.grad((slow * weights).sum(), list(scorer.parameters()), allow_unused=True)
    for (name, _), a, b in zip(scorer.named_parameters(), fast_grads, slow_grads):
        if variant == "ag" and name.startswith("edge_classifier"):
            continue  # Q serves the edge-type extra only
        assert a is not None and b is not None, name
        assert torch.allclose(a, b, atol=1e-10), name


def test_gnn_ignores_the_mask_and_is_visit_independent() -> None:
    scorer = PackageScorer("gnn", DIM, HIDDEN, mask=True, context=True, edge_prior=True)
    assert scorer.mask is None and scorer.context is None and not scorer.use_prior and not scorer.visit_dependent
    wg = PackageScorer("wg", DIM, HIDDEN, context=False)
    assert wg.mask is None and wg.use_prior  # without context the mask reaches nothing in WG


def test_edge_ops_blocks_give_the_same_values_and_gradients() -> None:
    torch.manual_seed(2)
    nodes, edges, width = 5, 11, 3
    source, target = torch.randint(0, nodes, (edges,)), torch.randint(0, nodes, (edges,))
    inputs = [torch.randn(nodes, 3 * width, dtype=torch.float64, requires_grad=True),
              torch.randn(3 * width, dtype=torch.float64, requires_grad=True),
              torch.randn(nodes, 3 * width, dtype=torch.float64, requires_grad=True),
              torch.randn(nodes, width, dtype=torch.float64, requires_grad=True),
              torch.randn(edges, dtype=torch.float64, requires_grad=True)]
    one = edge_gru_sum(*inputs, source, target)
    blocks = edge_gru_sum(*inputs, source, target, block=3)
    assert torch.allclose(one, blocks)
    assert torch.autograd.gradcheck(lambda *a: edge_gru_sum(*a, source, target, block=4), inputs)
    left, right = torch.randn(nodes, 4, dtype=torch.float64, requires_grad=True), torch.randn(
        nodes, 4, dtype=torch.float64, requires_grad=True)
    a = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(edge_context(left, right, a, target, source),
                          edge_context(left, right, a, target, source, block=2))
    assert torch.autograd.gradcheck(lambda x, y, w: edge_context(x, y, w, target, source, block=5), (left, right, a))
