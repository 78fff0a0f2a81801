"""Tests of the ``bce`` loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.testing import check_component, fake_batch, fake_schema


def _tiny_batch(medications: list[list[list[float]]], mask: list[list[bool]]) -> PaddedBatch:
    meds = torch.tensor(medications)
    return PaddedBatch(
        codes={"diagnoses": torch.ones(meds.shape[0], meds.shape[1], 1, dtype=torch.long)},
        visit_mask=torch.tensor(mask),
        medications=meds,
        patient_index=torch.arange(meds.shape[0]),
    )


def test_conformance() -> None:
    assert "gradients" in check_component(BCELoss)


def test_hand_value_and_padding_ignored() -> None:
    batch = _tiny_batch([[[1.0, 0.0], [0.0, 0.0]]], [[True, False]])
    loss = BCELoss(BCELoss.Params(), fake_schema())
    logits = torch.tensor([[[0.0, 0.0], [50.0, -3.0]]])  # the padding visit must not count
    assert math.isclose(float(loss(logits, batch)), math.log(2), rel_tol=1e-6)


def test_mean_over_real_visits_and_drugs() -> None:
    batch = fake_batch()
    logits = torch.randn(*batch.medications.shape)
    per_visit = [
        F.binary_cross_entropy_with_logits(logits[b, t], batch.medications[b, t])
        for b in range(batch.batch_size) for t in range(batch.max_visits) if batch.visit_mask[b, t]
    ]
    value = BCELoss(BCELoss.Params(), fake_schema())(logits, batch)
    assert torch.isclose(value, torch.stack(per_visit).mean(), atol=1e-6)


def test_weight_scales_combine() -> None:
    batch = fake_batch()
    logits = torch.randn(*batch.medications.shape)
    loss = BCELoss(BCELoss.Params(weight=0.9), fake_schema())
    assert loss.weight == 0.9 and not loss.gating
    assert torch.isclose(loss.combine(torch.tensor(1.0), logits, batch), 1.0 + 0.9 * loss(logits, batch))
