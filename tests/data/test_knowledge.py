"""``DrugKnowledge``: an explicit "no DDI matrix" state."""

from __future__ import annotations

import numpy as np
import pytest

from medtoolkit.data.knowledge import DrugKnowledge


def test_knowledge_without_ddi_matrix() -> None:
    knowledge = DrugKnowledge(ddi_adjacency=None, smiles=[["C"], []])
    assert knowledge.ddi_adjacency is None and not knowledge.has_ddi
    assert knowledge.n_ddi_pairs is None
    with pytest.raises(ValueError, match="DrugKnowledge has no DDI matrix: n_drugs comes from the medication"):
        _ = knowledge.n_drugs


def test_knowledge_with_ddi_matrix_counts_pairs() -> None:
    adjacency = np.zeros((3, 3))
    adjacency[0, 2] = adjacency[2, 0] = 1
    knowledge = DrugKnowledge(ddi_adjacency=adjacency)
    assert knowledge.has_ddi and knowledge.n_ddi_pairs == 1 and knowledge.n_drugs == 3
    assert knowledge.ddi_adjacency.dtype == np.float32
    assert DrugKnowledge.empty(4).n_ddi_pairs == 0  # a known, empty matrix is not "no matrix"
