"""The in-memory data model: construction, validation errors, views, multi-hot, statistics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData, _gather_ranges
from medtoolkit.data.knowledge import DrugKnowledge, cooccurrence_adjacency
from medtoolkit.data.vocab import Vocabulary

# patient 0: two visits, patient 1: one visit, patient 2: three visits ([diag, proc, med])
RECORDS = [
    [[[0, 2], [1], [0, 1]], [[1], [0, 2], [2]]],
    [[[3], [], [1, 2, 3]]],
    [[[0], [0], [3]], [[2, 3], [1], [0, 3]], [[1], [2], [1]]],
]


def _vocabularies() -> dict[str, Vocabulary]:
    return {
        DIAGNOSES: Vocabulary(["D0", "D1", "D2", "D3"], DIAGNOSES),
        PROCEDURES: Vocabulary(["P0", "P1", "P2"], PROCEDURES),
        MEDICATIONS: Vocabulary(["A01A", "B01A", "C07A", "N02B"], MEDICATIONS),
    }


def _knowledge() -> DrugKnowledge:
    adjacency = np.zeros((4, 4), dtype=np.float32)
    adjacency[1, 2] = adjacency[2, 1] = 1.0
    return DrugKnowledge(ddi_adjacency=adjacency)


@pytest.fixture
def data() -> EHRData:
    return EHRData.from_records(RECORDS, _vocabularies(), _knowledge(), name="tiny")


# ----------------------------------------------------------------------------- construction
def test_from_records_builds_columns(data: EHRData) -> None:
    assert (data.n_patients, data.n_visits, data.n_drugs) == (3, 6, 4)
    assert data.visit_offsets.tolist() == [0, 2, 3, 6]
    assert data.visits_per_patient.tolist() == [2, 1, 3]
    assert data.codes[MEDICATIONS].dtype == np.int32
    assert data.codes[MEDICATIONS].tolist() == [0, 1, 2, 1, 2, 3, 3, 0, 3, 1]
    assert data.code_offsets[PROCEDURES].tolist() == [0, 1, 3, 3, 4, 5, 6]
    assert data.patient_ids == ["0", "1", "2"]
    assert list(data.patient_visits(2)) == [3, 4, 5]
    assert data.visit_codes(DIAGNOSES, 4).tolist() == [2, 3]
    assert data.visit_codes(PROCEDURES, 2).tolist() == []
    assert data.to_records() == RECORDS
    assert data.to_records([1]) == [RECORDS[1]]


def test_from_records_accepts_mapping_visits() -> None:
    records = [[{DIAGNOSES: [1], MEDICATIONS: [0, 3]}, {PROCEDURES: [2], MEDICATIONS: [1]}]]
    data = EHRData.from_records(records, _vocabularies(), _knowledge(), patient_ids=["p7"],
                                hospital=[4, 5], time=[0.0, 3.5])
    assert data.to_records() == [[[[1], [], [0, 3]], [[], [2], [1]]]]
    assert data.patient_ids == ["p7"]
    assert data.hospital.tolist() == [4, 5] and data.hospital.dtype == np.int32
    assert data.time.tolist() == [0.0, 3.5]


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: {"vocabularies": {k: v for k, v in d.vocabularies.items() if k != MEDICATIONS}},
         "needs a 'medications' vocabulary"),
        (lambda d: {"visit_offsets": np.array([1, 2, 3, 6])}, "must start at 0 and be non-decreasing"),
        (lambda d: {"visit_offsets": np.array([0, 3, 2, 6])}, "must start at 0 and be non-decreasing"),
        (lambda d: {"patient_ids": ["0", "1"]}, "patient_ids has 2 entries but visit_offsets describes 3 patients"),
        (lambda d: {"code_offsets": {**d.code_offsets, DIAGNOSES: d.code_offsets[DIAGNOSES][:-1]}},
         r"code_offsets\['diagnoses'\] does not match 6 visits"),
        (lambda d: {"codes": {**d.codes, PROCEDURES: d.codes[PROCEDURES][:-1]}},
         r"code_offsets\['procedures'\] does not match 6 visits"),
        (lambda d: {"codes": {k: v for k, v in d.codes.items() if k != PROCEDURES}},
         "vocabulary 'procedures' has no codes/code_offsets"),
        (lambda d: {"codes": {**d.codes, MEDICATIONS: d.codes[MEDICATIONS] + 1}},
         r"codes\['medications'\] holds indices outside \[0, 4\)"),
        (lambda d: {"codes": {**d.codes, DIAGNOSES: d.codes[DIAGNOSES] - 1}},
         r"codes\['diagnoses'\] holds indices outside \[0, 4\)"),
        (lambda d: {"hospital": np.zeros(5, dtype=np.int32)}, "hospital has 5 entries for 6 visits"),
        (lambda d: {"time": np.zeros(7)}, "time has 7 entries for 6 visits"),
        (lambda d: {"knowledge": DrugKnowledge.empty(5)},
         r"DDI adjacency has shape \(5, 5\), expected \(4, 4\) for 4 medications"),
    ],
)
def test_validation_errors_name_the_field(data: EHRData, change, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(data, **change(data))


def test_drug_knowledge_validation() -> None:
    with pytest.raises(ValueError, match="must be square"):
        DrugKnowledge(ddi_adjacency=np.zeros((2, 3)))
    asymmetric = np.zeros((3, 3))
    asymmetric[0, 1] = 1
    with pytest.raises(ValueError, match="must be symmetric"):
        DrugKnowledge(ddi_adjacency=asymmetric)
    with pytest.raises(ValueError, match="must be 0/1"):
        DrugKnowledge(ddi_adjacency=np.full((2, 2), 0.5))
    knowledge = _knowledge()
    assert knowledge.ddi_adjacency.dtype == np.float32
    assert (knowledge.n_drugs, knowledge.n_ddi_pairs) == (4, 1)
    assert DrugKnowledge.empty(3).n_ddi_pairs == 0


# ----------------------------------------------------------------------------- views
def test_multi_hot_marks_exactly_the_visit_codes(data: EHRData) -> None:
    visits = np.array([5, 0, 2, 0])
    hot = data.multi_hot(MEDICATIONS, visits)
    assert hot.shape == (4, 4) and hot.dtype == np.float32
    expected = np.zeros((4, 4), dtype=np.float32)
    for row, visit in enumerate(visits):
        expected[row, data.visit_codes(MEDICATIONS, visit)] = 1.0
    assert np.array_equal(hot, expected)
    assert hot[0].tolist() == [0, 1, 0, 0] and hot[1].tolist() == [1, 1, 0, 0]
    assert data.multi_hot(PROCEDURES, np.array([2])).sum() == 0  # a visit without procedures
    assert data.multi_hot(DIAGNOSES, np.array([], dtype=np.int64)).shape == (0, 4)


def test_gather_ranges_concatenates_slices() -> None:
    values = np.arange(10, 20)
    assert _gather_ranges(values, np.array([3, 0, 8]), np.array([2, 0, 2])).tolist() == [13, 14, 18, 19]
    assert _gather_ranges(values, np.array([1]), np.array([0])).tolist() == []


def test_fingerprint_identifies_the_data(data: EHRData) -> None:
    same = EHRData.from_records(RECORDS, _vocabularies(), _knowledge())
    assert data.fingerprint() == same.fingerprint() and len(data.fingerprint()) == 64
    changed = [patient[:] for patient in RECORDS]
    changed[2] = [[[0], [0], [2]]] + changed[2][1:]
    assert EHRData.from_records(changed, _vocabularies(), _knowledge()).fingerprint() != data.fingerprint()
    assert replace(data, hospital=np.zeros(6, dtype=np.int32)).fingerprint() != data.fingerprint()
    assert replace(data, knowledge=DrugKnowledge.empty(4)).fingerprint() != data.fingerprint()


def test_statistics_are_true_per_visit_numbers(data: EHRData) -> None:
    stats = data.statistics()
    assert stats["patients"] == 3 and stats["visits"] == 6 and stats["max_visits_per_patient"] == 3
    assert stats["visits_per_patient"] == pytest.approx(2.0)
    assert stats["per_visit_medications"] == pytest.approx(10 / 6)
    assert stats["per_visit_procedures"] == pytest.approx(6 / 6)
    assert stats["vocab_diagnoses"] == 4
    # prescribed pairs: visit0 {0,1}, visit3 {1,2},{1,3},{2,3}, visit4 {0,3} -> 5 pairs, 1 interacting (1,2)
    assert stats["ground_truth_ddi_rate"] == pytest.approx(1 / 5)
    assert "hospitals" not in stats
    assert replace(data, hospital=np.array([0, 0, 1, 2, 2, 2], dtype=np.int32)).statistics()["hospitals"] == 3


@pytest.mark.parametrize("block", [1, 2, 4, 65_536])
def test_ground_truth_ddi_rate_counted_in_blocks_equals_the_whole_matrix(data: EHRData, block: int) -> None:
    from medtoolkit.metrics import ddi_rate

    assert data.ground_truth_ddi_rate(block) == 1 / 5
    rng = np.random.default_rng(0)
    prescribed = rng.random((5000, 12)) < 0.3
    prescribed[rng.random(5000) < 0.1] = False  # visits without any pair count for nothing
    adjacency = (rng.random((12, 12)) < 0.2).astype(np.float32)
    adjacency = np.maximum(adjacency, adjacency.T)
    vocabularies = {MEDICATIONS: Vocabulary([f"M{i:02d}" for i in range(12)], MEDICATIONS)}
    records = [[[np.flatnonzero(row).tolist()]] for row in prescribed]
    large = EHRData.from_records(records, vocabularies, DrugKnowledge(ddi_adjacency=adjacency))
    whole = ddi_rate(prescribed, adjacency)
    assert large.ground_truth_ddi_rate(block) == whole  # exact: the pair counts are integers
    assert large.statistics()["ground_truth_ddi_rate"] == whole


def test_ground_truth_ddi_rate_without_a_matrix_or_pairs(data: EHRData) -> None:
    assert replace(data, knowledge=DrugKnowledge(ddi_adjacency=None)).ground_truth_ddi_rate() is None
    single = EHRData.from_records([[[[0], [0], [1]]]], _vocabularies(), _knowledge())
    assert single.ground_truth_ddi_rate() == 0.0


def test_cooccurrence_counts_shared_visits_only(data: EHRData) -> None:
    adjacency = cooccurrence_adjacency(data.multi_hot(MEDICATIONS, np.arange(data.n_visits)))
    assert adjacency.dtype == np.float32 and not np.diag(adjacency).any()
    pairs = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(adjacency)))}
    assert pairs == {(0, 1), (1, 2), (1, 3), (2, 3), (0, 3)}
    only_first = cooccurrence_adjacency(data.multi_hot(MEDICATIONS, np.array([0, 1])))
    assert int(only_first.sum()) == 2  # the training split decides the graph


def test_vocabulary_basics() -> None:
    vocabulary = Vocabulary(["N02B", "A01A"], MEDICATIONS)
    assert vocabulary.encode(["A01A", "N02B"]) == [1, 0] and vocabulary.decode([1]) == ["A01A"]
    assert "N02B" in vocabulary and "X" not in vocabulary and len(vocabulary) == 2
    with pytest.raises(KeyError, match="code 'X' is not in vocabulary 'medications'"):
        vocabulary.index("X")
    with pytest.raises(ValueError, match=r"code 'A' appears twice \(indices 0 and 2\)"):
        Vocabulary(["A", "B", "A"], "d")
    assert Vocabulary.from_json(vocabulary.to_json()) == vocabulary


def test_fingerprint_hashes_columns_in_place_like_their_bytes(data: EHRData) -> None:
    import hashlib

    from medtoolkit.data.ehr import _buffer

    for values in (np.zeros(0, dtype=np.int32), np.arange(10)[::2], np.eye(3, dtype=np.float32)):
        assert bytes(_buffer(values)) == np.ascontiguousarray(values).tobytes()
    strided = replace(data, codes={k: np.repeat(v, 2)[::2] for k, v in data.codes.items()})  # non-contiguous views
    assert strided.fingerprint() == data.fingerprint()
    digest = hashlib.sha256(data.visit_offsets.tobytes())  # the definition, spelled out with copies
    for name in sorted(data.vocabularies):
        digest.update(name.encode())
        digest.update("\x1f".join(data.vocabularies[name].idx2word).encode())
        digest.update(data.codes[name].tobytes())
        digest.update(data.code_offsets[name].tobytes())
    digest.update(data.knowledge.ddi_adjacency.astype(np.float32).tobytes())
    assert data.fingerprint() == digest.hexdigest()
