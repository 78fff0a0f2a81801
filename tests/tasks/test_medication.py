"""Tests of the longitudinal medication recommendation task (splits, schema, evaluation)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pydantic import ValidationError

from medtoolkit.components.schema import DataSchema
from medtoolkit.config import EvalParams
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.vocab import Vocabulary
from medtoolkit.tasks.medication import MedicationRecommendationTask, Split, visits_of
from medtoolkit.testing.fake import fake_ehr

Task = MedicationRecommendationTask


def _data(visits_per_patient: list[int] | np.ndarray, n_drugs: int = 4) -> EHRData:
    """Patients with the given visit counts; every visit has diagnosis 0, procedure 0, drug 0."""
    counts = np.asarray(visits_per_patient, dtype=np.int64)
    n_visits = int(counts.sum())
    offsets = np.concatenate(([0], np.cumsum(counts)))
    one_code = {name: np.zeros(n_visits, dtype=np.int32) for name in (DIAGNOSES, PROCEDURES, MEDICATIONS)}
    return EHRData(
        vocabularies={
            DIAGNOSES: Vocabulary(["d0"], DIAGNOSES),
            PROCEDURES: Vocabulary(["p0"], PROCEDURES),
            MEDICATIONS: Vocabulary([f"M{i}" for i in range(n_drugs)], MEDICATIONS),
        },
        visit_offsets=offsets,
        codes=one_code,
        code_offsets={name: np.arange(n_visits + 1, dtype=np.int64) for name in one_code},
        patient_ids=[str(i) for i in range(len(counts))],
        knowledge=DrugKnowledge.empty(n_drugs),
    )


def _check_partition(split: Split, patients: np.ndarray) -> None:
    parts = [split.train, split.val, split.test]
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == len(joined), "parts overlap"
    assert np.array_equal(np.sort(joined), np.sort(patients)), "parts do not cover the patients"
    for part in parts:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)


def test_legacy_split_6350_patients() -> None:
    data = _data(np.ones(6350, dtype=int))
    (split,) = Task(Task.Params(protocol="legacy")).splits(data)
    assert split.name == "legacy"
    assert (len(split.train), len(split.test), len(split.val)) == (4233, 1058, 1059)
    # file order: train first, then the field's "test" (middle), then validation
    assert np.array_equal(split.train, np.arange(4233))
    assert np.array_equal(split.test, np.arange(4233, 5291))
    assert np.array_equal(split.val, np.arange(5291, 6350))
    _check_partition(split, np.arange(6350))


def test_legacy_split_small_and_seed_independent() -> None:
    data = _data([1, 2, 3, 1, 2, 1, 1])  # N = 7: split = 4, rest = 3, test = 1, val = 2
    (split,) = Task(Task.Params(protocol="legacy", seeds=[5, 6])).splits(data)
    assert split.train.tolist() == [0, 1, 2, 3]
    assert split.test.tolist() == [4] and split.val.tolist() == [5, 6]
    assert split.counts(data) == {
        "train_patients": 4, "train_visits": 7, "val_patients": 2, "val_visits": 2,
        "test_patients": 1, "test_visits": 2,
    }


def test_random_splits_sizes_disjoint_reproducible() -> None:
    data = _data(np.ones(6350, dtype=int))
    task = Task(Task.Params(protocol="random", seeds=[0, 1, 2]))
    splits = task.splits(data)
    assert [s.name for s in splits] == ["seed0", "seed1", "seed2"]
    for split in splits:
        assert (len(split.train), len(split.val), len(split.test)) == (4233, 1058, 1059)
        _check_partition(split, np.arange(6350))
    again = Task(Task.Params(seeds=[1])).splits(data)[0]
    assert np.array_equal(again.test, splits[1].test) and np.array_equal(again.train, splits[1].train)
    assert not np.array_equal(splits[0].test, splits[1].test)


def test_random_split_custom_fractions_and_min_visits() -> None:
    counts = np.array([1, 2] * 50)  # 50 single-visit patients (even indices)
    task = Task(Task.Params(seeds=[3], train_fraction=0.5, val_fraction=0.2, min_visits=2))
    (split,) = task.splits(_data(counts))
    assert (len(split.train), len(split.val), len(split.test)) == (25, 10, 15)
    _check_partition(split, np.arange(1, 100, 2))


def test_params_validation() -> None:
    assert Task.Params().protocol == "random" and Task.Params().seeds == [0]
    with pytest.raises(ValidationError, match="train_fraction"):
        Task.Params(train_fraction=0.8, val_fraction=0.2)
    with pytest.raises(ValidationError, match="distinct"):
        Task.Params(seeds=[1, 1])
    with pytest.raises(ValidationError):
        Task.Params(protocol="shuffled")
    with pytest.raises(ValidationError):
        Task.Params(split="legacy")
    with pytest.raises(ValueError, match="empty"):
        Task(Task.Params(protocol="legacy")).splits(_data([1, 1]))


def test_visits_of() -> None:
    data = _data([2, 1, 3])
    assert visits_of(data, np.array([2, 0])).tolist() == [3, 4, 5, 0, 1]
    assert visits_of(data, np.array([], dtype=np.int64)).tolist() == []


def _cooccurrence_data() -> EHRData:
    """6 patients; legacy split: train 0-3, test 4, val 5. Drugs 0 and 1 meet only in test/val."""
    drugs = ["A", "B", "C", "D"]
    records = [
        [[[0], [0], [0, 2]]],  # patient 0: drugs {0, 2}
        [[[0], [0], [1, 2]], [[1], [0], [3]]],  # patient 1: {1, 2} then {3}
        [[[1], [0], [2, 3]]],  # patient 2: {2, 3}
        [[[0], [0], [2]]],  # patient 3: {2}
        [[[0], [0], [0, 1]]],  # patient 4 (test): {0, 1}
        [[[0], [0], [0, 1, 3]]],  # patient 5 (val): {0, 1, 3}
    ]
    adjacency = np.zeros((4, 4), dtype=np.float32)
    adjacency[0, 3] = adjacency[3, 0] = 1.0
    knowledge = DrugKnowledge(
        ddi_adjacency=adjacency,
        smiles=[["C"], ["CC", "CO"], [], ["N"]],
        substructure_mask=np.eye(4, 2, dtype=np.float32),
    )
    vocabularies = {
        DIAGNOSES: Vocabulary(["d0", "d1"], DIAGNOSES),
        PROCEDURES: Vocabulary(["p0"], PROCEDURES),
        MEDICATIONS: Vocabulary(drugs, MEDICATIONS),
    }
    hospital = [0, 2, 2, 1, 0, 0, 1]
    return EHRData.from_records(records, vocabularies, knowledge, hospital=hospital)


def test_build_schema_uses_training_visits_only() -> None:
    data = _cooccurrence_data()
    task = Task(Task.Params(protocol="legacy"))
    (split,) = task.splits(data)
    assert split.train.tolist() == [0, 1, 2, 3] and split.test.tolist() == [4]
    schema = task.build_schema(data, split)
    expected = np.zeros((4, 4), dtype=np.float32)
    for i, j in [(0, 2), (1, 2), (2, 3)]:  # training pairs only: (0, 1), (0, 3), (1, 3) are not
        expected[i, j] = expected[j, i] = 1.0
    np.testing.assert_array_equal(schema.cooccurrence_adjacency, expected)
    # training visits: {0,2} {1,2} {3} {2,3} {2} -> shares 1/5, 1/5, 4/5, 2/5
    np.testing.assert_allclose(schema.drug_frequency, [0.2, 0.2, 0.8, 0.4], rtol=1e-6)
    assert schema.vocab_sizes == {DIAGNOSES: 2, PROCEDURES: 1, MEDICATIONS: 4}
    assert schema.n_drugs == 4 and schema.drug_codes == ("A", "B", "C", "D")
    assert schema.smiles == (("C",), ("CC", "CO"), (), ("N",))
    assert schema.substructure_mask.shape == (4, 2)
    assert schema.n_hospitals == 3
    # a patient counts for the hospital of its first visit: 0, 2, 1, 0, 0, 1
    assert schema.hospital_sizes.tolist() == [3, 2, 1] and schema.hospital_sizes.dtype == np.int64
    assert schema.hospital_ids == ()  # no original ids in the provenance
    np.testing.assert_array_equal(schema.ddi_adjacency, data.knowledge.ddi_adjacency)


def test_build_schema_without_optional_knowledge() -> None:
    data = fake_ehr(n_patients=12, seed=1)
    task = Task(Task.Params(seeds=[0]))
    schema = task.build_schema(data, task.splits(data)[0])
    assert schema.smiles is None and schema.substructure_mask is None and schema.n_hospitals == 0
    assert schema.hospital_sizes is None and schema.hospital_ids == ()
    assert schema.cooccurrence_adjacency.shape == (15, 15)


# The hand-made example of tests/test_metrics.py: 5 drugs, DDI pairs (0,1) and (2,3);
# per-visit Jaccard 1/2, 1/5, 0; DDI pairs 1/3, 2/10, 0/0; predicted drugs 3, 5, 0.
TARGETS = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 1, 1, 0]], dtype=np.float32)
PROBS = np.array([[0.9, 0.6, 0.2, 0.7, 0.1], [0.5, 0.5, 0.5, 0.5, 0.5], [0.4, 0.3, 0.45, 0.1, 0.0]])
OWNERS = np.array([7, 7, 9])


def _five_drug_schema() -> DataSchema:
    adjacency = np.zeros((5, 5), dtype=np.float32)
    adjacency[0, 1] = adjacency[1, 0] = adjacency[2, 3] = adjacency[3, 2] = 1.0
    return DataSchema(vocab_sizes={MEDICATIONS: 5}, n_drugs=5, ddi_adjacency=adjacency)


def test_evaluate_hand_made_predictions() -> None:
    task = Task()
    schema = _five_drug_schema()
    full = EvalParams(bootstrap_rounds=0, averaging="visit")
    result = task.evaluate(PROBS, TARGETS, OWNERS, schema, full)
    assert result["jaccard"]["mean"] == pytest.approx(0.7 / 3) and result["jaccard"]["std"] == 0.0
    assert result["f1"]["mean"] == pytest.approx(1 / 3)
    assert result["precision"]["mean"] == pytest.approx((2 / 3 + 1 / 5) / 3)
    assert result["recall"]["mean"] == pytest.approx((2 / 3 + 1) / 3)
    assert result["prauc"]["mean"] == pytest.approx((29 / 36 + 1 / 5 + 3 / 4) / 3)
    assert result["ddi_rate"]["mean"] == pytest.approx(3 / 13)
    assert result["avg_drugs"]["mean"] == pytest.approx(8 / 3)
    assert result["averaging"] == "visit" and result["rounds"] == []
    assert (result["n_patients"], result["n_visits"]) == (2, 3)

    by_patient = task.evaluate(PROBS, TARGETS, OWNERS, schema, EvalParams(bootstrap_rounds=0))
    assert by_patient["jaccard"]["mean"] == pytest.approx(0.175) and by_patient["averaging"] == "patient"
    # threshold 0.4: visit C predicts {0, 2} -> Jaccard 1/3 there
    settings = EvalParams(bootstrap_rounds=0, threshold=0.4, averaging="visit")
    lower = task.evaluate(PROBS, TARGETS, OWNERS, schema, settings)
    assert lower["jaccard"]["mean"] == pytest.approx((1 / 2 + 1 / 5 + 1 / 3) / 3)


def test_evaluate_bootstrap_rounds() -> None:
    task = Task()
    schema = _five_drug_schema()
    settings = EvalParams(bootstrap_rounds=6, bootstrap_fraction=1.0, bootstrap_seed=3)
    result = task.evaluate(PROBS, TARGETS, OWNERS, schema, settings)
    assert result == task.evaluate(PROBS, TARGETS, OWNERS, schema, settings)
    values = [r["jaccard"] for r in result["rounds"]]
    # each round draws 2 of the patients {7: 0.35, 9: 0.0} with replacement
    assert len(values) == 6 and set(np.round(values, 10)) <= {0.35, 0.175, 0.0}
    assert result["jaccard"]["mean"] == pytest.approx(np.mean(values))
    assert result["jaccard"]["std"] == pytest.approx(np.std(values))
    with pytest.raises(ValueError, match="shape"):
        task.evaluate(PROBS[:, :4], TARGETS[:, :4], OWNERS, schema, settings)


def test_registered_by_the_core_plugin() -> None:
    from medtoolkit import builtins

    found: dict[str, type] = {}
    builtins.register_tasks(lambda name, cls: found.__setitem__(name, cls))
    from medtoolkit.tasks.package_task import PackageRecommendationTask

    assert found == {"medication_recommendation": MedicationRecommendationTask,
                     "package_recommendation": PackageRecommendationTask}


def test_evaluate_without_ddi_matrix_reports_ddi_rate_as_not_available() -> None:
    schema = DataSchema(vocab_sizes={MEDICATIONS: 5}, n_drugs=5, ddi_adjacency=None)
    result = Task().evaluate(PROBS, TARGETS, OWNERS, schema, EvalParams(bootstrap_rounds=2, averaging="visit"))
    assert result["ddi_rate"] == {"mean": None, "std": None}
    assert all(r["ddi_rate"] is None for r in result["rounds"])
    assert result["avg_drugs"]["mean"] is not None


def test_schema_without_ddi_matrix() -> None:
    data = _cooccurrence_data()
    data.knowledge.ddi_adjacency = None  # e.g. processed eICU data
    task = Task(Task.Params(protocol="legacy"))
    (split,) = task.splits(data)
    schema = task.build_schema(data, split)
    assert schema.ddi_adjacency is None and not schema.has_ddi and schema.n_drugs == 4
    assert schema.cooccurrence_adjacency.shape == (4, 4)


# ---------------------------------------------------------------------------------- hospital protocol
def _hospital_data(patient_hospital: list[int] | np.ndarray, visits: int = 2) -> EHRData:
    """Patients with ``visits`` visits each; the first in the given hospital, the others in hospital 0."""
    patient_hospital = np.asarray(patient_hospital, dtype=np.int32)
    data = _data(np.full(len(patient_hospital), visits))
    hospital = np.zeros(data.n_visits, dtype=np.int32)
    hospital[data.visit_offsets[:-1]] = patient_hospital
    data.hospital = hospital
    return data


def _hospital_counts(split: Split, patient_hospital: np.ndarray) -> dict[str, list[int]]:
    return {part: np.bincount(patient_hospital[getattr(split, part)], minlength=4).tolist()
            for part in ("train", "val", "test")}


def test_hospital_split_is_stratified_per_hospital_by_hand() -> None:
    # hospitals 0..3 hold 10, 5, 1 and 21 patients (interleaved in file order)
    patient_hospital = np.repeat([0, 1, 2, 3], [10, 5, 1, 21])[np.random.default_rng(0).permutation(37)]
    data = _hospital_data(patient_hospital)
    task = Task(Task.Params(protocol="hospital", train_fraction=0.8, val_fraction=0.1, seeds=[42, 43]))
    splits = task.splits(data)
    assert [s.name for s in splits] == ["hospital_seed42", "hospital_seed43"]
    for split in splits:
        _check_partition(split, np.arange(37))
        # int(n * 0.8) train, int(n * 0.1) validation, the rest test: 10 -> 8/1/1, 5 -> 4/0/1,
        # 1 -> 0/0/1, 21 -> 16/2/3
        assert _hospital_counts(split, patient_hospital) == {
            "train": [8, 4, 0, 16], "val": [1, 0, 0, 2], "test": [1, 1, 1, 3],
        }
    assert not np.array_equal(splits[0].train, splits[1].train)
    again = Task(Task.Params(protocol="hospital", train_fraction=0.8, val_fraction=0.1, seeds=[43])).splits(data)[0]
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(again, part), getattr(splits[1], part))


def test_hospital_split_uses_the_hospital_of_the_first_visit() -> None:
    # every later visit is in hospital 0; patients are assigned by their first visit only
    patient_hospital = np.array([1] * 10 + [2] * 10)
    data = _hospital_data(patient_hospital, visits=3)
    (split,) = Task(Task.Params(protocol="hospital", train_fraction=0.5, val_fraction=0.2)).splits(data)
    assert _hospital_counts(split, patient_hospital) == {
        "train": [0, 5, 5, 0], "val": [0, 2, 2, 0], "test": [0, 3, 3, 0],
    }


def test_hospital_split_of_visit_samples_keeps_each_patients_stays_together() -> None:
    patient_hospital = np.repeat([0, 1, 2], [20, 10, 10])
    task = Task(Task.Params(samples="visit", protocol="hospital", train_fraction=0.8, val_fraction=0.1))
    view = task.prepare(_hospital_data(patient_hospital, visits=3))
    (split,) = task.splits(view)
    owner = view.sample_patient
    parts = [set(owner[getattr(split, part)].tolist()) for part in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert [len(p) for p in parts] == [16 + 8 + 8, 2 + 1 + 1, 2 + 1 + 1]  # source patients
    assert [len(split.train), len(split.val), len(split.test)] == [96, 12, 12]  # their 3 stays each


def test_hospital_split_is_vectorised_over_hundreds_of_hospitals() -> None:
    rng = np.random.default_rng(0)
    patient_hospital = rng.zipf(1.5, size=100_000) % 500
    data = _hospital_data(patient_hospital, visits=1)
    task = Task(Task.Params(protocol="hospital", train_fraction=0.8, val_fraction=0.1))
    started = time.perf_counter()
    (split,) = task.splits(data)
    assert time.perf_counter() - started < 1.0
    sizes = np.bincount(patient_hospital, minlength=500)
    assert np.array_equal(np.bincount(patient_hospital[split.train], minlength=500), (sizes * 8) // 10)


def test_hospital_protocol_needs_hospitals() -> None:
    with pytest.raises(ValueError, match="task protocol 'hospital' needs the hospital of every visit"):
        Task(Task.Params(protocol="hospital")).splits(_data([1] * 20))


def test_build_schema_names_hospitals_by_their_original_ids() -> None:
    data = _hospital_data([0, 1, 2, 1] * 5)
    data.provenance["hospital_ids"] = [73, 264, 420]
    task = Task(Task.Params(protocol="hospital", train_fraction=0.6, val_fraction=0.2))
    schema = task.build_schema(data, task.splits(data)[0])
    assert schema.hospital_ids == ("73", "264", "420")
    assert schema.hospital_sizes.tolist() == [5, 10, 5]
