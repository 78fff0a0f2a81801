"""Tests of medtoolkit.metrics against hand-computed values and sklearn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from medtoolkit.metrics import (
    METRICS,
    VisitScores,
    aggregate,
    average_precision,
    bootstrap,
    ddi_rate,
    pair_counts,
    score_visits,
)

# 5 drugs; interacting pairs (0, 1) and (2, 3).
DDI = np.zeros((5, 5), dtype=np.float32)
DDI[0, 1] = DDI[1, 0] = DDI[2, 3] = DDI[3, 2] = 1.0

# Three visits, threshold 0.5.
TARGETS = np.array(
    [
        [1, 1, 1, 0, 0],  # visit A: T = {0, 1, 2}
        [0, 0, 0, 0, 1],  # visit B: T = {4}
        [0, 0, 1, 1, 0],  # visit C: T = {2, 3}
    ],
    dtype=bool,
)
PROBS = np.array(
    [
        [0.9, 0.6, 0.2, 0.7, 0.1],  # P = {0, 1, 3}
        [0.5, 0.5, 0.5, 0.5, 0.5],  # all tied at the threshold: P = {0..4}
        [0.4, 0.3, 0.45, 0.1, 0.0],  # P = {} (nothing reaches 0.5)
    ]
)
# Visit A: |P∩T| = 2 ({0,1}), |P∪T| = 4 -> J = 1/2; p = 2/3, r = 2/3, F1 = 2/3.
#   ranking 0(T) 3(F) 1(T) 2(T) 4(F): precision at the hits 1/1, 2/3, 3/4
#   -> AP = (1 + 2/3 + 3/4) / 3 = 29/36. Pairs of {0,1,3}: 3, interacting: (0,1) -> 1.
# Visit B: |P∩T| = 1, |P∪T| = 5 -> J = 1/5; p = 1/5, r = 1, F1 = 2*(1/5)/(6/5) = 1/3.
#   one tied threshold: precision 1/5 at recall 1 -> AP = 1/5. Pairs: 10, interacting: 2.
# Visit C: P empty -> J = 0/2 = 0, p = 0, r = 0, F1 = 0.
#   ranking 2(T) 0 1 3(T) 4: precision at the hits 1/1, 2/4 -> AP = 3/4. Pairs 0.
EXPECTED = {
    "jaccard": [1 / 2, 1 / 5, 0.0],
    "precision": [2 / 3, 1 / 5, 0.0],
    "recall": [2 / 3, 1.0, 0.0],
    "f1": [2 / 3, 1 / 3, 0.0],
    "prauc": [29 / 36, 1 / 5, 3 / 4],
    "n_predicted": [3, 5, 0],
    "ddi_pairs": [1, 2, 0],
    "all_pairs": [3, 10, 0],
}


def _sklearn_ap(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # rows without positives warn in sklearn
        warnings.simplefilter("ignore")
        return np.array([average_precision_score(t, s) for t, s in zip(targets, scores)])


def test_score_visits_hand_computed() -> None:
    scores = score_visits(TARGETS, PROBS, threshold=0.5, ddi_adjacency=DDI)
    for name, expected in EXPECTED.items():
        np.testing.assert_allclose(getattr(scores, name), expected, rtol=0, atol=1e-12, err_msg=name)
    assert scores.n_predicted.dtype == np.int64 and len(scores) == 3


def test_aggregate_visit_and_patient_averaging_differ() -> None:
    scores = score_visits(TARGETS, PROBS, 0.5, DDI)
    owners = np.array([7, 7, 9])  # A and B belong to patient 7, C to patient 9
    by_visit = aggregate(scores, owners, "visit")
    by_patient = aggregate(scores, owners, "patient")
    # visit: (1/2 + 1/5 + 0) / 3 ; patient: ((1/2 + 1/5) / 2 + 0) / 2
    assert by_visit["jaccard"] == pytest.approx(0.7 / 3)
    assert by_patient["jaccard"] == pytest.approx(0.175)
    assert by_visit["f1"] == pytest.approx((2 / 3 + 1 / 3) / 3)
    assert by_patient["f1"] == pytest.approx(0.25)
    assert by_visit["prauc"] == pytest.approx((29 / 36 + 1 / 5 + 3 / 4) / 3)
    # pooled in both modes: (1 + 2 + 0) / (3 + 10 + 0) and (3 + 5 + 0) / 3
    for result in (by_visit, by_patient):
        assert result["ddi_rate"] == pytest.approx(3 / 13)
        assert result["avg_drugs"] == pytest.approx(8 / 3)
    assert set(by_visit) == set(METRICS)


def test_aggregate_visit_subset_with_repeats() -> None:
    scores = score_visits(TARGETS, PROBS, 0.5, DDI)
    owners = np.array([7, 7, 9])
    # visit A twice and C once: visit mean (1/2 + 1/2 + 0) / 3; patient mean (1/2 + 0) / 2
    assert aggregate(scores, owners, "visit", visits=np.array([0, 0, 2]))["jaccard"] == pytest.approx(1 / 3)
    assert aggregate(scores, owners, "patient", visits=np.array([0, 0, 2]))["jaccard"] == pytest.approx(0.25)
    # DDI pooled over the selection: (1 + 1 + 0) / (3 + 3 + 0)
    assert aggregate(scores, owners, "visit", visits=np.array([0, 0, 2]))["ddi_rate"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="averaging"):
        aggregate(scores, owners, "macro")  # type: ignore[arg-type]


def test_ddi_rate_pooled_and_symmetric_reading() -> None:
    predicted = PROBS >= 0.5
    assert ddi_rate(predicted, DDI) == pytest.approx(3 / 13)
    # only the lower triangle set: A[j, i] counts for the pair i < j too
    lower = np.zeros((3, 3))
    lower[1, 0] = 1.0
    visits = np.array([[1, 1, 1], [1, 1, 0]], dtype=bool)  # pairs 3 + 1, interacting 1 + 1
    assert ddi_rate(visits, lower) == pytest.approx(2 / 4)
    assert ddi_rate(np.zeros((4, 3), dtype=bool), lower) == 0.0
    ddi, total = pair_counts(visits, lower)
    assert ddi.tolist() == [1, 1] and total.tolist() == [3, 1]


def test_average_precision_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    targets = rng.random((300, 40)) < 0.3
    scores = np.round(rng.random((300, 40)), 1)  # 11 distinct values: many ties
    scores[:10] = 0.5  # rows with every score tied
    targets[10:15] = False  # rows without any positive (sklearn: 0.0)
    targets[15:20] = True  # rows with only positives
    ours = average_precision(targets, scores)
    np.testing.assert_allclose(ours, _sklearn_ap(targets, scores), rtol=0, atol=1e-12)
    assert np.all(ours[10:15] == 0.0) and np.allclose(ours[15:20], 1.0)


def test_average_precision_tie_group_is_one_threshold() -> None:
    # ranking: 0 (F) then the tie {1 (T), 2 (F), 3 (T)}: one cut-off with precision 2/4, recall 1
    ap = average_precision(np.array([[0, 1, 0, 1, 0]]), np.array([[0.8, 0.6, 0.6, 0.6, 0.1]]))
    assert ap[0] == pytest.approx(0.5)


def test_no_predictions() -> None:
    targets = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
    scores = score_visits(targets, np.full((2, 3), 0.2), 0.5, np.ones((3, 3)) - np.eye(3))
    assert scores.jaccard.tolist() == [0.0, 0.0]
    assert scores.precision.tolist() == [0.0, 0.0] and scores.f1.tolist() == [0.0, 0.0]
    assert scores.n_predicted.tolist() == [0, 0]
    result = aggregate(scores, np.array([0, 1]), "visit")
    assert result["ddi_rate"] == 0.0 and result["avg_drugs"] == 0.0
    # all scores tied: AP = share of positives (2/3 and 1/3)
    assert scores.prauc == pytest.approx([2 / 3, 1 / 3])


def test_single_drug() -> None:
    targets = np.array([[1], [0], [1]], dtype=bool)
    probs = np.array([[0.7], [0.9], [0.2]])
    scores = score_visits(targets, probs, 0.5, np.zeros((1, 1)))
    # hit; false positive on a visit without target; miss
    assert scores.jaccard.tolist() == [1.0, 0.0, 0.0]
    assert scores.precision.tolist() == [1.0, 0.0, 0.0]
    assert scores.recall.tolist() == [1.0, 0.0, 0.0]
    assert scores.f1.tolist() == [1.0, 0.0, 0.0]
    assert scores.prauc.tolist() == [1.0, 0.0, 1.0]
    np.testing.assert_allclose(scores.prauc, _sklearn_ap(targets, probs))
    assert scores.all_pairs.tolist() == [0, 0, 0]


def _two_patient_scores() -> tuple[VisitScores, np.ndarray]:
    """Patient 0: two visits with Jaccard 1; patient 1: one visit with Jaccard 0."""
    targets = np.array([[1, 0], [1, 0], [1, 0]], dtype=bool)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    return score_visits(targets, probs), np.array([0, 0, 1])


def test_bootstrap_duplicate_patients_count_twice() -> None:
    scores, owners = _two_patient_scores()
    result = bootstrap(scores, owners, rounds=20, fraction=1.0, seed=5, averaging="patient")
    generator = np.random.RandomState(5)
    per_patient_jaccard = np.array([1.0, 0.0])
    for values in result["rounds"]:
        drawn = generator.choice(2, size=2, replace=True)  # e.g. [0, 0] -> Jaccard 1.0
        assert values["jaccard"] == pytest.approx(per_patient_jaccard[drawn].mean())
    jaccards = [r["jaccard"] for r in result["rounds"]]
    assert set(jaccards) <= {0.0, 0.5, 1.0} and len(set(jaccards)) > 1
    assert result["jaccard"]["mean"] == pytest.approx(np.mean(jaccards))
    assert result["jaccard"]["std"] == pytest.approx(np.std(jaccards))  # ddof = 0
    # visit averaging weights a drawn patient by its visits: draw [0, 1] -> (1 + 1 + 0) / 3
    by_visit = bootstrap(scores, owners, rounds=20, fraction=1.0, seed=5, averaging="visit")
    assert set(r["jaccard"] for r in by_visit["rounds"]) <= {0.0, 2 / 3, 1.0}


def test_bootstrap_deterministic_by_seed_and_legacy_draws() -> None:
    rng = np.random.default_rng(1)
    owners = np.repeat(np.arange(50) + 100, rng.integers(1, 4, size=50))
    targets = rng.random((len(owners), 12)) < 0.4
    scores = score_visits(targets, rng.random((len(owners), 12)), 0.5, np.ones((12, 12)) - np.eye(12))
    first = bootstrap(scores, owners, rounds=10, fraction=0.8, seed=2048)
    assert first == bootstrap(scores, owners, rounds=10, fraction=0.8, seed=2048)
    assert first != bootstrap(scores, owners, rounds=10, fraction=0.8, seed=2049)
    assert len(first["rounds"]) == 10
    # round 1 equals aggregating the reference-style draw of round(0.8 * 50) = 40 patient ids
    drawn = np.random.RandomState(2048).choice(np.arange(50) + 100, size=40, replace=True)
    visits = np.concatenate([np.flatnonzero(owners == p) for p in drawn])
    # mean over the drawn patients (duplicates included) of each one's mean Jaccard
    patient_means = [scores.jaccard[owners == p].mean() for p in drawn]
    assert first["rounds"][0]["jaccard"] == pytest.approx(np.mean(patient_means))
    pooled = aggregate(scores, owners, "visit", visits=visits)
    assert first["rounds"][0]["ddi_rate"] == pytest.approx(pooled["ddi_rate"])
    assert first["rounds"][0]["avg_drugs"] == pytest.approx(pooled["avg_drugs"])


def test_bootstrap_zero_rounds_scores_full_set() -> None:
    scores = score_visits(TARGETS, PROBS, 0.5, DDI)
    owners = np.array([7, 7, 9])
    result = bootstrap(scores, owners, rounds=0, averaging="patient")
    assert result["jaccard"] == {"mean": pytest.approx(0.175), "std": 0.0}
    assert result["ddi_rate"]["mean"] == pytest.approx(3 / 13)
    assert result["rounds"] == []
    with pytest.raises(ValueError):
        bootstrap(scores, owners, rounds=-1)
    with pytest.raises(ValueError):
        bootstrap(scores, owners, fraction=0.0)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="shape"):
        score_visits(TARGETS, PROBS[:, :4])
    with pytest.raises(ValueError, match="ddi_adjacency"):
        score_visits(TARGETS, PROBS, 0.5, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        average_precision(TARGETS, np.full(PROBS.shape, np.nan))


# ----------------------------------------------------------------------------- no DDI matrix
def test_without_ddi_matrix_the_rate_is_not_available() -> None:
    scores = score_visits(TARGETS, PROBS, 0.5)  # the dataset has no DDI matrix
    assert scores.ddi_pairs is None and scores.all_pairs.tolist() == [3, 10, 0]
    assert scores.take(np.array([2, 0])).ddi_pairs is None
    pooled = aggregate(scores, np.array([0, 0, 1]), "visit")
    assert pooled["ddi_rate"] is None
    assert pooled["jaccard"] == pytest.approx(0.7 / 3) and pooled["avg_drugs"] == pytest.approx(8 / 3)
    once = bootstrap(scores, np.array([0, 0, 1]), rounds=0)
    assert once["ddi_rate"] == {"mean": None, "std": None}
    rounds = bootstrap(scores, np.array([0, 0, 1]), rounds=3, seed=1)
    assert rounds["ddi_rate"] == {"mean": None, "std": None}
    assert [r["ddi_rate"] for r in rounds["rounds"]] == [None, None, None]
    assert rounds["jaccard"]["mean"] is not None
    assert ddi_rate(TARGETS, None) is None
    # with a matrix nothing changes: an all-zero matrix is a known 0.0, not "n/a"
    assert aggregate(score_visits(TARGETS, PROBS, 0.5, np.zeros((5, 5))), np.array([0, 0, 1]))["ddi_rate"] == 0.0
