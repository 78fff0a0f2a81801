"""Snapshot graphs (Eq. 2-4) and weighted attention, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medtoolkit_dnmdr.attention import edge_bias, weighted_attention
from medtoolkit_dnmdr.snapshots import (
    DIAGNOSIS_NODE, MEDICATION_NODE, PROCEDURE_NODE, conditional_table, pack_nodes, snapshot_weights,
)


def test_conditional_table_divides_pair_counts_by_the_condition_count() -> None:
    pairs = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # 2 codes x 3 drugs
    given = np.array([4.0, 0.0])  # code 1 never seen in training
    table = conditional_table(pairs, given)
    assert table.shape == (3, 4)  # padding row and column 0
    assert torch.equal(table[0], torch.zeros(4)) and torch.equal(table[:, 0], torch.zeros(3))
    assert table[1, 1:].tolist() == [0.5, 0.25, 0.0]
    assert table[2].tolist() == [0.0, 0.0, 0.0, 0.0]  # unseen code: no edges, not NaN


def test_conditional_table_refuses_mismatched_counts() -> None:
    with pytest.raises(ValueError, match="do not match"):
        conditional_table(np.ones((2, 3)), np.ones(3))


def tables() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2 diagnoses, 1 procedure, 2 drugs, made-up counts."""
    given_diagnosis = conditional_table(np.array([[3.0, 1.0], [0.0, 2.0]]), np.array([4.0, 2.0]))
    given_procedure = conditional_table(np.array([[1.0, 1.0]]), np.array([5.0]))
    drug_pairs = np.array([[4.0, 2.0], [2.0, 8.0]])
    given_medication = conditional_table(drug_pairs, drug_pairs.diagonal())
    return given_diagnosis, given_procedure, given_medication


def packed(diagnoses: list[list[int]], procedures: list[list[int]], medications: list[list[int]]):
    return pack_nodes(torch.tensor(diagnoses), torch.tensor(procedures), torch.tensor(medications))


def test_pack_nodes_puts_real_nodes_first_in_type_order() -> None:
    codes, types = packed([[1, 2, 0], [3, 0, 0]], [[1, 0], [0, 0]], [[0, 0], [2, 1]])
    assert codes.tolist() == [[1, 2, 1], [3, 2, 1]]  # width 3 = the largest snapshot, not 3 + 2 + 2
    assert types[0].tolist() == [DIAGNOSIS_NODE, DIAGNOSIS_NODE, PROCEDURE_NODE]
    assert types[1].tolist() == [DIAGNOSIS_NODE, MEDICATION_NODE, MEDICATION_NODE]


def test_snapshot_weights_by_hand() -> None:
    # one visit: diagnoses {0, 1}, procedure {0}, previous medications {0, 1} (codes + 1, 0 = padding);
    # a second visit pads to the same width
    codes, types = packed([[1, 2], [2, 0]], [[1, 0], [0, 0]], [[1, 2], [0, 0]])
    weights = snapshot_weights(codes, types, tables())
    # node order: d0 d1 p0 m0 m1
    expected = torch.tensor([
        [1.0, 0.0, 0.0, 0.75, 0.25],   # d0: self; P(m0|d0) = 3/4, P(m1|d0) = 1/4
        [0.0, 1.0, 0.0, 0.0, 1.0],     # d1: self; P(m1|d1) = 2/2; no d-d edge
        [0.0, 0.0, 1.0, 0.2, 0.2],     # p0: self; P(m|p0) = 1/5; no p-d edge
        [0.75, 0.0, 0.2, 1.0, 0.5],    # m0: the same d/p edges; P(m1|m0) = 2/4
        [0.25, 1.0, 0.2, 0.25, 1.0],   # m1: P(m0|m1) = 2/8
    ])
    assert torch.allclose(weights[0], expected)
    padded = torch.zeros(5, 5)
    padded[0, 0] = 1.0  # the second visit: one diagnosis, padding elsewhere has no edge at all
    assert torch.equal(weights[1], padded)


def test_first_visit_snapshot_has_only_self_loops_between_diagnoses_and_procedures() -> None:
    codes, types = packed([[1, 2]], [[1]], [[0]])
    assert torch.equal(snapshot_weights(codes, types, tables())[0], torch.eye(3))


def test_fully_connected_ablation_is_all_ones_between_real_nodes() -> None:
    codes, types = packed([[1, 2], [1, 0]], [[1, 0], [0, 0]], [[2], [0]])
    weights = snapshot_weights(codes, types, None)
    assert torch.equal(weights[0], torch.ones(4, 4))
    assert torch.equal(weights[1], torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))


def test_weighted_attention_is_a_weighted_softmax() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    att_dst, att_src = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    weights = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 1.0]])
    alpha = weighted_attention(z, weights, att_dst, att_src)
    # row 0: e_0j = leaky(1 + z_j[1]) = 1, 3, 2; weights 1, 0.5, 0
    row0 = torch.tensor([1.0 * math.exp(1.0), 0.5 * math.exp(3.0), 0.0])
    assert torch.allclose(alpha[0], row0 / row0.sum())
    assert torch.equal(alpha[1], torch.zeros(3))  # no edge: zeros, not NaN
    assert torch.allclose(alpha[2].sum(), torch.tensor(1.0))
    # the shared bias gives the same coefficients
    assert torch.allclose(weighted_attention(z, edge_bias(weights), att_dst, att_src), alpha)


def test_edge_less_rows_have_finite_gradients() -> None:
    z = torch.randn(2, 3, 4, requires_grad=True)
    weights = torch.zeros(2, 3, 3)
    weights[0, 0, 1] = 1.0
    (weighted_attention(z, weights, torch.ones(4), torch.ones(4)) @ z).sum().backward()
    assert torch.isfinite(z.grad).all()
