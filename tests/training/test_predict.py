"""Batched inference: flattened per-visit predictions in patient order, then visit order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medtoolkit.components.base import Recommender
from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.data.ehr import MEDICATIONS, EHRData
from medtoolkit.tasks.medication import visits_of
from medtoolkit.testing import fake_ehr, fake_schema
from medtoolkit.training.predict import predict

CPU = torch.device("cpu")


class Stamp(Recommender):
    """Logits that name their slot: drug 0 = patient index, drug 1 = visit position, rest 0."""

    def __init__(self, schema: DataSchema) -> None:
        super().__init__(None, schema)
        self.calls: list[int] = []
        self.modes: list[bool] = []

    def forward(self, batch: PaddedBatch) -> torch.Tensor:
        self.calls.append(batch.batch_size)
        self.modes.append(self.training)
        batch_size, n_slots = batch.visit_mask.shape
        logits = torch.zeros(batch_size, n_slots, self.schema.n_drugs)
        logits[:, :, 0] = batch.patient_index[:, None].float()
        logits[:, :, 1] = torch.arange(n_slots, dtype=torch.float32)[None, :]
        return logits


@pytest.fixture(scope="module")
def data() -> EHRData:
    return fake_ehr(n_patients=12, n_drugs=9, max_visits=4, seed=3)


@pytest.fixture
def model(data: EHRData) -> Stamp:
    return Stamp(fake_schema(data))


def test_flattening_is_patient_order_then_visit_order(data: EHRData, model: Stamp) -> None:
    patients = np.array([7, 2, 11, 0, 5])  # not sorted: the given order is kept
    predictions = predict(model, data, patients, batch_size=2, device=CPU)
    counts = data.visits_per_patient[patients]
    expected_owner = np.repeat(patients, counts)
    expected_position = np.concatenate([np.arange(n) for n in counts])
    np.testing.assert_array_equal(predictions.visit_patient, expected_owner)
    np.testing.assert_array_equal(predictions.visit_position, expected_position)
    # the stamped logits come back in the same rows
    np.testing.assert_allclose(predictions.probabilities[:, 0], 1 / (1 + np.exp(-expected_owner)), rtol=1e-6)
    np.testing.assert_allclose(predictions.probabilities[:, 1], 1 / (1 + np.exp(-expected_position)), rtol=1e-6)
    # targets are each visit's own medication set, in dataset visit order
    expected_targets = data.multi_hot(MEDICATIONS, visits_of(data, patients)) > 0
    np.testing.assert_array_equal(predictions.targets, expected_targets)
    assert model.calls == [2, 2, 1]


def test_shapes_and_dtypes(data: EHRData, model: Stamp) -> None:
    patients = np.arange(data.n_patients)
    predictions = predict(model, data, patients, batch_size=5, device=CPU)
    n_visits = int(data.visits_per_patient.sum())
    assert predictions.probabilities.shape == (n_visits, data.n_drugs)
    assert predictions.probabilities.dtype == np.float32
    assert predictions.targets.shape == (n_visits, data.n_drugs) and predictions.targets.dtype == bool
    assert predictions.visit_patient.shape == predictions.visit_position.shape == (n_visits,)
    assert predictions.targets.any()


def test_batch_size_does_not_change_the_result(data: EHRData, model: Stamp) -> None:
    patients = np.arange(data.n_patients)
    one = predict(model, data, patients, batch_size=1, device=CPU)
    many = predict(model, data, patients, batch_size=64, device=CPU)
    for field in ("probabilities", "targets", "visit_patient", "visit_position"):
        np.testing.assert_array_equal(getattr(one, field), getattr(many, field))


def test_runs_in_eval_mode_and_restores_the_mode(data: EHRData, model: Stamp) -> None:
    model.train()
    predict(model, data, np.arange(4), batch_size=2, device=CPU)
    assert model.modes == [False, False] and model.training
    model.eval()
    predict(model, data, np.arange(2), batch_size=2, device=CPU)
    assert not model.training


def test_no_patients_gives_empty_arrays_of_the_right_width(data: EHRData, model: Stamp) -> None:
    predictions = predict(model, data, np.array([], dtype=np.int64), batch_size=4, device=CPU)
    assert predictions.probabilities.shape == (0, data.n_drugs)
    assert predictions.targets.shape == (0, data.n_drugs)
    assert predictions.visit_patient.shape == predictions.visit_position.shape == (0,)
    assert model.calls == []


def test_every_visit_is_filed_under_its_patients_first_hospital() -> None:
    # a patient with stays in several hospitals belongs to the hospital of its first visit,
    # as splits and repeat_per units do; a per-stay sample is its own stay
    data = fake_ehr(n_patients=12, n_drugs=9, max_visits=4, n_hospitals=3, seed=3)
    data.hospital[:] = np.arange(len(data.hospital)) % 3  # visits of one patient in different hospitals
    patients = np.arange(12)
    predictions = predict(Stamp(fake_schema(data)), data, patients, batch_size=5, device=CPU)
    first = data.hospital[data.visit_offsets[:-1]]
    assert np.array_equal(predictions.visit_hospital, first[predictions.visit_patient])
    assert not np.array_equal(predictions.visit_hospital, data.hospital[visits_of(data, patients)])


def test_no_hospital_column_gives_none(data: EHRData, model: Stamp) -> None:
    assert predict(model, data, np.arange(4), batch_size=3, device=CPU).visit_hospital is None
