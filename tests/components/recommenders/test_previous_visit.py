"""Tests of the ``previous_visit`` baseline."""

from __future__ import annotations

import torch

from medtoolkit.components.recommenders.previous_visit import PreviousVisitRecommender
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.testing import check_component, fake_batch, fake_schema


def test_conformance() -> None:
    assert "causality" in check_component(PreviousVisitRecommender)


def test_rule_based_without_parameters() -> None:
    model = PreviousVisitRecommender(PreviousVisitRecommender.Params(), fake_schema())
    assert PreviousVisitRecommender.trainable is False
    assert list(model.parameters()) == []
    assert model.state_dict() == {}


def test_hand_values() -> None:
    medications = torch.tensor(
        [
            [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]],
            [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # second visit is padding
        ]
    )
    batch = PaddedBatch(
        codes={"diagnoses": torch.ones(2, 3, 1, dtype=torch.long)},
        visit_mask=torch.tensor([[True, True, True], [True, False, False]]),
        medications=medications,
        patient_index=torch.arange(2),
    )
    logits = PreviousVisitRecommender(PreviousVisitRecommender.Params(), fake_schema())(batch)
    expected = torch.tensor(
        [
            [[-20.0, -20.0, -20.0], [20.0, -20.0, 20.0], [-20.0, 20.0, -20.0]],
            [[-20.0, -20.0, -20.0], [-20.0, 20.0, 20.0], [-20.0, -20.0, -20.0]],
        ]
    )
    assert torch.equal(logits, expected)  # first visits predict nothing
    assert torch.equal(torch.sigmoid(logits) >= 0.5, logits > 0)


def test_follows_device_and_dtype_of_module() -> None:
    model = PreviousVisitRecommender(PreviousVisitRecommender.Params(confidence=5.0), fake_schema()).double()
    logits = model(fake_batch())
    assert logits.dtype == torch.float64 and set(logits.unique().tolist()) <= {-5.0, 5.0}
