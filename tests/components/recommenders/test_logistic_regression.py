"""Tests of the ``logistic_regression`` recommender (per-visit baseline)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.recommenders.logistic_regression import (
    LogisticRegressionRecommender,
    previous_medications,
)
from medtoolkit.data.ehr import DIAGNOSES, PROCEDURES
from medtoolkit.testing import check_component, fake_batch, fake_ehr, fake_schema

LR = LogisticRegressionRecommender


@pytest.mark.parametrize("params", [LR.Params(), LR.Params(use_history=True), LR.Params(vocabularies=("diagnoses",))])
def test_conformance(params: LR.Params) -> None:
    assert "causality" in check_component(LR, params)


def test_initialisation_from_drug_frequency() -> None:
    schema = fake_schema()
    model = LR(LR.Params(), schema)
    rate = np.clip(schema.drug_frequency, 1e-4, 1 - 1e-4)
    assert np.allclose(model.bias.detach().numpy(), np.log(rate / (1 - rate)), atol=1e-5)
    assert all(float(t.weight.detach().abs().sum()) == 0 for t in model.weights.values())
    assert float(LR(LR.Params(frequency_bias_init=False), schema).bias.detach().abs().sum()) == 0


def test_logits_are_bias_plus_code_weights() -> None:
    data = fake_ehr()
    schema = fake_schema(data)
    torch.manual_seed(0)
    model = LR(LR.Params(), schema)
    with torch.no_grad():
        for table in model.weights.values():
            table.weight[1:].normal_()
    batch = fake_batch(data)
    logits = model(batch)
    # hand check one visit: patient 0, visit 0
    visit = 0
    expected = model.bias.clone()
    for name in (DIAGNOSES, PROCEDURES):
        for code in data.visit_codes(name, visit):
            expected = expected + model.weights[name].weight[int(code) + 1]
    assert torch.allclose(logits[0, 0], expected, atol=1e-5)
    # and all visits: a linear model on the multi-hot [diagnoses | procedures]
    visits = np.arange(data.n_visits)
    features = torch.from_numpy(np.concatenate([data.multi_hot(DIAGNOSES, visits), data.multi_hot(PROCEDURES, visits)], 1))
    weight = torch.cat([model.weights[DIAGNOSES].weight[1:], model.weights[PROCEDURES].weight[1:]])
    assert torch.allclose(logits[batch.visit_mask], features @ weight + model.bias, atol=1e-4)


def test_no_history_by_default_and_history_variant() -> None:
    schema = fake_schema()
    batch = fake_batch()
    plain = LR(LR.Params(), schema)
    assert plain.history is None
    shuffled = batch.medications.flip(1)
    other = type(batch)(batch.codes, batch.visit_mask, shuffled, batch.patient_index)
    assert torch.equal(plain(batch), plain(other))  # medications are never read
    model = LR(LR.Params(use_history=True), schema)
    with torch.no_grad():
        model.history.weight.copy_(torch.eye(schema.n_drugs))
    delta = model(batch) - plain(batch)
    assert torch.allclose(delta, previous_medications(batch.medications))
    assert torch.equal(delta[:, 0], torch.zeros_like(delta[:, 0]))


def test_training_fits_a_planted_rule() -> None:
    data = fake_ehr(n_patients=40, seed=1)
    schema = fake_schema(data)
    batch = fake_batch(data)
    model = LR(LR.Params(), schema)
    loss = BCELoss(BCELoss.Params(), schema)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    start = loss(model(batch), batch).item()
    for _ in range(100):
        optimizer.zero_grad()
        value = loss(model(batch), batch)
        value.backward()
        optimizer.step()
    assert loss(model(batch), batch).item() < 0.5 * start
    assert math.isfinite(start)
