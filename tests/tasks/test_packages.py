"""Drug packages: the package index, nearest patients, candidates and package metrics (hand-computed)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from medtoolkit.metrics import ddi_rate as pooled_ddi_rate
from medtoolkit.tasks.packages import (
    PACKAGE_METRICS,
    PackageIndex,
    candidate_packages,
    nearest_keys,
    package_scores,
)

# Five training visits, four drugs, patients 7 and 3 (ids deliberately not sorted).
#   visit  patient  set      package (first occurrence)
#   0      7        {0,1}    0
#   1      3        {2}      1
#   2      7        {0,1}    0
#   3      3        {}       2   (the empty set is a package because visit 3 has no drug)
#   4      7        {2}      1
MULTI_HOT = np.array([
    [1, 1, 0, 0],
    [0, 0, 1, 0],
    [1, 1, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 1, 0],
], dtype=np.int64)
VISIT_PATIENT = np.array([7, 3, 7, 3, 7])


@pytest.fixture()
def index() -> PackageIndex:
    return PackageIndex.from_visits(MULTI_HOT, VISIT_PATIENT)


# ----------------------------------------------------------------------------- PackageIndex
def test_packages_in_first_occurrence_order_with_counts(index: PackageIndex) -> None:
    expected = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    assert index.packages.dtype == bool
    np.testing.assert_array_equal(index.packages, expected)
    np.testing.assert_array_equal(index.counts, [2, 2, 1])
    np.testing.assert_array_equal(index.visit_package, [0, 1, 0, 2, 1])
    assert (index.n_packages, index.n_drugs, index.n_patients) == (3, 4, 2)


def test_patient_csr(index: PackageIndex) -> None:
    # patients ascending: 3 got packages {1, 2}; 7 got {0, 1} (package 0 twice, listed once)
    np.testing.assert_array_equal(index.patients, [3, 7])
    np.testing.assert_array_equal(index.patient_offsets, [0, 2, 4])
    np.testing.assert_array_equal(index.patient_packages, [1, 2, 0, 1])


def test_bool_input_gives_the_same_index_and_arrays_are_read_only(index: PackageIndex) -> None:
    same = PackageIndex.from_visits(MULTI_HOT.astype(bool), VISIT_PATIENT)
    for name in ("packages", "counts", "visit_package", "patients", "patient_offsets", "patient_packages"):
        np.testing.assert_array_equal(getattr(same, name), getattr(index, name))
        assert not getattr(index, name).flags.writeable, name


def test_no_empty_package_unless_an_empty_visit_exists() -> None:
    index = PackageIndex.from_visits(MULTI_HOT[[0, 1, 2, 4]], VISIT_PATIENT[[0, 1, 2, 4]])
    assert index.packages.any(axis=1).all()
    np.testing.assert_array_equal(index.counts, [2, 2])


def test_first_occurrence_order_differs_from_byte_order() -> None:
    # {3} packs to a smaller byte than {0}; numbering still follows the visits
    sets = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]], dtype=bool)
    index = PackageIndex.from_visits(sets, np.array([0, 1, 2]))
    np.testing.assert_array_equal(index.packages, sets[:2])
    np.testing.assert_array_equal(index.visit_package, [0, 1, 0])


def test_more_than_eight_drugs_use_several_bytes() -> None:
    sets = np.zeros((3, 11), dtype=bool)
    sets[0, 10] = True  # differs from visit 1 only in the second byte
    sets[2, 10] = True
    index = PackageIndex.from_visits(sets, np.array([5, 5, 6]))
    np.testing.assert_array_equal(index.counts, [2, 1])
    np.testing.assert_array_equal(index.visit_package, [0, 1, 0])
    np.testing.assert_array_equal(index.patient_offsets, [0, 2, 3])
    np.testing.assert_array_equal(index.patient_packages, [0, 1, 0])


def test_package_of_maps_sets_to_ids(index: PackageIndex) -> None:
    queries = np.array([[0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(index.package_of(queries), [1, -1, 0, 2])
    with pytest.raises(ValueError, match="drug columns"):
        index.package_of(np.zeros((1, 5), dtype=bool))


def test_from_visits_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        PackageIndex.from_visits(np.array([[0, 2]]), np.array([0]))
    with pytest.raises(ValueError, match="visit_patient"):
        PackageIndex.from_visits(MULTI_HOT, VISIT_PATIENT[:3])
    with pytest.raises(ValueError, match="2-D"):
        PackageIndex.from_visits(np.array([1, 0]), np.array([0, 0]))


def test_from_visits_scale() -> None:
    rng = np.random.default_rng(0)
    multi_hot = rng.random((200_000, 112)) < 0.1
    multi_hot[::3] = multi_hot[0]  # a third of the visits share one package
    visit_patient = rng.integers(0, 50_000, size=200_000)
    start = time.perf_counter()
    index = PackageIndex.from_visits(multi_hot, visit_patient)
    elapsed = time.perf_counter() - start
    print(f"PackageIndex.from_visits on 200,000 visits x 112 drugs: {elapsed:.3f} s")
    assert elapsed < 20.0
    assert index.counts.sum() == 200_000
    assert index.counts[0] == len(range(0, 200_000, 3))
    np.testing.assert_array_equal(index.packages[index.visit_package], multi_hot)
    # every patient's CSR slice is its distinct packages, ascending
    u = int(np.searchsorted(index.patients, visit_patient[1]))
    own = index.patient_packages[index.patient_offsets[u]:index.patient_offsets[u + 1]]
    np.testing.assert_array_equal(own, np.unique(index.visit_package[visit_patient == visit_patient[1]]))


# ----------------------------------------------------------------------------- nearest patients
KEYS = np.array([
    [1.0, 0.0],   # 0
    [0.0, 2.0],   # 1
    [3.0, 0.0],   # 2: same direction as 0 (a tie with 0)
    [0.0, 0.0],   # 3: zero vector, similarity 0 with everything
    [-1.0, 0.0],  # 4: opposite of 0
])


def test_nearest_keys_by_cosine_with_ties_by_lower_index() -> None:
    query = np.array([
        [2.0, 0.0],   # sims 1, 0, 1, 0, -1 -> 0, 2 (tie), then 1, 3 (tie at 0)
        [0.0, -1.0],  # sims 0, -1, 0, 0, 0 -> 0, 2, 3 (ties at 0), then 4
        [0.0, 0.0],   # zero query: all sims 0 -> 0, 1, 2
    ])
    np.testing.assert_array_equal(nearest_keys(query, KEYS, 3), [[0, 2, 1], [0, 2, 3], [0, 1, 2]])
    np.testing.assert_array_equal(nearest_keys(query, KEYS, 4), [[0, 2, 1, 3], [0, 2, 3, 4], [0, 1, 2, 3]])
    np.testing.assert_array_equal(nearest_keys(query, KEYS, 5)[0], [0, 2, 1, 3, 4])
    np.testing.assert_array_equal(nearest_keys(query, KEYS, 1), [[0], [0], [0]])


def test_nearest_patients_blocks_do_not_change_the_result() -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(-1, 2, size=(40, 3)).astype(np.float64)  # many exact ties and zero rows
    query = rng.integers(-1, 2, size=(23, 3)).astype(np.float64)
    full = nearest_keys(query, keys, 6)
    np.testing.assert_array_equal(nearest_keys(query, keys, 6, block=4), full)
    assert full.shape == (23, 6) and full.dtype == np.int64


def test_nearest_patients_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="only 5 keys"):
        nearest_keys(np.ones((1, 2)), KEYS, 6)
    with pytest.raises(ValueError, match="at least 1"):
        nearest_keys(np.ones((1, 2)), KEYS, 0)
    with pytest.raises(ValueError, match="features"):
        nearest_keys(np.ones((1, 3)), KEYS, 2)
    with pytest.raises(ValueError, match="finite"):
        nearest_keys(np.array([[np.nan, 1.0]]), KEYS, 2)


# ----------------------------------------------------------------------------- candidates
def test_candidate_packages_union_sorted_and_deduplicated(index: PackageIndex) -> None:
    # patient rows: 0 (id 3) has {1, 2}, 1 (id 7) has {0, 1}
    neighbours = np.array([[0, 1], [1, 1], [0, 0]])
    offsets, package_ids = candidate_packages(index, neighbours)
    np.testing.assert_array_equal(offsets, [0, 3, 5, 7])
    np.testing.assert_array_equal(package_ids, [0, 1, 2, 0, 1, 1, 2])


def test_candidate_packages_from_nearest_keys(index: PackageIndex) -> None:
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0]])  # of patients 3 and 7
    neighbours = nearest_keys(np.array([[0.1, 1.0], [1.0, 0.0]]), embeddings, 1)
    offsets, package_ids = candidate_packages(index, neighbours)
    np.testing.assert_array_equal(offsets, [0, 2, 4])
    np.testing.assert_array_equal(package_ids, [0, 1, 1, 2])


def test_candidate_packages_rejects_out_of_range_neighbours(index: PackageIndex) -> None:
    with pytest.raises(ValueError, match="row positions"):
        candidate_packages(index, np.array([[0, 2]]))
    with pytest.raises(ValueError, match="2-D integer"):
        candidate_packages(index, np.array([0, 1]))


# ----------------------------------------------------------------------------- metrics
# Five visits, five drugs; DDI pairs (0,1) and (2,3) (the second given one-sided, A[3, 2]).
#   visit  chosen     truth      |C∩T|  precision  recall  f1    jaccard  pairs  ddi pairs
#   0      {0,1,2}    {0,1}      2      2/3        1       4/5   2/3      3      1 (0-1)
#   1      {2,3}      {4}        0      0          0       0     0        1      1 (2-3)
#   2      {}         {0}        0      0 (0/0)    0       0     0        0      0
#   3      {4}        {}         0      0          0 (0/0) 0     0        0      0
#   4      {}         {}         0      0 (0/0)    0 (0/0) 0     0 (0/0)  0      0
CHOSEN = np.array([
    [1, 1, 1, 0, 0],
    [0, 0, 1, 1, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0],
], dtype=bool)
TRUTH = np.array([
    [1, 1, 0, 0, 0],
    [0, 0, 0, 0, 1],
    [1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
], dtype=bool)
DDI = np.zeros((5, 5))
DDI[0, 1] = DDI[1, 0] = 1.0
DDI[3, 2] = 1.0


def test_package_scores_per_visit_with_zero_over_zero_cases() -> None:
    scores = package_scores(CHOSEN, TRUTH, DDI)
    np.testing.assert_allclose(scores["precision"], [2 / 3, 0, 0, 0, 0])
    np.testing.assert_allclose(scores["recall"], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(scores["f1"], [4 / 5, 0, 0, 0, 0])
    np.testing.assert_allclose(scores["jaccard"], [2 / 3, 0, 0, 0, 0])
    np.testing.assert_allclose(scores["ddi_rate"], [1 / 3, 1, 0, 0, 0])
    np.testing.assert_array_equal(scores["n_drugs"], [3, 2, 0, 1, 0])
    np.testing.assert_array_equal(scores["all_pairs"], [3, 1, 0, 0, 0])
    np.testing.assert_array_equal(scores["ddi_pairs"], [1, 1, 0, 0, 0])


def test_package_scores_means_and_pooled_ddi_rate() -> None:
    means = package_scores(CHOSEN, TRUTH, DDI)["means"]
    assert set(PACKAGE_METRICS) | {"avg_drugs"} == set(means)
    assert means["precision"] == pytest.approx((2 / 3) / 5)
    assert means["recall"] == pytest.approx(1 / 5)
    assert means["f1"] == pytest.approx((4 / 5) / 5)
    assert means["jaccard"] == pytest.approx((2 / 3) / 5)
    assert means["ddi_rate"] == pytest.approx(2 / 4)  # pooled: (1 + 1) / (3 + 1), not mean of 1/3 and 1
    assert means["ddi_rate"] == pytest.approx(pooled_ddi_rate(CHOSEN, DDI))
    assert means["avg_drugs"] == pytest.approx(6 / 5)


def test_package_scores_f1_of_a_partial_match() -> None:
    # chosen {0,1,2,3}, truth {0,1,4}: overlap 2, p = 1/2, r = 2/3, f1 = 4/7, jaccard 2/5
    scores = package_scores(np.array([[1, 1, 1, 1, 0]]), np.array([[1, 1, 0, 0, 1]]))
    assert scores["f1"][0] == pytest.approx(4 / 7)
    assert scores["jaccard"][0] == pytest.approx(2 / 5)


def test_package_scores_without_ddi_matrix_or_visits() -> None:
    scores = package_scores(CHOSEN, TRUTH)
    assert scores["ddi_rate"] is None and scores["ddi_pairs"] is None
    assert scores["means"]["ddi_rate"] is None
    np.testing.assert_array_equal(scores["all_pairs"], [3, 1, 0, 0, 0])
    empty = package_scores(np.zeros((0, 5), dtype=bool), np.zeros((0, 5), dtype=bool), DDI)
    assert np.isnan(empty["means"]["f1"]) and empty["means"]["ddi_rate"] == 0.0


def test_package_scores_rejects_mismatched_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        package_scores(CHOSEN, TRUTH[:, :4])
    with pytest.raises(ValueError, match="ddi_adjacency"):
        package_scores(CHOSEN, TRUTH, np.zeros((4, 4)))
