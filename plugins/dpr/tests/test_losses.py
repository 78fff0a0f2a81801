"""bpr, package_bpr and edge_type: hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from medtoolkit.data.batching import PaddedBatch
from medtoolkit_dpr import BPRLoss, EdgeTypeLoss, PackageBPRLoss
from medtoolkit_dpr.losses import bpr_terms


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def tiny_batch(medications: list[list[list[int]]], mask: list[list[bool]]) -> PaddedBatch:
    meds = torch.tensor(medications, dtype=torch.float32)
    return PaddedBatch(codes={}, visit_mask=torch.tensor(mask), medications=meds,
                       patient_index=torch.arange(meds.shape[0]))


def test_bpr_with_one_negative_per_visit_is_deterministic() -> None:
    # patient 0: visit 0 set {0, 1} (negative: 2 only), visit 1 = padding; patient 1: visit 0 set {2}
    # (negatives 0 and 1: drawn at random), visit 1 set {0, 1, 2} (no negative: nothing)
    batch = tiny_batch([[[1, 1, 0], [0, 0, 0]], [[0, 0, 1], [1, 1, 1]]], [[True, False], [True, True]])
    logits = torch.tensor([[[2.0, 0.5, 1.0], [9.0, 9.0, 9.0]], [[3.0, 3.0, 3.0], [1.0, 2.0, 3.0]]])
    loss = BPRLoss(BPRLoss.Params(negatives=4))
    # visit (0,0): 2 positives x 4 draws of drug 2: softplus(1 - 2), softplus(1 - 0.5);
    # visit (1,0): 4 draws, all scores equal: softplus(0) each
    expected = (4 * softplus(-1.0) + 4 * softplus(0.5) + 4 * softplus(0.0)) / 12
    assert float(loss(logits, batch)) == pytest.approx(expected, rel=1e-6)


def test_bpr_terms_sample_only_absent_drugs_uniformly() -> None:
    torch.manual_seed(0)
    targets = torch.tensor([[True, False, False, False, True]])
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0, 0.0]])
    terms = bpr_terms(scores, targets, 3000)
    assert terms.shape == (6000,)
    # negatives 1, 2, 3 (scores 1, 2, 3) against positives of score 0: terms softplus(1|2|3)
    values = torch.tensor([softplus(1.0), softplus(2.0), softplus(3.0)])
    share = (terms.unsqueeze(1) - values).abs().lt(1e-5).float().mean(0)
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.03)
    assert share.sum() == pytest.approx(1.0)


def test_bpr_without_terms_is_zero_with_a_gradient() -> None:
    batch = tiny_batch([[[0, 0], [1, 1]]], [[True, True]])  # an empty set and a full set
    logits = torch.zeros(1, 2, 2, requires_grad=True)
    value = BPRLoss()(logits, batch)
    value.backward()
    assert value.item() == 0.0 and logits.grad is not None


def test_package_bpr_hand_computed() -> None:
    scores = torch.tensor([[2.0, 1.0, 3.0], [0.0, 0.0, -1.0]])
    expected = (softplus(-1.0) + softplus(1.0) + softplus(0.0) + softplus(-1.0)) / 4
    value = PackageBPRLoss()(torch.zeros(1), None, {"package_scores": scores})
    assert float(value) == pytest.approx(expected, rel=1e-6)
    assert float(PackageBPRLoss()(torch.zeros(1), None, {"package_scores": torch.zeros(0, 11)})) == 0.0
    with pytest.raises(KeyError, match="package_scores"):
        PackageBPRLoss()(torch.zeros(1), None, {})


def test_edge_type_hand_computed() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    labels = torch.tensor([1, 0])
    expected = (math.log(3.0) + (math.log(math.exp(2) + 2) - 2.0)) / 2
    value = EdgeTypeLoss()(torch.zeros(1), None, {"edge_types": (logits, labels)})
    assert float(value) == pytest.approx(expected, rel=1e-6)
    empty = EdgeTypeLoss()(torch.zeros(1), None, {"edge_types": (torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))})
    assert float(empty) == 0.0
