"""Statistics on demand: names, counts over training visits only, laziness and clear errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import medtoolkit.components.statistics as statistics
from medtoolkit.components.schema import DataSchema
from medtoolkit.components.statistics import (
    code_counts,
    compute_statistic,
    pair_counts,
    parse_statistic,
    statistic_shape,
    statistics_source,
)
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.vocab import Vocabulary
from medtoolkit.tasks.medication import MedicationRecommendationTask, Split, visits_of
from medtoolkit.testing import fake_ehr, fake_schema

# Four patients; 0 and 1 train, 2 validation, 3 test. Visit records: [diagnoses, procedures, medications].
RECORDS = [
    [[[0, 1], [0], [0, 2]],   # visit a
     [[1], [1], [2]]],        # visit b
    [[[3, 3], [], [1]]],      # visit c: diagnosis 3 listed twice counts once
    [[[2], [0], [0, 1]]],     # validation only
    [[[2, 0], [1], [1, 2]]],  # test only
]
SPLIT = Split(name="hand", train=np.array([0, 1]), val=np.array([2]), test=np.array([3]))
# hand-computed over the training visits a, b, c
TRAIN_DIAGNOSIS_COUNTS = [1, 2, 0, 1]
TRAIN_MEDICATION_COUNTS = [1, 1, 2]
TRAIN_DIAGNOSIS_MEDICATION = [[1, 0, 1],   # D0: a (M0, M2)
                              [1, 0, 2],   # D1: a (M0, M2), b (M2)
                              [0, 0, 0],   # D2: validation and test only
                              [0, 1, 0]]   # D3: c (M1), once
TRAIN_MEDICATION_MEDICATION = [[1, 0, 1],
                               [0, 1, 0],
                               [1, 0, 2]]


def tiny() -> EHRData:
    vocabularies = {
        DIAGNOSES: Vocabulary([f"D{i}" for i in range(4)], DIAGNOSES),
        PROCEDURES: Vocabulary(["P0", "P1"], PROCEDURES),
        MEDICATIONS: Vocabulary(["M0", "M1", "M2"], MEDICATIONS),
    }
    return EHRData.from_records(RECORDS, vocabularies, DrugKnowledge(ddi_adjacency=None), name="tiny")


def train_visits(data: EHRData) -> np.ndarray:
    return visits_of(data, SPLIT.train)


# ---------------------------------------------------------------------------- names
def test_names_round_trip() -> None:
    assert code_counts("diagnoses") == "code_counts/diagnoses"
    assert pair_counts("diagnoses", "medications") == "pair_counts/diagnoses/medications"
    assert parse_statistic(code_counts("x")) == ("code_counts", ("x",))
    assert parse_statistic(pair_counts("a", "b")) == ("pair_counts", ("a", "b"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("code_counts", r"malformed statistic 'code_counts': code_counts takes 1 non-empty vocabulary name"),
        ("code_counts/a/b", r"code_counts takes 1"),
        ("pair_counts/a", r"pair_counts takes 2 non-empty vocabulary names"),
        ("pair_counts/a/ ", r"pair_counts takes 2"),
        ("counts/a", r"unknown statistic 'counts/a'.*'code_counts/<vocabulary>' or 'pair_counts/<rows>/<cols>'"),
        (3, r"a statistic name must be a string"),
    ],
)
def test_malformed_names_are_refused(name: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_statistic(name)  # type: ignore[arg-type]


def test_a_vocabulary_with_the_separator_is_refused() -> None:
    with pytest.raises(ValueError, match="pair_counts takes 2"):
        pair_counts("a/b", "c")


def test_shapes_follow_the_vocabularies() -> None:
    sizes = {"diagnoses": 4, "medications": 3}
    assert statistic_shape(code_counts("diagnoses"), sizes) == (4,)
    assert statistic_shape(pair_counts("diagnoses", "medications"), sizes) == (4, 3)
    with pytest.raises(ValueError, match=r"no 'labs' vocabulary \(it has: diagnoses, medications\)"):
        statistic_shape(code_counts("labs"), sizes)


# ---------------------------------------------------------------------------- counts
def test_hand_computed_counts_over_training_visits() -> None:
    data = tiny()
    visits = train_visits(data)
    assert visits.tolist() == [0, 1, 2]
    diagnoses = compute_statistic(data, visits, code_counts("diagnoses"))
    assert diagnoses.dtype == np.float32 and diagnoses.tolist() == TRAIN_DIAGNOSIS_COUNTS
    assert compute_statistic(data, visits, code_counts("medications")).tolist() == TRAIN_MEDICATION_COUNTS
    cross = compute_statistic(data, visits, pair_counts("diagnoses", "medications"))
    assert cross.dtype == np.float32 and cross.tolist() == TRAIN_DIAGNOSIS_MEDICATION
    drugs = compute_statistic(data, visits, pair_counts("medications", "medications"))
    assert drugs.tolist() == TRAIN_MEDICATION_MEDICATION


def test_diagonal_equals_code_counts_and_square_counts_are_symmetric() -> None:
    data = fake_ehr(n_patients=40, seed=3)
    visits = np.arange(data.n_visits)
    for vocabulary in (DIAGNOSES, MEDICATIONS):
        square = compute_statistic(data, visits, pair_counts(vocabulary, vocabulary))
        np.testing.assert_array_equal(np.diag(square), compute_statistic(data, visits, code_counts(vocabulary)))
        np.testing.assert_array_equal(square, square.T)


@pytest.mark.parametrize("budget", [1, 7, 1 << 22])
def test_blocks_give_the_multi_hot_product(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    # a tiny block budget forces one visit per block; the result must not depend on it
    monkeypatch.setattr(statistics, "MAX_BLOCK_PAIRS", budget)
    data = fake_ehr(n_patients=30, seed=5)
    visits = np.arange(0, data.n_visits, 2)
    rows, cols = data.multi_hot(DIAGNOSES, visits), data.multi_hot(PROCEDURES, visits)
    np.testing.assert_array_equal(compute_statistic(data, visits, pair_counts(DIAGNOSES, PROCEDURES)), rows.T @ cols)
    np.testing.assert_array_equal(compute_statistic(data, visits, code_counts(PROCEDURES)), cols.sum(0))


def test_no_visits_give_zeros() -> None:
    data = tiny()
    empty = np.zeros(0, dtype=np.int64)
    assert compute_statistic(data, empty, pair_counts("diagnoses", "medications")).shape == (4, 3)
    assert not compute_statistic(data, empty, code_counts("diagnoses")).any()


def test_unknown_vocabulary_names_it_and_the_data_vocabularies() -> None:
    with pytest.raises(ValueError, match=r"'pair_counts/labs/medications': the data has no 'labs' vocabulary "
                                         r"\(it has: diagnoses, procedures, medications\)"):
        compute_statistic(tiny(), np.arange(3), pair_counts("labs", "medications"))


# ---------------------------------------------------------------------------- the task's schema
def test_task_schema_counts_training_visits_only() -> None:
    data = tiny()
    schema = MedicationRecommendationTask().build_schema(data, SPLIT)
    assert schema.statistics_summary() == {}  # nothing computed yet
    counts = schema.require_statistic(code_counts("diagnoses"), "test")
    # diagnosis 2 appears in validation and test visits only: a leak would count it
    assert counts.tolist() == TRAIN_DIAGNOSIS_COUNTS
    assert schema.require_statistic(pair_counts("diagnoses", "medications"), "test").tolist() == \
        TRAIN_DIAGNOSIS_MEDICATION
    every_visit = compute_statistic(data, np.arange(data.n_visits), code_counts("diagnoses"))
    assert every_visit.tolist() == [2, 2, 2, 1]
    assert schema.statistics_summary() == {"code_counts/diagnoses": [4], "pair_counts/diagnoses/medications": [4, 3]}


def test_fake_schema_counts_every_visit() -> None:
    data = tiny()
    counts = fake_schema(data).require_statistic(code_counts("diagnoses"), "test")
    assert counts.tolist() == [2, 2, 2, 1]


# ---------------------------------------------------------------------------- the schema: laziness, errors
class CountingSource:
    """A statistics source that records every call."""

    def __init__(self, make: Callable[[str], np.ndarray]) -> None:
        self.calls: list[str] = []
        self.make = make

    def __call__(self, name: str) -> np.ndarray:
        self.calls.append(name)
        return self.make(name)


def schema_with(source: Callable[[str], np.ndarray] | None = None, **values: object) -> DataSchema:
    return DataSchema(vocab_sizes={"diagnoses": 4, "medications": 3}, n_drugs=3, ddi_adjacency=None,
                      statistics_source=source, **values)  # type: ignore[arg-type]


def test_nothing_is_computed_until_required_and_then_once() -> None:
    source = CountingSource(lambda name: np.ones(statistic_shape(name, {"diagnoses": 4, "medications": 3})))
    schema = schema_with(source)
    assert source.calls == []
    first = schema.require_statistic(pair_counts("diagnoses", "medications"), "memory 'x'")
    second = schema.require_statistic(pair_counts("diagnoses", "medications"), "loss 'y'")
    assert second is first and first.dtype == np.float32
    assert source.calls == ["pair_counts/diagnoses/medications"]
    schema.require_statistic(code_counts("medications"), "memory 'x'")
    assert source.calls == ["pair_counts/diagnoses/medications", "code_counts/medications"]
    assert schema.statistics_summary() == {"code_counts/medications": [3],
                                           "pair_counts/diagnoses/medications": [4, 3]}


def test_a_precomputed_value_wins_over_the_source() -> None:
    source = CountingSource(lambda name: pytest.fail("the source was asked"))
    schema = schema_with(source, statistics={code_counts("diagnoses"): [1, 2, 3, 4]})
    assert schema.require_statistic(code_counts("diagnoses"), "x").tolist() == [1, 2, 3, 4]
    assert source.calls == []
    assert schema.statistics_summary() == {"code_counts/diagnoses": [4]}


def test_medications_have_n_drugs_codes_when_vocab_sizes_omit_them() -> None:
    schema = DataSchema(vocab_sizes={"diagnoses": 4}, n_drugs=3, ddi_adjacency=None,
                        statistics_source=lambda name: np.zeros((3, 3)))
    assert schema.require_statistic(pair_counts("medications", "medications"), "x").shape == (3, 3)


def test_without_source_or_value_the_error_names_the_component() -> None:
    with pytest.raises(ValueError, match=r"memory 'x' needs the training statistic 'code_counts/diagnoses', but "
                                         r"this schema has no statistics source"):
        schema_with().require_statistic(code_counts("diagnoses"), "memory 'x'")


def test_malformed_name_and_unknown_vocabulary_name_the_component() -> None:
    source = CountingSource(lambda name: np.zeros(1))
    schema = schema_with(source)
    with pytest.raises(ValueError, match=r"^memory 'x': malformed statistic 'pair_counts/diagnoses'"):
        schema.require_statistic("pair_counts/diagnoses", "memory 'x'")
    with pytest.raises(ValueError, match=r"memory 'x' needs statistic 'code_counts/labs', but the data has no "
                                         r"'labs' vocabulary \(it has: medications, diagnoses\)"):
        schema.require_statistic(code_counts("labs"), "memory 'x'")
    assert source.calls == []


def test_a_value_of_the_wrong_shape_is_refused() -> None:
    schema = schema_with(lambda name: np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"loss 'y': statistic 'pair_counts/diagnoses/medications' from the "
                                         r"statistics source has shape \(3, 4\), expected \(4, 3\)"):
        schema.require_statistic(pair_counts("diagnoses", "medications"), "loss 'y'")
    given = schema_with(statistics={code_counts("diagnoses"): np.zeros(3)})
    with pytest.raises(ValueError, match=r"from the precomputed value has shape \(3,\), expected \(4,\)"):
        given.require_statistic(code_counts("diagnoses"), "loss 'y'")


def test_statistics_stay_out_of_repr_and_equality() -> None:
    plain = schema_with()
    with_statistics = schema_with(lambda name: np.zeros(4), statistics={code_counts("diagnoses"): np.zeros(4)})
    assert "statistics" not in repr(with_statistics)
    assert plain == with_statistics
