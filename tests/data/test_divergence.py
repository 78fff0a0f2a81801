"""Jensen-Shannon divergence between hospitals' prescription distributions, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtoolkit.data import divergence
from medtoolkit.data.divergence import (
    hospital_divergence_summary,
    jensen_shannon,
    prescription_counts,
    prescription_distributions,
)
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.vocab import Vocabulary


def tiny(hospital: list[int] | None = (0, 0, 1, 1)) -> EHRData:
    """Four visits, three drugs. Hospital 0: {M0, M1}, {M0}; hospital 1: {M2}, {M2};
    hospital index 2 (when given) has no visit."""
    vocabularies = {
        DIAGNOSES: Vocabulary(["D0"], name=DIAGNOSES),
        PROCEDURES: Vocabulary(["P0"], name=PROCEDURES),
        MEDICATIONS: Vocabulary(["M0", "M1", "M2"], name=MEDICATIONS),
    }
    records = [[[[0], [0], [0, 1]], [[0], [0], [0]]], [[[0], [0], [2]], [[0], [0], [2]]]]
    return EHRData.from_records(records, vocabularies, DrugKnowledge(ddi_adjacency=None),
                                hospital=None if hospital is None else list(hospital), name="tiny")


# ---------------------------------------------------------------------------- jensen_shannon
def test_identical_distributions_are_zero_and_disjoint_ones_are_one_bit() -> None:
    p = np.array([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.25, 0.75]])
    jsd = jensen_shannon(p)
    assert jsd[0, 1] == 0.0 and jsd[1, 0] == 0.0
    assert jsd[0, 2] == pytest.approx(1.0, abs=1e-12) and jsd[2, 1] == pytest.approx(1.0, abs=1e-12)
    assert np.array_equal(np.diag(jsd), np.zeros(3))


def test_two_drug_case_by_hand() -> None:
    # P = (1, 0), Q = (1/2, 1/2), M = (3/4, 1/4):
    # KL(P||M) = log2(4/3); KL(Q||M) = 1/2 log2(2/3) + 1/2 log2(2) ; JSD = 3/2 - 3/4 log2(3)
    jsd = jensen_shannon(np.array([[1.0, 0.0], [0.5, 0.5]]))
    by_hand = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5 * math.log2(2))
    assert by_hand == pytest.approx(1.5 - 0.75 * math.log2(3), abs=1e-15)
    assert jsd[0, 1] == pytest.approx(by_hand, abs=1e-12)  # 0.31128...
    assert jsd[1, 0] == jsd[0, 1]


def test_matches_scipy_and_is_symmetric_bounded() -> None:
    spatial = pytest.importorskip("scipy.spatial.distance")
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(7, 0.3), size=9)
    p[2, :3] = 0.0
    p[2] /= p[2].sum()
    jsd = jensen_shannon(p)
    assert np.array_equal(jsd, jsd.T) and (jsd >= 0).all() and (jsd <= 1).all()
    for i in range(9):
        for j in range(9):
            assert jsd[i, j] == pytest.approx(spatial.jensenshannon(p[i], p[j], base=2) ** 2, abs=1e-10)


def test_blocks_give_the_same_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    p = np.random.default_rng(1).dirichlet(np.ones(5), size=11)
    whole = jensen_shannon(p)
    monkeypatch.setattr(divergence, "_BLOCK_ELEMENTS", 12)  # blocks of one row
    assert np.array_equal(jensen_shannon(p), whole)


@pytest.mark.parametrize(
    ("p", "message"),
    [
        (np.array([0.5, 0.5]), "expected \\[H, n\\]"),
        (np.array([[0.5, 0.6]]), "rows \\[0\\] do not sum to 1"),
        (np.array([[1.5, -0.5]]), "non-negative"),
        (np.array([[np.nan, 1.0]]), "finite"),
    ],
)
def test_bad_distributions_are_refused(p: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        jensen_shannon(p)


# ---------------------------------------------------------------------------- from data
def test_prescription_distributions_by_hand() -> None:
    data = tiny()
    assert prescription_counts(data).tolist() == [[2, 1, 0], [0, 0, 2]]
    shares = prescription_distributions(data)
    assert shares == pytest.approx(np.array([[2 / 3, 1 / 3, 0.0], [0.0, 0.0, 1.0]]))
    assert shares.sum(axis=1) == pytest.approx([1.0, 1.0])


def test_hospitals_without_visits_are_refused_or_skipped() -> None:
    data = tiny([0, 0, 2, 2])  # index 1 has no visit
    with pytest.raises(ValueError, match="1 hospital indices have no prescriptions \\(no visits\\): 1; pass"):
        prescription_distributions(data)
    assert prescription_distributions(data, skip_empty=True).shape == (2, 3)
    # an explicit number of hospitals counts trailing empty indices too
    assert prescription_counts(tiny(), n_hospitals=4).shape == (4, 3)
    with pytest.raises(ValueError, match="do not fit n_hospitals=1"):
        prescription_counts(tiny(), n_hospitals=1)


def test_summary_by_hand() -> None:
    summary = hospital_divergence_summary(tiny([0, 0, 2, 2]), n_hospitals=4)
    assert summary == {"n_hospitals": 2, "skipped_hospitals": 2, "n_pairs": 1, "base": 2,
                       "mean": pytest.approx(1.0), "median": pytest.approx(1.0),
                       "min": pytest.approx(1.0), "max": pytest.approx(1.0)}
    one = hospital_divergence_summary(tiny([0, 0, 0, 0]))
    assert one["n_hospitals"] == 1 and one["n_pairs"] == 0 and one["mean"] is None


def test_three_hospitals_summary_by_hand() -> None:
    # hospital 0: (2/3, 1/3, 0); hospital 1: (0, 0, 1) -> 1 bit; hospital 2 = hospital 0 -> 0
    data = tiny([0, 0, 1, 1])
    data.hospital = np.array([0, 2, 1, 1], dtype=np.int32)  # hospital 0: {M0, M1}; 2: {M0}
    # 0 = (1/2, 1/2, 0) and 2 = (1, 0, 0): JSD = 3/2 - 3/4 log2 3; both disjoint from 1
    summary = hospital_divergence_summary(data)
    low = 1.5 - 0.75 * math.log2(3)
    assert summary["n_pairs"] == 3
    assert summary["min"] == pytest.approx(low) and summary["max"] == pytest.approx(1.0)
    assert summary["median"] == pytest.approx(1.0) and summary["mean"] == pytest.approx((low + 2) / 3)


def test_data_without_hospitals_is_refused() -> None:
    with pytest.raises(ValueError, match="tiny: no hospital per visit"):
        hospital_divergence_summary(tiny(None))


def test_the_summary_samples_hospitals_beyond_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from medtoolkit.testing import fake_ehr

    data = fake_ehr(n_patients=60, n_hospitals=12, seed=1)
    full = divergence.hospital_divergence_summary(data)
    monkeypatch.setattr(divergence, "MAX_SUMMARY_HOSPITALS", 5)
    sampled = divergence.hospital_divergence_summary(data)
    assert sampled["sampled_hospitals"] == 5 and sampled["n_pairs"] == 10
    assert full["n_pairs"] == full["n_hospitals"] * (full["n_hospitals"] - 1) // 2
    assert full["min"] <= sampled["mean"] <= full["max"]
