"""The ``gat_views`` drug memory."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medtoolkit.testing import check_component, fake_batch, fake_schema
from medtoolkit_dnmdr.memory import GATViewsMemory, with_self_loops

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ALL_CHECKS = {"params", "shapes", "state_dict", "device", "determinism", "causality", "gradients"}


@pytest.mark.parametrize("views", [("ehr", "ddi"), ("ehr",), ("ddi",), ()])
def test_gat_views_conforms(views: tuple[str, ...]) -> None:
    assert set(check_component(GATViewsMemory, GATViewsMemory.Params(views=views))) == ALL_CHECKS


def test_without_views_the_bank_is_the_learned_embedding() -> None:
    memory = GATViewsMemory(GATViewsMemory.Params(views=()), fake_schema(), query_dim=8)
    assert memory.memory_bank() is memory.drug_embedding
    assert not any(name.startswith(("ehr", "ddi")) for name, _ in memory.named_parameters())


def test_bank_is_ehr_view_plus_mapped_ddi_view() -> None:
    memory = GATViewsMemory(GATViewsMemory.Params(), fake_schema(), query_dim=8).eval()
    x = memory.drug_embedding
    expected = memory.ehr_gat(x, memory.ehr_edges) + memory.ddi_map(memory.ddi_gat(x, memory.ddi_edges))
    assert torch.allclose(memory.memory_bank(), expected)


def test_ddi_view_attends_along_interactions_only() -> None:
    schema = fake_schema()
    memory = GATViewsMemory(GATViewsMemory.Params(views=("ddi",)), schema, query_dim=8).eval()
    ddi = np.asarray(schema.ddi_adjacency)
    lonely = int(np.flatnonzero(ddi.sum(axis=1) == 0)[0])  # a drug without interactions
    other = (lonely + 1) % schema.n_drugs
    with torch.no_grad():
        before = memory.ddi_gat(memory.drug_embedding, memory.ddi_edges)
        memory.drug_embedding[other] += 1.0
        after = memory.ddi_gat(memory.drug_embedding, memory.ddi_edges)
    assert torch.allclose(before[lonely], after[lonely])  # only its own row reaches it
    assert not torch.allclose(before[other], after[other])


def test_self_loops_are_added_and_weights_are_binary() -> None:
    edges = with_self_loops(np.array([[0.0, 3.0], [3.0, 0.0]]))
    assert edges.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_ddi_view_needs_a_ddi_matrix() -> None:
    assert GATViewsMemory.knowledge_needed(GATViewsMemory.Params()) == {"ddi"}
    assert GATViewsMemory.knowledge_needed(GATViewsMemory.Params(views=("ehr",))) == set()
    schema = dataclasses.replace(fake_schema(), ddi_adjacency=None)
    with pytest.raises(ValueError, match="gat_views.*views: \\[ehr\\]"):
        GATViewsMemory(GATViewsMemory.Params(), schema, query_dim=8)
    GATViewsMemory(GATViewsMemory.Params(views=("ehr",)), schema, query_dim=8)


def test_views_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        GATViewsMemory.Params(views=("ehr", "ehr"))


def test_history_read_uses_earlier_visits_only() -> None:
    schema, batch = fake_schema(), fake_batch()
    memory = GATViewsMemory(GATViewsMemory.Params(), schema, query_dim=8).eval()
    query = torch.randn(batch.batch_size, batch.max_visits, 8)
    out = memory(query, batch)
    assert out.shape == (batch.batch_size, batch.max_visits, 16)
    # a first visit has no history: its history read is the static read
    assert torch.allclose(out[:, 0, 8:], out[:, 0, :8])
