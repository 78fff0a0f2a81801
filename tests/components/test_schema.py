"""``DataSchema``: a dataset without a DDI matrix is explicit, and components needing one refuse."""

from __future__ import annotations

import numpy as np
import pytest

from medtoolkit.components.schema import DataSchema


def test_require_ddi_returns_the_matrix_or_names_the_component() -> None:
    matrix = np.zeros((2, 2), dtype=np.float32)
    with_ddi = DataSchema(vocab_sizes={"medications": 2}, n_drugs=2, ddi_adjacency=matrix)
    assert with_ddi.has_ddi and with_ddi.require_ddi("loss 'ddi'") is matrix
    without = DataSchema(vocab_sizes={"medications": 2}, n_drugs=2, ddi_adjacency=None)
    assert not without.has_ddi
    with pytest.raises(ValueError) as caught:
        without.require_ddi("loss 'ddi'")
    assert str(caught.value) == (
        "loss 'ddi' needs a DDI matrix, but the dataset has no DDI matrix (ddi_adjacency is none); "
        "remove that component or load a dataset with one"
    )
