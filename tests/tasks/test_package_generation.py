"""Package generation rules (S2, S3, union) on a hand-made case."""

from __future__ import annotations

import numpy as np

from medtoolkit.tasks.package_choice import Candidates
from medtoolkit.tasks.package_generation import GenerationParams, descending_rank, generate_candidates

# one visit, four drugs; S1 = packages 0 {0, 1} and 1 {0, 2}
S1 = Candidates(np.array([0, 2]), np.array([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=bool), np.array([0, 1]))
# l: drug 0 first, then 2, 3, 1
PROBABILITIES = np.array([[0.9, 0.1, 0.8, 0.7]])
FREQUENCY_RANK = np.array([0, 1, 2, 3])  # L
RELATION = np.zeros((4, 4), dtype=np.int8)
RELATION[0, 3] = 1  # synergy 0 -> 3
RELATION[2, 3] = 2  # antagonism 2 -> 3
COOCCURRENCE = np.zeros((4, 4))


def sets_of(candidates: Candidates) -> list[set[int]]:
    return [set(np.flatnonzero(row).tolist()) for row in candidates.sets]


def test_descending_rank_ties_by_lower_index() -> None:
    np.testing.assert_array_equal(descending_rank(np.array([[0.9, 0.1, 0.8, 0.7], [0.5, 0.5, 0.9, 0.5]])),
                                  [[0, 3, 1, 2], [1, 2, 0, 3]])


def test_s2_s3_and_union_by_hand() -> None:
    params = GenerationParams(rare_share=0.5, low_rank=3, top_n=3, popularity_gap=5)
    out = generate_candidates(S1, PROBABILITIES, FREQUENCY_RANK, COOCCURRENCE, RELATION, params, mean_set_size=2)
    # S2: drug 1 (in 1/2 of S1, rank 3 >= 3) removed; no drug 5 places above its popularity: {0}, {0, 2}
    # S3: top-3 drug 3 has synergy with drug 0: {0, 3}, {0, 2, 3}; then antagonism 2-3 (p = 0 < 0.01)
    #     removes drug 3 (rank 2 below drug 2's rank 1): {0, 3}, {0, 2}
    # S = S1 + new {0}, {0, 3} (byte order 0b1000 < 0b1001)
    assert sets_of(out) == [{0, 1}, {0, 2}, {0}, {0, 3}]
    np.testing.assert_array_equal(out.package, [0, 1, -1, -1])
    np.testing.assert_array_equal(out.offsets, [0, 4])


def test_popular_gap_adds_and_high_cooccurrence_links() -> None:
    # gap 1: drugs 2 and 3 rank one place higher in l than in L -> added to both S1 packages in S2;
    # without relations nothing is split; S3 adds nothing new (drug 3 co-occurs 0.6 with drug 0 but is in already)
    cooccurrence = COOCCURRENCE.copy()
    cooccurrence[0, 3] = 0.6
    params = GenerationParams(rare_share=0.5, low_rank=3, top_n=3, popularity_gap=1)
    out = generate_candidates(S1, PROBABILITIES, FREQUENCY_RANK, cooccurrence, None, params, mean_set_size=2)
    # S2 rows: {0, 2, 3} twice (drug 1 removed); S3 = S2
    assert sets_of(out) == [{0, 1}, {0, 2}, {0, 2, 3}]
    # the default low_rank is 2 x the mean set size: 2 x 1.5 = 3, the same as above
    default = generate_candidates(S1, PROBABILITIES, FREQUENCY_RANK, cooccurrence, None,
                                  GenerationParams(rare_share=0.5, top_n=3, popularity_gap=1), mean_set_size=1.5)
    assert sets_of(default) == sets_of(out)


def test_two_visits_keep_their_own_rows_and_empty_sets_are_dropped() -> None:
    s1 = Candidates(np.array([0, 1, 2]), np.array([[0, 1, 0, 0], [0, 0, 1, 0]], dtype=bool), np.array([4, 7]))
    probabilities = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.9, 0.4]])
    # visit 0: drug 1 (share 1 > 0.5) stays; visit 1: drug 2 stays; nothing added (top_n 0): no new set
    params = GenerationParams(rare_share=0.5, low_rank=0, top_n=0)
    out = generate_candidates(s1, probabilities, FREQUENCY_RANK, COOCCURRENCE, None, params, mean_set_size=1)
    assert sets_of(out) == [{1}, {2}] and out.package.tolist() == [4, 7]
    # rare_share 1: every drug is rare and (low_rank 0) low: S2 rows are empty and dropped
    params = GenerationParams(rare_share=1.0, low_rank=0, top_n=0)
    out = generate_candidates(s1, probabilities, FREQUENCY_RANK, COOCCURRENCE, None, params, mean_set_size=1)
    assert sets_of(out) == [{1}, {2}] and out.offsets.tolist() == [0, 1, 2]
