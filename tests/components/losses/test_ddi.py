"""Tests of the ``ddi`` loss: GAMENet's penalty and the annealed switching rule."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from medtoolkit.components.losses.ddi import DDILoss, ddi_penalty, predicted_ddi_rate, visit_ddi_rates
from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.testing import check_component

BIG = 10.0  # logit of a predicted drug (sigmoid ~ 1); -BIG: not predicted


def _schema(n_drugs: int, pairs: list[tuple[int, int]]) -> DataSchema:
    adjacency = np.zeros((n_drugs, n_drugs), dtype=np.float32)
    for i, j in pairs:
        adjacency[i, j] = adjacency[j, i] = 1.0
    return DataSchema(vocab_sizes={"diagnoses": 3}, n_drugs=n_drugs, ddi_adjacency=adjacency)


def _batch(logits: torch.Tensor) -> PaddedBatch:
    b, t, n = logits.shape
    return PaddedBatch(
        codes={"diagnoses": torch.ones(b, t, 1, dtype=torch.long)},
        visit_mask=torch.ones(b, t, dtype=torch.bool),
        medications=torch.zeros(b, t, n),
        patient_index=torch.arange(b),
    )


@pytest.mark.parametrize("params", [DDILoss.Params(), DDILoss.Params(mode="additive"), DDILoss.Params(granularity="visit")])
def test_conformance(params: DDILoss.Params) -> None:
    assert "gradients" in check_component(DDILoss, params)


def test_defaults_are_safedrug_repo_gamenet() -> None:
    p = DDILoss.Params()
    assert (p.weight, p.target, p.temperature, p.decay, p.mode, p.threshold) == (1.0, 0.06, 2.0, 0.85, "anneal", 0.5)
    assert DDILoss.gating


def test_penalty_two_drug_example() -> None:
    # p = [0.5, 0.8], A = [[0, 1], [1, 0]]: (0.5 * 0.8 + 0.8 * 0.5) / 2^2 = 0.2
    adjacency = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert math.isclose(float(ddi_penalty(torch.tensor([[0.5, 0.8]]), adjacency)[0]), 0.2, rel_tol=1e-6)
    loss = DDILoss(DDILoss.Params(), _schema(2, [(0, 1)]))
    logits = torch.tensor([[[0.0, math.log(4.0)]]])  # sigmoid -> 0.5, 0.8
    assert math.isclose(float(loss(logits, _batch(logits))), 0.2, rel_tol=1e-5)


def test_penalty_reductions_by_hand() -> None:
    # p = [1, 0.5, 0], A = {(0, 1), (1, 0)}: p^T A p = 1 * 0.5 + 0.5 * 1 = 1.0 (both orders);
    # mean divides by N^2 = 9
    adjacency = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    p = torch.tensor([[1.0, 0.5, 0.0]])
    assert math.isclose(float(ddi_penalty(p, adjacency, reduction="sum")[0]), 1.0, rel_tol=1e-6)
    assert math.isclose(float(ddi_penalty(p, adjacency, reduction="mean")[0]), 1 / 9, rel_tol=1e-6)
    assert torch.equal(ddi_penalty(p, adjacency), ddi_penalty(p, adjacency, reduction="mean"))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        ddi_penalty(p, adjacency, reduction="max")  # type: ignore[arg-type]


def test_loss_reduction_param() -> None:
    # p = [0.5, 0.8], A = {(0, 1)}: sum = 2 * 0.5 * 0.8 = 0.8, mean = 0.8 / 4 = 0.2
    assert DDILoss.Params().reduction == "mean"
    logits = torch.tensor([[[0.0, math.log(4.0)]]])  # sigmoid -> 0.5, 0.8
    summed = DDILoss(DDILoss.Params(reduction="sum"), _schema(2, [(0, 1)]))
    assert math.isclose(float(summed(logits, _batch(logits))), 0.8, rel_tol=1e-5)
    additive = DDILoss(DDILoss.Params(mode="additive", weight=0.5, reduction="sum"), _schema(2, [(0, 1)]))
    combined = additive.combine(torch.tensor(1.0), logits, _batch(logits))
    assert math.isclose(float(combined), 1.0 + 0.5 * 0.8, rel_tol=1e-5)
    assert "gradients" in check_component(DDILoss, DDILoss.Params(reduction="sum", granularity="visit"))


def test_ddi_rates_hand_example() -> None:
    adjacency = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    predicted = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    # pairs: 3 (1 interacting), 0, 1 (1 interacting) -> pooled 2 / 4
    assert math.isclose(predicted_ddi_rate(predicted, adjacency), 0.5)
    assert torch.allclose(visit_ddi_rates(predicted, adjacency), torch.tensor([1 / 3, 0.0, 1.0]))
    assert predicted_ddi_rate(torch.zeros(2, 3), adjacency) == 0.0


def test_anneal_below_target_keeps_total_and_draws_nothing() -> None:
    loss = DDILoss(DDILoss.Params(seed=5), _schema(3, [(0, 1)]))
    logits = torch.tensor([[[BIG, -BIG, BIG]]])  # predicted {0, 2}: no interacting pair
    state = loss.generator.get_state()
    total = torch.tensor(0.7)
    assert loss.combine(total, logits, _batch(logits)) is total
    assert loss.last_rate == 0.0 and not loss.last_switched
    assert torch.equal(loss.generator.get_state(), state)


def test_anneal_switching_rule_with_fixed_generator() -> None:
    # predicted {0, 1, 2} with one interacting pair: d = 1/3; T = 0.4:
    # switch probability exp((0.06 - 1/3) / 0.4) = 0.5049
    params = DDILoss.Params(seed=11, temperature=0.4, weight=2.0)
    loss = DDILoss(params, _schema(3, [(0, 1)]))
    logits = torch.tensor([[[BIG, BIG, BIG]]])
    batch = _batch(logits)
    probability = math.exp((0.06 - 1 / 3) / 0.4)
    assert math.isclose(loss.switch_probability(1 / 3), probability)
    draws = torch.rand(40, generator=torch.Generator().manual_seed(11))
    total = torch.tensor(0.7)
    penalty = float(loss(logits, batch))
    decisions = []
    for draw in draws:
        result = loss.combine(total, logits, batch)
        switched = bool(draw < probability)
        decisions.append(switched)
        assert math.isclose(loss.last_rate, 1 / 3, rel_tol=1e-6)
        assert loss.last_switched == switched
        if switched:
            assert math.isclose(float(result), 2.0 * penalty, rel_tol=1e-6)  # weight * penalty only
        else:
            assert result is total
    assert 5 < sum(decisions) < 35  # both outcomes happen
    assert loss.n_penalty_steps == sum(decisions) and loss.n_prediction_steps == 40 - sum(decisions)


def test_same_seed_same_decisions_and_state_dict_restores_schedule() -> None:
    schema = _schema(3, [(0, 1)])
    logits = torch.tensor([[[BIG, BIG, BIG]]])
    batch = _batch(logits)
    total = torch.tensor(1.0)

    def run(loss: DDILoss, steps: int) -> list[bool]:
        out = []
        for _ in range(steps):
            loss.combine(total, logits, batch)
            out.append(loss.last_switched)
        return out

    first = DDILoss(DDILoss.Params(seed=3, temperature=0.4), schema)
    second = DDILoss(DDILoss.Params(seed=3, temperature=0.4), schema)
    assert run(first, 20) == run(second, 20)
    first.on_epoch_end(0)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = DDILoss(DDILoss.Params(seed=3, temperature=0.4), schema)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert math.isclose(resumed.temperature, 0.4 * 0.85)
    assert run(resumed, 20) == run(first, 20)


def test_temperature_decays_per_epoch() -> None:
    loss = DDILoss(DDILoss.Params(), _schema(3, [(0, 1)]))
    loss.on_epoch_end(0)
    loss.on_epoch_end(1)
    assert math.isclose(loss.temperature, 2.0 * 0.85**2)


def test_additive_mode() -> None:
    loss = DDILoss(DDILoss.Params(mode="additive", weight=0.5), _schema(2, [(0, 1)]))
    logits = torch.tensor([[[0.0, math.log(4.0)]]])
    result = loss.combine(torch.tensor(1.0), logits, _batch(logits))
    assert math.isclose(float(result), 1.0 + 0.5 * 0.2, rel_tol=1e-5)


def test_per_visit_granularity() -> None:
    # visit 0 predicts {0, 1, 2} (d = 1/3), visit 1 predicts {0, 2} (d = 0, never switches)
    loss = DDILoss(DDILoss.Params(seed=2, temperature=0.4, granularity="visit"), _schema(3, [(0, 1)]))
    logits = torch.tensor([[[BIG, BIG, BIG], [BIG, -BIG, BIG]]])
    batch = _batch(logits)
    probability = math.exp((0.06 - 1 / 3) / 0.4)
    draws = torch.rand(60, generator=torch.Generator().manual_seed(2)).view(30, 2)
    total = torch.tensor(0.7)
    penalty0 = float(ddi_penalty(torch.sigmoid(logits[0, :1]), loss.ddi_adjacency)[0])
    for draw in draws:
        result = loss.combine(total, logits, batch)
        if draw[0] < probability:
            # half the visits switched: (1 - 1/2) * total + penalty of visit 0 / 2 visits
            assert math.isclose(float(result), 0.5 * 0.7 + penalty0 / 2, rel_tol=1e-5)
        else:  # no visit switched: the prediction loss, exactly
            assert torch.equal(result, total)
    assert math.isclose(loss.last_rate, 1 / 4, rel_tol=1e-6)  # pooled: 1 interacting of 3 + 1 pairs


def test_tracked_anneal_epoch_values() -> None:
    # every step predicts {0, 1, 2} with one interacting pair: pooled rate 1 / 3 each step
    params = DDILoss.Params(seed=11, temperature=0.4)
    loss = DDILoss(params, _schema(3, [(0, 1)]))
    assert loss.tracked() == {}
    logits = torch.tensor([[[BIG, BIG, BIG]]])
    batch = _batch(logits)
    switched = 0
    for _ in range(40):
        loss.combine(torch.tensor(0.7), logits, batch)
        switched += loss.last_switched
    values = loss.tracked()
    assert set(values) == {"ddi_rate", "switched_share", "temperature"}
    assert math.isclose(values["ddi_rate"], 1 / 3, rel_tol=1e-6)
    assert math.isclose(values["switched_share"], switched / 40)
    assert values["temperature"] == 0.4  # the T used during the epoch, not the decayed one
    loss.on_epoch_end(0)
    assert loss.tracked()["temperature"] == 0.4
    loss.reset_tracking()
    assert loss.tracked() == {}
    loss.combine(torch.tensor(0.7), logits, batch)
    assert math.isclose(loss.tracked()["temperature"], 0.4 * 0.85)


def test_tracked_pools_pairs_over_batches_in_additive_mode() -> None:
    # batch 1 predicts {0, 1, 2}: 1 interacting of 3 pairs; batch 2 predicts {0, 1}: 1 of 1 -> 2 / 4
    loss = DDILoss(DDILoss.Params(mode="additive"), _schema(3, [(0, 1)]))
    for logits in (torch.tensor([[[BIG, BIG, BIG]]]), torch.tensor([[[BIG, BIG, -BIG]]])):
        loss.combine(torch.tensor(1.0), logits, _batch(logits))
    assert loss.tracked() == {"ddi_rate": 0.5}


def test_tracked_per_visit_switched_share() -> None:
    # as test_per_visit_granularity: only visit 0 (d = 1/3) can switch; 2 decisions per step
    loss = DDILoss(DDILoss.Params(seed=2, temperature=0.4, granularity="visit"), _schema(3, [(0, 1)]))
    logits = torch.tensor([[[BIG, BIG, BIG], [BIG, -BIG, BIG]]])
    probability = math.exp((0.06 - 1 / 3) / 0.4)
    draws = torch.rand(60, generator=torch.Generator().manual_seed(2)).view(30, 2)
    for _ in range(30):
        loss.combine(torch.tensor(0.7), logits, _batch(logits))
    values = loss.tracked()
    assert math.isclose(values["ddi_rate"], 1 / 4, rel_tol=1e-6)
    assert math.isclose(values["switched_share"], int((draws[:, 0] < probability).sum()) / 60)


def test_refuses_a_dataset_without_ddi_matrix() -> None:
    schema = DataSchema(vocab_sizes={"diagnoses": 3}, n_drugs=3, ddi_adjacency=None)
    with pytest.raises(ValueError, match=r"^loss 'ddi' needs a DDI matrix, but the dataset has no DDI matrix"):
        DDILoss(DDILoss.Params(), schema)


# ---------------------------------------------------------------------------- data parallelism
def _part(batch_logits: torch.Tensor, mask: torch.Tensor, rows: slice) -> tuple[torch.Tensor, PaddedBatch]:
    logits = batch_logits[rows]
    batch = _batch(logits)
    batch.visit_mask = mask[rows]
    return logits, batch


def _visit_counts(loss: DDILoss, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[V, 2]`` interacting / all pairs of each real visit's predicted set (what a rank gathers)."""
    from medtoolkit.components.losses.ddi import pair_counts_off_diagonal

    predicted = (torch.sigmoid(logits[mask]) >= loss.params.threshold).float()
    return torch.stack(pair_counts_off_diagonal(predicted, loss.ddi_off_diagonal), dim=1)


@pytest.mark.parametrize("granularity", ["visit", "batch"])
def test_two_ranks_take_the_single_process_decisions(granularity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two simulated ranks (patients 0-2 and 3-4 of each batch) decide as one process does.

    ``gather_rows`` / ``reduce_sum`` are replaced by what two ranks would see; with the
    trainer's weighting (rank r's loss times its visit share) the two losses add up to the
    single-process loss, and the decision counters and tracked values agree.
    """
    from medtoolkit.training import distributed

    schema = _schema(4, [(0, 1), (2, 3)])
    params = DDILoss.Params(seed=7, temperature=0.3, granularity=granularity)
    single, ranks = DDILoss(params, schema), [DDILoss(params, schema), DDILoss(params, schema)]
    parts = [slice(0, 3), slice(3, 5)]
    generator = torch.Generator().manual_seed(0)
    for _ in range(12):
        logits = torch.randn(5, 3, 4, generator=generator) * 3
        mask = torch.rand(5, 3, generator=generator) < 0.8
        mask[:, 0] = True
        per_visit = torch.rand(5, 3, generator=generator)  # the prediction loss's per-visit values
        whole = _batch(logits)
        whole.visit_mask = mask
        monkeypatch.undo()  # one process: the real (identity) helpers
        expected = single.combine(per_visit[mask].mean(), logits, whole)
        counts = [_visit_counts(single, logits[rows], mask[rows]) for rows in parts]
        weighted = torch.zeros(())
        for index, (rank_loss, rows) in enumerate(zip(ranks, parts)):
            start = sum(len(part) for part in counts[:index])

            def gather_rows(values: torch.Tensor, index: int = index, start: int = start):
                assert torch.equal(values, counts[index])
                return torch.cat(counts), slice(start, start + len(values))

            def reduce_sum(values: torch.Tensor) -> torch.Tensor:  # the batch's pooled pair counts
                return torch.stack([torch.cat(counts)[:, 0].sum(), torch.cat(counts)[:, 1].sum()])

            monkeypatch.setattr(distributed, "gather_rows", gather_rows)
            monkeypatch.setattr(distributed, "reduce_sum", reduce_sum)
            part_logits, part_batch = _part(logits, mask, rows)
            local = rank_loss.combine(per_visit[rows][mask[rows]].mean(), part_logits, part_batch)
            weighted = weighted + local * (int(mask[rows].sum()) / int(mask.sum()))
        assert torch.allclose(weighted, expected, atol=1e-6)
        assert ranks[0].last_switched == ranks[1].last_switched == single.last_switched
        assert math.isclose(ranks[0].last_rate, single.last_rate) and math.isclose(ranks[1].last_rate, single.last_rate)
    monkeypatch.undo()
    expected_tracked = single.tracked()
    monkeypatch.setattr(distributed, "reduce_sum", lambda values: ranks[0]._tracking + ranks[1]._tracking)
    tracked = ranks[0].tracked()
    assert tracked.keys() == expected_tracked.keys() and 0 < expected_tracked["switched_share"] < 1
    for name, value in expected_tracked.items():
        assert math.isclose(tracked[name], value, rel_tol=1e-12)
    if granularity == "visit":  # per rank: its own visits' decisions
        assert sum(rank.n_penalty_steps for rank in ranks) == single.n_penalty_steps
        assert sum(rank.n_prediction_steps for rank in ranks) == single.n_prediction_steps
    else:  # every rank takes the batch decision
        assert all(rank.n_penalty_steps == single.n_penalty_steps for rank in ranks)
    assert 0 < single.n_penalty_steps and 0 < single.n_prediction_steps
    assert all(torch.equal(rank.generator.get_state(), single.generator.get_state()) for rank in ranks)


def test_counters_stay_on_the_device_until_read() -> None:
    loss = DDILoss(DDILoss.Params(seed=2, temperature=0.4, granularity="visit"), _schema(3, [(0, 1)]))
    logits = torch.tensor([[[BIG, BIG, BIG], [BIG, -BIG, BIG]]])
    loss.combine(torch.tensor(0.7), logits, _batch(logits))
    assert {name for name, _ in loss.named_buffers()} >= {"_tracking", "_steps", "_last"}
    assert "_tracking" not in loss.state_dict() and "_extra_state" in loss.state_dict()
    assert loss.n_penalty_steps + loss.n_prediction_steps == 2
