"""Tests of the ``gcn`` memory (GAMENet's graph-augmented memory with history read)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medtoolkit.components.memories.gcn import GCNMemory, TwoLayerGCN, normalize_adjacency
from medtoolkit.testing import check_component, fake_batch, fake_ehr, fake_schema


@pytest.mark.parametrize(
    "params",
    [GCNMemory.Params(), GCNMemory.Params(ddi_in_memory=False), GCNMemory.Params(history=False, dropout=0.0)],
)
def test_conformance(params: GCNMemory.Params) -> None:
    assert "causality" in check_component(GCNMemory, params)


def test_normalisation_three_node_path() -> None:
    # path 0 - 1 - 2: A + I = [[1,1,0],[1,1,1],[0,1,1]], row sums 2, 3, 2
    adjacency = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float32)
    expected = torch.tensor([[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]])
    assert torch.allclose(normalize_adjacency(adjacency), expected)
    # an isolated node keeps only its self loop
    assert torch.equal(normalize_adjacency(np.zeros((2, 2))), torch.eye(2))
    with pytest.raises(ValueError, match="square"):
        normalize_adjacency(np.zeros((2, 3)))


def test_two_layer_gcn_formula() -> None:
    torch.manual_seed(0)
    gcn = TwoLayerGCN(3, 4, dropout=0.0)
    a = normalize_adjacency(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float32))
    x = torch.eye(3)  # identity features
    hidden = torch.relu(a @ (x @ gcn.weight1) + gcn.bias1)
    expected = a @ (hidden @ gcn.weight2) + gcn.bias2
    assert torch.allclose(gcn(a), expected, atol=1e-6)
    # GAMENet's GraphConvolution init: U(-1/sqrt(out), 1/sqrt(out))
    assert float(gcn.weight1.detach().abs().max()) <= 0.5
    assert sum(p.numel() for p in gcn.parameters()) == 3 * 4 + 4 + 4 * 4 + 4


def test_buffers_and_memory_bank() -> None:
    schema = fake_schema()
    memory = GCNMemory(GCNMemory.Params(dropout=0.0), schema, query_dim=8).eval()
    buffers = dict(memory.named_buffers())
    assert torch.allclose(buffers["ehr_adjacency"], normalize_adjacency(schema.cooccurrence_adjacency))
    assert torch.allclose(buffers["ddi_adjacency"], normalize_adjacency(schema.ddi_adjacency))
    assert -0.1 <= float(memory.theta.detach()) <= 0.1
    expected = memory.ehr_gcn(buffers["ehr_adjacency"]) - memory.theta * memory.ddi_gcn(buffers["ddi_adjacency"])
    assert torch.allclose(memory.memory_bank(), expected)
    assert memory.memory_bank().shape == (schema.n_drugs, 8)
    plain = GCNMemory(GCNMemory.Params(ddi_in_memory=False), schema, query_dim=8)
    assert not hasattr(plain, "theta") and not hasattr(plain, "ddi_gcn")
    assert torch.equal(plain.eval().memory_bank(), plain.ehr_gcn(plain.ehr_adjacency))


def _reference_reads(memory: GCNMemory, query: torch.Tensor, medications: torch.Tensor) -> torch.Tensor:
    """GAMENet's loop for one patient: query [T, D], medications [T, N] -> [T, 2D]."""
    bank = memory.memory_bank()
    rows = []
    for t in range(query.shape[0]):
        q = query[t : t + 1]
        fact1 = torch.softmax(q @ bank.t(), dim=-1) @ bank
        if t > 0:
            weights = torch.softmax(q @ query[:t].t(), dim=-1)
            fact2 = (weights @ medications[:t]) @ bank
        else:
            fact2 = fact1
        rows.append(torch.cat([fact1, fact2], dim=-1))
    return torch.cat(rows)


def test_reads_match_per_visit_reference_loop() -> None:
    data = fake_ehr()
    batch = fake_batch(data)
    torch.manual_seed(3)
    memory = GCNMemory(GCNMemory.Params(), fake_schema(data), query_dim=6).eval()
    query = torch.randn(*batch.visit_mask.shape, 6)
    with torch.no_grad():
        output = memory(query, batch)
        assert output.shape == (*batch.visit_mask.shape, 12)
        for b, n_visits in enumerate(data.visits_per_patient):
            expected = _reference_reads(memory, query[b, :n_visits], batch.medications[b, :n_visits])
            assert torch.allclose(output[b, :n_visits], expected, atol=1e-5)
    # first visits have no history: read 2 = read 1
    assert torch.allclose(output[:, 0, :6], output[:, 0, 6:])


def test_history_attends_to_real_earlier_visits_only() -> None:
    batch = fake_batch()
    memory = GCNMemory(GCNMemory.Params(), fake_schema(), query_dim=4).eval()
    query = torch.randn(*batch.visit_mask.shape, 4)
    base = memory(query, batch)
    # garbage in padding visits (medications and queries) changes nothing at real visits
    medications = batch.medications.clone()
    medications[~batch.visit_mask] = 1.0
    noisy_query = query.clone()
    noisy_query[~batch.visit_mask] = 100.0
    other = memory(noisy_query, dataclasses.replace(batch, medications=medications))
    assert torch.allclose(base[batch.visit_mask], other[batch.visit_mask], atol=1e-6)
    assert torch.isfinite(base).all()


def test_gradients_are_finite_for_first_visits() -> None:
    batch = fake_batch()
    memory = GCNMemory(GCNMemory.Params(), fake_schema(), query_dim=4)
    query = torch.randn(*batch.visit_mask.shape, 4, requires_grad=True)
    memory(query, batch).sum().backward()
    assert torch.isfinite(query.grad).all()
    assert torch.isfinite(memory.theta.grad).all()


def test_output_dim_and_errors() -> None:
    schema = fake_schema()
    assert GCNMemory(GCNMemory.Params(), schema, query_dim=10).output_dim == 20
    assert GCNMemory(GCNMemory.Params(history=False), schema, query_dim=10).output_dim == 10
    assert GCNMemory(GCNMemory.Params(dim=10), schema, query_dim=10).output_dim == 20
    with pytest.raises(ValueError, match="differs from the query width"):
        GCNMemory(GCNMemory.Params(dim=12), schema, query_dim=10)
    with pytest.raises(ValueError, match="cooccurrence_adjacency"):
        GCNMemory(GCNMemory.Params(), dataclasses.replace(schema, cooccurrence_adjacency=None), query_dim=4)
    memory = GCNMemory(GCNMemory.Params(), schema, query_dim=4)
    with pytest.raises(ValueError, match="width 4"):
        memory(torch.zeros(2, 3, 5), fake_batch())


def test_ddi_memory_refuses_a_dataset_without_ddi_matrix() -> None:
    schema = dataclasses.replace(fake_schema(), ddi_adjacency=None)
    with pytest.raises(ValueError, match=r"memory 'gcn' with ddi_in_memory=true \(set it to false\) needs a DDI "
                                         r"matrix, but the dataset has no DDI matrix"):
        GCNMemory(GCNMemory.Params(), schema, query_dim=8)
    memory = GCNMemory(GCNMemory.Params(ddi_in_memory=False), schema, query_dim=8)
    assert not hasattr(memory, "ddi_gcn") and memory.memory_bank().shape == (schema.n_drugs, 8)
