"""``masked_code`` (Eq. 5-7) and ``contrastive`` (Eq. 9-10) computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from medtoolkit.testing import check_component
from medtoolkit.components.params import Node
from medtoolkit_tempt import ContrastiveLoss, MaskedCodeLoss, SetTransformerEncoder, TEMPTRecommender
from medtoolkit_tempt.masking import MaskedCodes, PairRepresentations


def bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def masked_extra() -> dict[str, MaskedCodes]:
    diagnoses = MaskedCodes(
        logits=torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0], [3.0, 3.0, 3.0]]),
        targets=torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]),
        included=torch.tensor([[True, True, False], [True, True, True], [True, True, True]]),
        valid=torch.tensor([True, True, False]),  # the third set is empty
    )
    procedures = MaskedCodes(
        logits=torch.tensor([[-0.5, 1.5]]), targets=torch.tensor([[0.0, 1.0]]),
        included=torch.tensor([[True, True]]), valid=torch.tensor([True]),
    )
    return {"diagnoses": diagnoses, "procedures": procedures}


def test_masked_code_sum_by_hand() -> None:
    visit_1 = bce(2.0, 1) + bce(-1.0, 0)  # code 3 is visible: not scored
    visit_2 = bce(0.0, 0) + bce(1.0, 1) + bce(-2.0, 1)
    diagnoses = (visit_1 + visit_2) / 2  # the empty third set is not a visit of this term
    procedures = bce(-0.5, 0) + bce(1.5, 1)
    loss = MaskedCodeLoss()
    value = loss(torch.zeros(1, 1, 4), None, {"masked_codes": masked_extra()})
    assert value.item() == pytest.approx(diagnoses + procedures, rel=1e-6)
    assert loss.extras_needed(loss.params) == frozenset({"masked_codes"})


def test_masked_code_mean_by_hand() -> None:
    diagnoses = ((bce(2.0, 1) + bce(-1.0, 0)) / 2 + (bce(0.0, 0) + bce(1.0, 1) + bce(-2.0, 1)) / 3) / 2
    procedures = (bce(-0.5, 0) + bce(1.5, 1)) / 2
    value = MaskedCodeLoss(MaskedCodeLoss.Params(reduction="mean"))(torch.zeros(1), None,
                                                                     {"masked_codes": masked_extra()})
    assert value.item() == pytest.approx(diagnoses + procedures, rel=1e-6)


def test_masked_code_gradients_reach_the_mask_logits() -> None:
    extra = masked_extra()
    extra["diagnoses"].logits.requires_grad_(True)
    MaskedCodeLoss()(torch.zeros(1), None, {"masked_codes": extra}).backward()
    grad = extra["diagnoses"].logits.grad
    assert grad[0, 2] == 0 and bool((grad[2] == 0).all())  # visible code, empty set
    assert grad[0, 0] == pytest.approx((1 / (1 + math.exp(-2.0)) - 1) / 2)  # (p - y) / 2 visits


def info_nce(first: list[list[float]], second: list[list[float]], tau: float) -> float:
    """Eq. 9 + its mirror with plain Python: cosine similarities, positives out of the denominators."""

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    n = len(first)
    s = [[cos(first[i], second[j]) / tau for j in range(n)] for i in range(n)]
    dp = -sum(s[i][i] - math.log(sum(math.exp(s[i][j]) for j in range(n) if j != i)) for i in range(n)) / n
    pd = -sum(s[j][j] - math.log(sum(math.exp(s[i][j]) for i in range(n) if i != j)) for j in range(n)) / n
    return dp + pd


def test_contrastive_by_hand() -> None:
    first = [[1.0, 0.0], [0.5, 0.5], [0.0, 2.0], [9.0, 9.0]]
    second = [[2.0, 0.2], [0.1, 1.0], [-1.0, 1.0], [1.0, -1.0]]
    pair = PairRepresentations(torch.tensor(first), torch.tensor(second),
                               valid=torch.tensor([True, True, True, False]), names=("diagnoses", "procedures"))
    loss = ContrastiveLoss(ContrastiveLoss.Params(temperature=0.5))
    value = loss(torch.zeros(1), None, {"pair_representations": pair})
    assert value.item() == pytest.approx(info_nce(first[:3], second[:3], 0.5), rel=1e-5)
    assert loss.extras_needed(loss.params) == frozenset({"pair_representations"})
    assert ContrastiveLoss.Params().temperature == 0.8


def test_contrastive_rewards_aligned_pairs() -> None:
    aligned = torch.eye(4)
    crossed = torch.eye(4)[[1, 2, 3, 0]]
    valid = torch.ones(4, dtype=torch.bool)

    def value(second: torch.Tensor) -> float:
        pair = PairRepresentations(aligned, second, valid, ("diagnoses", "procedures"))
        return ContrastiveLoss()(torch.zeros(1), None, {"pair_representations": pair}).item()

    assert value(aligned) < value(crossed)
    # aligned unit vectors: s_ii = 1/tau, s_ij = 0 -> 2 (log 3 - 1/tau)
    assert value(aligned) == pytest.approx(2 * (math.log(3) - 1 / 0.8), rel=1e-6)


def test_contrastive_needs_two_visits() -> None:
    first = torch.randn(3, 4, requires_grad=True)
    pair = PairRepresentations(first, torch.randn(3, 4), torch.tensor([False, True, False]), ("d", "p"))
    value = ContrastiveLoss()(torch.zeros(1), None, {"pair_representations": pair})
    assert value.item() == 0.0
    value.backward()  # still part of the graph
    assert first.grad is not None


def test_a_missing_extra_is_named() -> None:
    with pytest.raises(KeyError, match="pair_representations"):
        ContrastiveLoss()(torch.zeros(1), None, {"masked_codes": {}})
    with pytest.raises(KeyError, match="masked_codes"):
        MaskedCodeLoss()(torch.zeros(1), None, {})


@pytest.mark.parametrize("loss", [MaskedCodeLoss, ContrastiveLoss])
def test_conformance(loss: type) -> None:
    provider = TEMPTRecommender.Params(encoder=Node.of(SetTransformerEncoder, dim=16, heads=2))
    check_component(loss, recommender=TEMPTRecommender, recommender_params=provider)
    check_component(loss, loss.Params(weight=0.01), recommender=TEMPTRecommender, recommender_params=provider)
