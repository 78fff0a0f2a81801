"""Tests of the ``multilabel_margin`` loss: equal to torch's multilabel_margin_loss on sigmoids."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medtoolkit.components.losses.margin import MultiLabelMarginLoss, multilabel_margin
from medtoolkit.testing import check_component, fake_batch, fake_schema


def _index_targets(multi_hot: torch.Tensor) -> torch.Tensor:
    """The reference's target: true indices first, padded with -1."""
    target = torch.full(multi_hot.shape, -1, dtype=torch.long)
    for row, labels in enumerate(multi_hot):
        idx = torch.nonzero(labels).flatten()
        target[row, : len(idx)] = idx
    return target


def test_conformance() -> None:
    assert "gradients" in check_component(MultiLabelMarginLoss)


def test_hand_value() -> None:
    # x = [0.8, 0.3, 0.6], T = {0}: ((1 - 0.8 + 0.3) + (1 - 0.8 + 0.6)) / 3
    scores = torch.tensor([[0.8, 0.3, 0.6]])
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    assert math.isclose(float(multilabel_margin(scores, targets)[0]), (0.5 + 0.8) / 3, rel_tol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 5.0, 40.0])  # 40: saturated sigmoids (exactly 0 / 1)
def test_equals_torch_multilabel_margin_loss(scale: float) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = scale * torch.randn(64, 30, generator=generator)
    targets = (torch.rand(64, 30, generator=generator) < 0.2).float()
    targets[0] = 0.0  # a visit without drugs
    targets[1] = 1.0  # a visit with every drug
    scores = torch.sigmoid(logits)
    expected = F.multilabel_margin_loss(scores, _index_targets(targets), reduction="none")
    assert torch.allclose(multilabel_margin(scores, targets), expected, atol=1e-5)


def test_gradient_equals_torch() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 12, generator=generator)
    targets = (torch.rand(16, 12, generator=generator) < 0.3).float()
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    multilabel_margin(torch.sigmoid(ours), targets).mean().backward()
    F.multilabel_margin_loss(torch.sigmoid(theirs), _index_targets(targets)).backward()
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-6)


def test_loss_is_mean_over_real_visits() -> None:
    batch = fake_batch()
    logits = torch.randn(*batch.medications.shape)
    mask = batch.visit_mask
    expected = F.multilabel_margin_loss(torch.sigmoid(logits[mask]), _index_targets(batch.medications[mask]))
    value = MultiLabelMarginLoss(MultiLabelMarginLoss.Params(), fake_schema())(logits, batch)
    assert torch.isclose(value, expected, atol=1e-6)
