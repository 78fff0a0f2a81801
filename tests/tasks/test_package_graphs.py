"""Package graph rules and batched package graphs (hand-computed edges, equal to Batch.from_data_list)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medtoolkit.tasks.package_graphs import PackageGraphRules, build_package_graphs, package_graph_rules

pyg_data = pytest.importorskip("torch_geometric.data")

# four drugs; training counts: drug 0 in 10 visits, 1 in 4, 2 in 0, 3 in 100
DRUG_COUNTS = np.array([10.0, 4.0, 0.0, 100.0])
PAIRS = np.array([
    [10.0, 2.0, 0.0, 0.05],   # p[0,1] = 0.2, p[0,3] = 0.005
    [2.0, 4.0, 0.0, 1.0],     # p[1,0] = 0.5, p[1,3] = 0.25
    [0.0, 0.0, 0.0, 0.0],     # drug 2 never prescribed: p[2, .] = 0
    [0.05, 1.0, 0.0, 100.0],  # p[3,0] = 0.0005, p[3,1] = 0.01 (not > 0.01)
])
# relation[v, u]: effect of v on u; 0 NONE, 1 SYNERGY, 2 ANTAGONISM, 3 UNKNOWN
RELATION = np.array([
    [0, 0, 1, 0],
    [0, 0, 0, 2],
    [0, 3, 0, 0],
    [0, 0, 0, 0],
], dtype=np.int8)
COVERED = np.array([True, True, False, True])


def test_rules_hand_computed() -> None:
    rules = package_graph_rules(PAIRS, DRUG_COUNTS, RELATION, COVERED, threshold=0.01)
    p = rules.cooccurrence.numpy()
    np.testing.assert_allclose(p, [[0, 0.2, 0, 0.005], [0.5, 0, 0, 0.25], [0, 0, 0, 0], [0.0005, 0.01, 0, 0]],
                               rtol=1e-6)
    expected_edges = np.array([
        [0, 1, 1, 0],  # 0->1 p=0.2; 0->2 synergy; 0->3 p too low
        [1, 0, 0, 1],  # 1->0 p=0.5; 1->3 antagonism
        [0, 1, 0, 0],  # 2->1 unknown relation
        [0, 0, 0, 0],  # 3->1 p = 0.01 is not above the threshold
    ], dtype=bool)
    np.testing.assert_array_equal(rules.edge_exists.numpy(), expected_edges)
    prior = rules.prior.numpy()
    assert prior[0, 2] == 1.0 and prior[1, 3] == -1.0
    assert prior[0, 1] == pytest.approx(0.2) and prior[2, 1] == 0.0
    label = rules.label.numpy()
    # covered pairs without a relation are 0; drug 2 uncovered; diagonal -1
    np.testing.assert_array_equal(label, [[-1, 0, 1, 0], [0, -1, -1, 2], [-1, -1, -1, -1], [0, 0, -1, -1]])
    assert rules.n_drugs == 4


def test_rules_without_relations() -> None:
    rules = package_graph_rules(PAIRS, DRUG_COUNTS, None, None, threshold=0.1)
    assert (rules.label.numpy() == -1).all()
    np.testing.assert_array_equal(rules.edge_exists.numpy(), [[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0],
                                                              [0, 0, 0, 0]])
    assert rules.prior.dtype == torch.float32 and rules.label.dtype == torch.int64


def test_rules_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError, match="pair_counts must have shape"):
        package_graph_rules(PAIRS[:3], DRUG_COUNTS)
    with pytest.raises(ValueError, match="relation values must be 0..3"):
        package_graph_rules(PAIRS, DRUG_COUNTS, RELATION * 3)
    with pytest.raises(ValueError, match="covered must have shape"):
        package_graph_rules(PAIRS, DRUG_COUNTS, RELATION, COVERED[:2])


def _per_graph(sets: np.ndarray, rules: PackageGraphRules) -> list:
    """The reference: one Data per set, built with Python loops."""
    out = []
    for row in sets:
        drugs = np.flatnonzero(row)
        edges = [(i, j) for i, v in enumerate(drugs) for j, u in enumerate(drugs) if rules.edge_exists[v, u]]
        index = torch.tensor(edges, dtype=torch.int64).reshape(-1, 2).T.contiguous()
        v = torch.tensor([drugs[i] for i, _ in edges], dtype=torch.int64)
        u = torch.tensor([drugs[j] for _, j in edges], dtype=torch.int64)
        out.append(pyg_data.Data(x=torch.tensor(drugs, dtype=torch.int64), edge_index=index,
                                 edge_prior=rules.prior[v, u], edge_label=rules.label[v, u],
                                 edge_cooccurrence=rules.cooccurrence[v, u]))
    return out


def test_graphs_hand_computed_and_equal_to_from_data_list() -> None:
    rules = package_graph_rules(PAIRS, DRUG_COUNTS, RELATION, COVERED)
    sets = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0]], dtype=bool)
    graphs = build_package_graphs(sets, rules)
    assert graphs.num_graphs == 4
    np.testing.assert_array_equal(graphs.x.numpy(), [0, 1, 2, 3, 0, 1, 1, 2])
    np.testing.assert_array_equal(graphs.batch.numpy(), [0, 0, 0, 0, 2, 2, 3, 3])
    np.testing.assert_array_equal(graphs.ptr.numpy(), [0, 4, 4, 6, 8])
    # graph 0: 0->1, 0->2, 1->0, 1->3, 2->1; graph 2: 0->1, 1->0; graph 3 (drugs 1, 2): 2->1
    np.testing.assert_array_equal(graphs.edge_index.numpy(), [[0, 0, 1, 1, 2, 4, 5, 7], [1, 2, 0, 3, 1, 5, 4, 6]])
    np.testing.assert_allclose(graphs.edge_prior.numpy(), [0.2, 1, 0.5, -1, 0, 0.2, 0.5, 0], rtol=1e-6)
    np.testing.assert_array_equal(graphs.edge_label.numpy(), [0, 1, 0, 2, -1, 0, 0, -1])

    reference = pyg_data.Batch.from_data_list(_per_graph(sets, rules))
    for key in ("x", "edge_index", "edge_prior", "edge_label", "edge_cooccurrence", "batch", "ptr"):
        assert torch.equal(graphs[key], reference[key]), key
    for mine, theirs in zip(graphs.to_data_list(), reference.to_data_list()):
        assert torch.equal(mine.edge_index, theirs.edge_index) and torch.equal(mine.x, theirs.x)


def test_graphs_empty_and_torch_input() -> None:
    rules = package_graph_rules(PAIRS, DRUG_COUNTS)
    graphs = build_package_graphs(torch.zeros(3, 4), rules)
    assert graphs.num_graphs == 3 and graphs.x.numel() == 0 and graphs.edge_index.shape == (2, 0)
    np.testing.assert_array_equal(graphs.ptr.numpy(), [0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"sets must be \[G, 4\]"):
        build_package_graphs(np.zeros((2, 3), dtype=bool), rules)


def test_graphs_random_sets_match_reference() -> None:
    rng = np.random.default_rng(0)
    n = 12
    counts = rng.integers(1, 20, n).astype(float)
    pairs = rng.integers(0, 3, (n, n)).astype(float)
    relation = rng.integers(0, 4, (n, n)) * (rng.random((n, n)) < 0.2)
    rules = package_graph_rules(pairs, counts, relation, rng.random(n) < 0.7, threshold=0.1)
    sets = rng.random((30, n)) < 0.3
    graphs = build_package_graphs(sets, rules)
    reference = pyg_data.Batch.from_data_list(_per_graph(sets, rules))
    for key in ("x", "edge_index", "edge_prior", "edge_label", "edge_cooccurrence", "batch", "ptr"):
        assert torch.equal(graphs[key], reference[key]), key
