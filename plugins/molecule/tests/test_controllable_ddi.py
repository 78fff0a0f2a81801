"""Tests of the ``controllable_ddi`` loss (SafeDrug's beta rule, E6-E9), values worked out by hand."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pydantic
import pytest
import torch

from medtoolkit.components.losses.ddi import ddi_penalty
from medtoolkit.components.losses.margin import multilabel_margin
from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.testing import check_component, fake_schema
from medtoolkit_molecule.loss import ControllableDDILoss, controller_beta

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOSS_CHECKS = {"params", "shapes", "state_dict", "device", "determinism", "gradients"}
#: 3 drugs, one interacting pair (0, 1), stored both ways as in every DDI matrix
ADJACENCY = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float32)


def schema_3_drugs() -> DataSchema:
    return DataSchema(vocab_sizes={"diagnoses": 2, "procedures": 2, "medications": 3}, n_drugs=3,
                      ddi_adjacency=ADJACENCY)


def logit(p: list[float]) -> list[float]:
    return [math.log(x / (1 - x)) for x in p]


def batch_of(probabilities: list[list[float]], targets: list[list[float]], padding: int = 0) -> tuple[
        torch.Tensor, PaddedBatch]:
    """One patient whose visits have these probabilities and targets, plus ``padding`` padded visits."""
    n_real = len(probabilities)
    rows = [logit(p) for p in probabilities] + [[3.0, 3.0, 3.0]] * padding  # padding would count if not masked
    logits = torch.tensor([rows], dtype=torch.float64, requires_grad=True)
    medications = torch.tensor([targets + [[1.0, 1.0, 1.0]] * padding], dtype=torch.float32)
    mask = torch.tensor([[True] * n_real + [False] * padding])
    batch = PaddedBatch(codes={}, visit_mask=mask, medications=medications, patient_index=torch.tensor([0]))
    return logits, batch


def build(**params: object) -> ControllableDDILoss:
    return ControllableDDILoss(ControllableDDILoss.Params(**params), schema_3_drugs()).double()


# --- beta (E8) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "beta"), [(0.0, 1.0), (0.05, 1.0), (0.06, 1.0), (0.085, 0.5), (0.11, 0.0),
                                            (0.2, 0.0), (1.0, 0.0)])
def test_beta_is_clipped_to_0_1(rate: float, beta: float) -> None:
    """target .06, kp .05: 1 - (d - .06) / .05; the public code's min(0, ...) would give -1.8 at d = .2."""
    value = controller_beta(torch.tensor([rate], dtype=torch.float64), 0.06, 0.05)
    assert float(value) == pytest.approx(beta, abs=1e-12)


def test_beta_needs_positive_kp() -> None:
    with pytest.raises(ValueError, match="kp must be > 0"):
        controller_beta(torch.tensor([0.1]), 0.06, 0.0)
    with pytest.raises(pydantic.ValidationError):
        ControllableDDILoss.Params(kp=0.0)


# --- the loss (E6, E7, E9) ------------------------------------------------------------------------


def test_above_target_plus_kp_only_the_ddi_term_counts() -> None:
    """p = [.9, .8, .1]: predicted {0, 1}, the one pair interacts, d = 1, beta = 0.

    L = .0005 * sum over ordered pairs = .0005 * (A_01 p0 p1 + A_10 p1 p0) = .0005 * 2 * .72.
    """
    loss = build()
    logits, batch = batch_of([[0.9, 0.8, 0.1]], [[1.0, 0.0, 0.0]])
    value = loss(logits, batch)
    assert float(value.detach()) == pytest.approx(7.2e-4, rel=1e-9)
    terms = loss.visit_terms(logits[0], batch.medications[0])
    assert float(terms["rate"][0]) == 1.0 and float(terms["beta"][0]) == 0.0
    # reduction mean divides by N^2 = 9 (GAMENet's scale)
    assert float(build(reduction="mean")(logits, batch)) == pytest.approx(7.2e-4 / 9, rel=1e-9)
    # the gradient is the DDI term's only: dL/do_0 = .0005 * 2 p1 * p0 (1 - p0), dL/do_2 = 0 (no BCE)
    value.backward()
    grad = logits.grad[0, 0]
    assert grad.tolist() == pytest.approx([0.0005 * 2 * 0.8 * 0.09, 0.0005 * 2 * 0.9 * 0.16, 0.0], rel=1e-9, abs=1e-15)


#: the mixing visit: p = [.9, .8, .6] all predicted (3 pairs, 1 interacting: d = 1/3), targets {0, 2}
MIX_P, MIX_Y = [0.9, 0.8, 0.6], [1.0, 0.0, 1.0]
#: BCE mean over the 3 drugs: -(log .9 + log .2 + log .6) / 3
MIX_BCE = -(math.log(0.9) + math.log(0.2) + math.log(0.6)) / 3
#: margin: sum over j in {0, 2}, i = 1 of (1 - (p_j - p_i)), over N = 3: ((1 - .1) + (1 + .2)) / 3 = .7
MIX_MARGIN = 0.7
#: DDI term: .0005 * 2 * .9 * .8
MIX_DDI = 7.2e-4


def test_mixing_visit_is_beta_pred_plus_one_minus_beta_ddi() -> None:
    """target .25, kp 1/6: beta = 1 - (1/3 - 1/4) * 6 = .5, so L = .5 (.95 BCE + .05 margin) + .5 DDI."""
    loss = build(target=0.25, kp=1 / 6)
    logits, batch = batch_of([MIX_P], [MIX_Y])
    terms = loss.visit_terms(logits[0], batch.medications[0])
    assert float(terms["rate"][0]) == pytest.approx(1 / 3)
    assert float(terms["beta"][0]) == pytest.approx(0.5)
    assert float(terms["bce"][0]) == pytest.approx(MIX_BCE, rel=1e-9)
    assert float(terms["margin"][0]) == pytest.approx(MIX_MARGIN, rel=1e-9)
    assert float(terms["ddi"][0]) == pytest.approx(MIX_DDI, rel=1e-9)
    expected = 0.5 * (0.95 * MIX_BCE + 0.05 * MIX_MARGIN) + 0.5 * MIX_DDI  # = 0.370250...
    # beta comes from the thresholded sets in float32, hence 1e-6
    assert float(loss(logits, batch)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.3702505, abs=1e-6)


def test_no_gradient_flows_through_beta() -> None:
    """beta is a constant: the gradient is .5 grad(prediction loss) + .5 grad(DDI term)."""
    loss = build(target=0.25, kp=1 / 6)
    logits, batch = batch_of([MIX_P], [MIX_Y])
    terms = loss.visit_terms(logits[0], batch.medications[0])
    assert not terms["beta"].requires_grad and not terms["rate"].requires_grad
    loss(logits, batch).backward()
    got = logits.grad.clone()

    plain = logits.detach().clone().requires_grad_(True)
    p = torch.sigmoid(plain[0])
    y = batch.medications[0].double()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(plain[0], y, reduction="none").mean(-1)
    prediction = 0.95 * bce + 0.05 * multilabel_margin(p, y)
    ddi = 0.0005 * ddi_penalty(p, torch.tensor(ADJACENCY, dtype=torch.float64), "sum")
    (0.5 * prediction + 0.5 * ddi).sum().backward()
    assert torch.allclose(got, plain.grad, rtol=1e-6, atol=1e-12)


def test_batch_loss_is_the_mean_over_real_visits() -> None:
    """Visit 1 as above (7.2e-4); visit 2, p = [.2, .3, .6]: one predicted drug, d = 0, beta = 1.

    Visit 2: BCE -(log .8 + log .7 + log .6) / 3 with targets {2}; margin ((1 - .4) + (1 - .3)) / 3.
    The two padded visits (all targets 1, logits 3) do not count.
    """
    loss = build()
    logits, batch = batch_of([[0.9, 0.8, 0.1], [0.2, 0.3, 0.6]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], padding=2)
    visit2 = 0.95 * -(math.log(0.8) + math.log(0.7) + math.log(0.6)) / 3 + 0.05 * (0.6 + 0.7) / 3
    assert float(loss(logits, batch)) == pytest.approx((7.2e-4 + visit2) / 2, rel=1e-9)


def test_below_target_option_adds_the_ddi_term() -> None:
    """Archived branch: at d <= target, L = prediction + DDI (visit 2 above has d = 0, DDI .0005 * 2 * .2 * .3)."""
    logits, batch = batch_of([[0.2, 0.3, 0.6]], [[0.0, 0.0, 1.0]])
    prediction = float(build()(logits, batch))
    plus = float(build(below_target="prediction_plus_ddi")(logits, batch))
    assert plus == pytest.approx(prediction + 0.0005 * 2 * 0.2 * 0.3, rel=1e-9)
    # above the target the option changes nothing
    logits, batch = batch_of([[0.9, 0.8, 0.1]], [[1.0, 0.0, 0.0]])
    assert float(build(below_target="prediction_plus_ddi")(logits, batch)) == pytest.approx(7.2e-4, rel=1e-9)


def test_batch_granularity_uses_the_pooled_rate() -> None:
    """Pooled over the two visits: 1 interacting pair of 1 pair (visit 2 has none), d = 1, beta = 0 for both.

    L = mean of the DDI terms = (7.2e-4 + .0005 * 2 * .2 * .3) / 2 (visit 2's pair 0-1 is not predicted but
    the penalty uses probabilities).
    """
    loss = build(granularity="batch")
    logits, batch = batch_of([[0.9, 0.8, 0.1], [0.2, 0.3, 0.6]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert float(loss(logits, batch)) == pytest.approx((7.2e-4 + 6e-5) / 2, rel=1e-9)


def test_weight_scales_the_term_in_the_objective() -> None:
    loss = build(weight=2.0)
    logits, batch = batch_of([[0.9, 0.8, 0.1]], [[1.0, 0.0, 0.0]])
    total = loss.combine(logits.new_zeros(()), logits, batch)
    assert float(total) == pytest.approx(2 * 7.2e-4, rel=1e-9)


def test_no_real_visit_gives_zero() -> None:
    logits, batch = batch_of([[0.9, 0.8, 0.1]], [[1.0, 0.0, 0.0]])
    batch = dataclasses.replace(batch, visit_mask=torch.zeros_like(batch.visit_mask))
    value = build()(logits, batch)
    assert float(value) == 0.0 and value.requires_grad


# --- tracking -------------------------------------------------------------------------------------


def test_tracked_values_pool_the_epoch_and_reset() -> None:
    """Two steps: visit d = 1 (beta 0, 1 pair) and visit d = 0 (beta 1, no pair), then the mixing visit.

    beta mean = (0 + 1 + .5) / 3 = .5; beta < 1 in 2 of 3 visits; pooled DDI rate = (1 + 0 + 1) / (1 + 0 + 3).
    """
    loss = build(target=0.25, kp=1 / 6)
    assert loss.tracked() == {}
    logits, batch = batch_of([[0.9, 0.8, 0.1], [0.2, 0.3, 0.6]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    loss(logits, batch)
    logits, batch = batch_of([MIX_P], [MIX_Y])
    loss(logits, batch)
    with torch.no_grad():  # evaluation calls are not counted
        loss(*batch_of([[0.9, 0.8, 0.1]], [[1.0, 0.0, 0.0]]))
    tracked = loss.tracked()
    assert tracked["beta"] == pytest.approx(0.5)
    assert tracked["share_beta_below_1"] == pytest.approx(2 / 3)
    assert tracked["ddi_rate"] == pytest.approx(2 / 4)
    assert tracked["target"] == 0.25
    assert set(tracked) == {"beta", "ddi_rate", "share_beta_below_1", "target"}
    loss.reset_tracking()
    assert loss.tracked() == {}


# --- component contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("params", [
    ControllableDDILoss.Params(),
    ControllableDDILoss.Params(reduction="mean", granularity="batch", below_target="prediction_plus_ddi"),
    ControllableDDILoss.Params(alpha=0.9, target=0.0, kp=0.01),
])
def test_conforms(params: ControllableDDILoss.Params) -> None:
    assert set(check_component(ControllableDDILoss, params)) == LOSS_CHECKS


def test_needs_the_ddi_matrix() -> None:
    assert ControllableDDILoss.knowledge_needed(ControllableDDILoss.Params()) == frozenset({"ddi"})
    schema = dataclasses.replace(fake_schema(), ddi_adjacency=None)
    with pytest.raises(ValueError, match=r"^loss 'controllable_ddi' needs a DDI matrix"):
        ControllableDDILoss(ControllableDDILoss.Params(), schema)


def test_adjacency_is_a_buffer_not_saved() -> None:
    loss = build()
    assert "ddi_adjacency" in dict(loss.named_buffers())
    assert "ddi_adjacency" not in loss.state_dict()


# --- data parallelism ----------------------------------------------------------------------------


def test_batch_granularity_decides_from_the_global_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two simulated ranks, one visit each: in training, beta comes from the pair counts of both.

    Visit 1 predicts {0, 1} (1 interacting pair of 1), visit 2 predicts {2} (no pair): pooled d = 1,
    beta = 0 on both ranks, while rank 2 alone (no pair) would give beta = 1.
    """
    from medtoolkit.training import distributed

    whole_logits, whole = batch_of([[0.9, 0.8, 0.1], [0.2, 0.3, 0.6]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    expected = build(granularity="batch").visit_terms(whole_logits[whole.visit_mask],
                                                      whole.medications[whole.visit_mask])
    global_counts = torch.tensor([1.0, 1.0], dtype=torch.float64)
    monkeypatch.setattr(distributed, "reduce_sum", lambda values: global_counts.to(values.dtype))
    for visit in range(2):
        logits, batch = batch_of([[0.9, 0.8, 0.1], [0.2, 0.3, 0.6]][visit:visit + 1],
                                 [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]][visit:visit + 1])
        terms = build(granularity="batch").visit_terms(logits[0], batch.medications[0])
        assert torch.equal(terms["beta"], expected["beta"][visit:visit + 1])
        assert float(terms["beta"][0]) == 0.0
        with torch.no_grad():  # evaluation: this rank's visits only (ranks may evaluate different batches)
            local = build(granularity="batch").visit_terms(logits[0], batch.medications[0])
        assert float(local["beta"][0]) == (0.0 if visit == 0 else 1.0)


def test_tracked_sums_the_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    from medtoolkit.training import distributed

    loss = build()
    logits, batch = batch_of([[0.9, 0.8, 0.1]], [[1.0, 0.0, 0.0]])
    loss(logits, batch)
    alone = loss.tracked()
    monkeypatch.setattr(distributed, "reduce_sum", lambda values: values * 2)  # a second, identical rank
    assert loss.tracked() == alone
