"""Per-stay samples: the per-visit view of the data and splits that keep a patient's stays together."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pydantic import ValidationError

from medtoolkit.data.batching import iterate_batches
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.vocab import Vocabulary
from medtoolkit.tasks.medication import MedicationRecommendationTask, Split
from medtoolkit.tasks.samples import PerVisitData, expand_groups, per_visit_view, sample_groups
from medtoolkit.testing.fake import fake_ehr

Task = MedicationRecommendationTask


def _data(visits_per_patient: list[int] | np.ndarray, hospital: np.ndarray | None = None,
          codes_per_visit: int = 1) -> EHRData:
    """Patients with the given visit counts; visit i has diagnosis i % 7, procedure 0 and drug i % 3."""
    counts = np.asarray(visits_per_patient, dtype=np.int64)
    n_visits = int(counts.sum())
    visit = np.repeat(np.arange(n_visits), codes_per_visit)
    codes = {DIAGNOSES: (visit % 7).astype(np.int32), PROCEDURES: np.zeros(len(visit), dtype=np.int32),
             MEDICATIONS: (visit % 3).astype(np.int32)}
    return EHRData(
        vocabularies={
            DIAGNOSES: Vocabulary([f"d{i}" for i in range(7)], DIAGNOSES),
            PROCEDURES: Vocabulary(["p0"], PROCEDURES),
            MEDICATIONS: Vocabulary(["M0", "M1", "M2"], MEDICATIONS),
        },
        visit_offsets=np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
        codes=codes,
        code_offsets={name: np.arange(0, len(visit) + 1, codes_per_visit, dtype=np.int64) for name in codes},
        patient_ids=[f"p{i}" for i in range(len(counts))],
        knowledge=DrugKnowledge.empty(3),
        hospital=hospital,
        provenance={"source": "hand"},
    )


def test_per_visit_view_makes_every_visit_a_sample_and_shares_the_codes() -> None:
    data = _data([2, 1, 3], hospital=np.array([0, 1, 1, 0, 0, 2], dtype=np.int32))
    view = per_visit_view(data)
    assert isinstance(view, PerVisitData)
    assert view.n_patients == view.n_visits == 6
    assert view.visit_offsets.tolist() == list(range(7))
    assert view.patient_ids == ["p0/0", "p0/1", "p1/0", "p2/0", "p2/1", "p2/2"]
    for name in data.codes:  # no copy of the big arrays
        assert view.codes[name] is data.codes[name] and view.code_offsets[name] is data.code_offsets[name]
    assert view.hospital is data.hospital and view.vocabularies[DIAGNOSES] is data.vocabularies[DIAGNOSES]
    assert view.source_offsets.tolist() == [0, 2, 3, 6]
    assert view.sample_patient.tolist() == [0, 0, 1, 2, 2, 2]
    assert view.source_patient_ids == ["p0", "p1", "p2"]
    assert view.provenance == {"source": "hand", "samples": "visit", "source_patients": 3}
    assert view.to_records([4]) == [[[[4], [0], [1]]]]  # sample 4 = visit 4: diagnosis 4, drug 4 % 3
    assert per_visit_view(view) is view


def test_per_visit_fingerprint_never_equals_the_patient_fingerprint() -> None:
    one_visit_each = _data([1, 1, 1])  # same arrays and offsets in both views
    assert per_visit_view(one_visit_each).fingerprint() != one_visit_each.fingerprint()
    data = _data([2, 1, 3])
    assert per_visit_view(data).fingerprint() == per_visit_view(_data([2, 1, 3])).fingerprint()
    # the patient grouping is part of it: same visits, other patients
    assert per_visit_view(data).fingerprint() != per_visit_view(_data([1, 2, 3])).fingerprint()


def test_per_visit_data_checks_its_source_offsets() -> None:
    view = per_visit_view(_data([2, 1]))
    with pytest.raises(ValueError, match="source_offsets must start at 0"):
        view.source_offsets = np.array([0, 2], dtype=np.int64)
        view.validate()
    view = per_visit_view(_data([2, 1]))
    with pytest.raises(ValueError, match="source_patient_ids has 1 entries"):
        view.source_patient_ids = ["p0"]
        view.validate()


def test_sample_groups_and_expand_groups() -> None:
    data = _data([2, 1, 3])
    assert sample_groups(data).tolist() == [0, 1, 2, 3]
    offsets = sample_groups(per_visit_view(data))
    assert offsets.tolist() == [0, 2, 3, 6]
    assert expand_groups(offsets, np.array([0, 2])).tolist() == [0, 1, 3, 4, 5]
    assert expand_groups(offsets, np.array([2, 1])).tolist() == [3, 4, 5, 2]
    assert expand_groups(offsets, np.zeros(0, dtype=np.int64)).tolist() == []


def test_per_visit_view_is_vectorised() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 4, size=50_000)  # about 100,000 visits, 5 codes each
    data = _data(counts, hospital=rng.integers(0, 200, size=int(counts.sum())).astype(np.int32),
                 codes_per_visit=5)
    started = time.perf_counter()
    view = per_visit_view(data)
    assert time.perf_counter() - started < 1.0
    assert view.n_patients == int(counts.sum())


def test_batches_of_the_view_hold_one_visit_per_sample() -> None:
    data = fake_ehr(n_patients=6, n_hospitals=3)
    view = per_visit_view(data)
    batch = next(iterate_batches(view, np.arange(4), batch_size=4))
    assert batch.visit_mask.shape[1] == 1 and bool(batch.visit_mask.all())


# ---------------------------------------------------------------------------------- the task
def _source_patients(view: PerVisitData, split: Split) -> list[set[int]]:
    owner = view.sample_patient
    return [set(owner[getattr(split, part)].tolist()) for part in ("train", "val", "test")]


def test_prepare_gives_the_view_only_for_visit_samples() -> None:
    data = _data([2, 1, 3])
    assert Task().prepare(data) is data
    view = Task(Task.Params(samples="visit")).prepare(data)
    assert isinstance(view, PerVisitData) and view.n_patients == 6
    assert Task.Params().samples == "patient"
    with pytest.raises(ValidationError, match="samples"):
        Task.Params(samples="stay")


@pytest.mark.parametrize("protocol", ["random", "legacy"])
def test_splits_of_visit_samples_keep_each_patients_stays_together(protocol: str) -> None:
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 5, size=300)
    task = Task(Task.Params(samples="visit", protocol=protocol, seeds=[0, 1]))
    view = task.prepare(_data(counts))
    for split in task.splits(view):
        train, val, test = _source_patients(view, split)
        assert not (train & val or train & test or val & test)
        joined = np.concatenate([split.train, split.val, split.test])
        assert np.array_equal(np.sort(joined), np.arange(view.n_visits))  # every stay, once
        for part in (split.train, split.val, split.test):
            assert np.all(np.diff(part) > 0)


def test_visit_sample_splits_assign_the_same_patients_as_patient_splits() -> None:
    counts = np.random.default_rng(2).integers(1, 5, size=120)
    data = _data(counts)
    for protocol in ("random", "legacy"):
        (by_patient,) = Task(Task.Params(protocol=protocol)).splits(data)
        task = Task(Task.Params(samples="visit", protocol=protocol))
        view = task.prepare(data)
        (by_visit,) = task.splits(view)
        assert by_visit.name == by_patient.name
        for part in ("train", "val", "test"):
            patients = getattr(by_patient, part)
            assert np.array_equal(getattr(by_visit, part), expand_groups(view.source_offsets, patients))


def test_min_visits_counts_the_visits_of_the_source_patient() -> None:
    task = Task(Task.Params(samples="visit", min_visits=2))
    view = task.prepare(_data([2, 1, 3, 1]))
    assert task.eligible_patients(view).tolist() == [0, 1, 3, 4, 5]


def test_visit_samples_need_the_prepared_data() -> None:
    with pytest.raises(ValueError, match="call task.prepare\\(data\\) before task.splits\\(data\\)"):
        Task(Task.Params(samples="visit")).splits(_data([2, 1, 3]))


def test_build_schema_counts_stays_per_hospital() -> None:
    hospital = np.array([0, 1, 1, 0, 0, 2], dtype=np.int32)  # patients: p0 (0, 1), p1 (1), p2 (0, 0, 2)
    data = _data([2, 1, 3], hospital=hospital)
    task = Task(Task.Params(samples="visit"))
    view = task.prepare(data)
    split = Split("hand", train=np.array([0, 1]), val=np.array([2]), test=np.array([3, 4, 5]))
    assert task.build_schema(view, split).hospital_sizes.tolist() == [3, 2, 1]  # every stay counts
    patient_split = Split("hand", train=np.array([0]), val=np.array([1]), test=np.array([2]))
    # patient samples: a patient counts for the hospital of its first visit
    assert Task().build_schema(data, patient_split).hospital_sizes.tolist() == [2, 1, 0]
