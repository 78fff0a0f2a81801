"""pair_layout: pair-nodes and pair-edges of (visit, graph) pairs, hand-computed."""

from __future__ import annotations

import pytest
import torch

from medtoolkit_dpr.pairs import pair_layout


def test_layout_of_three_pairs_hand_computed() -> None:
    # graph 0: nodes 0, 1 with edge 0 -> 1; graph 1: nodes 2, 3, 4 with edges 2 -> 3, 4 -> 2
    ptr = torch.tensor([0, 2, 5])
    edge_index = torch.tensor([[0, 2, 4], [1, 3, 2]])
    layout = pair_layout(ptr, edge_index, torch.tensor([1, 0, 1]))
    assert layout.n_units == 3 and layout.n_nodes == 8 and layout.n_edges == 5
    assert layout.node_unit.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert layout.node_source.tolist() == [2, 3, 4, 0, 1, 2, 3, 4]
    assert layout.edge_unit.tolist() == [0, 0, 1, 2, 2]
    assert layout.edge_origin.tolist() == [1, 2, 0, 1, 2]
    # unit 0's pair-nodes are 0..2 (graph nodes 2, 3, 4), unit 1's 3..4, unit 2's 5..7
    assert layout.edge_source.tolist() == [0, 2, 3, 5, 7]
    assert layout.edge_target.tolist() == [1, 0, 4, 6, 5]


def test_layout_with_empty_graphs_and_no_units() -> None:
    ptr = torch.tensor([0, 0, 1])  # graph 0 empty, graph 1 a single node without edges
    edge_index = torch.zeros(2, 0, dtype=torch.int64)
    layout = pair_layout(ptr, edge_index, torch.tensor([0, 1, 1]))
    assert layout.node_unit.tolist() == [1, 2] and layout.node_source.tolist() == [0, 0]
    assert layout.n_edges == 0
    assert pair_layout(ptr, edge_index, torch.zeros(0, dtype=torch.int64)).n_nodes == 0


def test_edges_out_of_graph_order_are_refused() -> None:
    with pytest.raises(ValueError, match="graph by graph"):
        pair_layout(torch.tensor([0, 2, 4]), torch.tensor([[2, 0], [3, 1]]), torch.tensor([0]))
