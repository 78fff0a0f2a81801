"""Choosing one package per visit: candidate sets, and the choice by likelihood, by score or by top-k.

The candidates of a block of ``Q`` visits are a :class:`Candidates` CSR structure over ``R``
candidate rows (each row one medication set of one visit). Nothing here loops in Python over
visits or candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Candidates", "choose_best", "choose_by_likelihood", "log_likelihoods", "top_k_sets"]

_CLIP = 1e-6


@dataclass(frozen=True, eq=False)
class Candidates:
    """The candidate medication sets of ``Q`` visits.

    Attributes:
        offsets: ``[Q + 1]`` int64 CSR offsets: the candidates of visit ``q`` are rows
            ``offsets[q]:offsets[q + 1]``; within a visit, training packages come first in
            ascending package id, then generated sets.
        sets: ``[R, n_drugs]`` bool, one medication set per row.
        package: ``[R]`` int64 training package id of the row, -1 for a generated set.
    """

    offsets: np.ndarray
    sets: np.ndarray
    package: np.ndarray

    @property
    def n_visits(self) -> int:
        """``Q``."""
        return int(self.offsets.shape[0] - 1)

    @property
    def owner(self) -> np.ndarray:
        """``[R]`` int64 visit of each row."""
        return np.repeat(np.arange(self.n_visits, dtype=np.int64), np.diff(self.offsets))

    @classmethod
    def of_packages(cls, packages: np.ndarray, offsets: np.ndarray, package_ids: np.ndarray) -> "Candidates":
        """Candidates that are training packages only.

        Args:
            packages: ``[P, n_drugs]`` bool training packages.
            offsets: ``[Q + 1]`` CSR offsets.
            package_ids: ``[R]`` candidate package ids, ascending per visit.
        """
        ids = np.asarray(package_ids, dtype=np.int64)
        return cls(np.asarray(offsets, dtype=np.int64), packages[ids], ids)


def choose_best(scores: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The row with the highest score of each visit (the first such row on ties).

    Args:
        scores: ``[R]`` scores of the candidate rows.
        offsets: ``[Q + 1]`` CSR offsets (every visit has at least one row).

    Returns:
        ``[Q]`` int64 row indices.

    Raises:
        ValueError: a visit has no candidate, or a score is NaN.
    """
    scores = np.asarray(scores, dtype=np.float64)
    lengths = np.diff(offsets)
    if (lengths < 1).any():
        raise ValueError("every visit needs at least one candidate package")
    if np.isnan(scores).any():
        raise ValueError("package scores must not be NaN")
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    best = np.maximum.reduceat(scores, offsets[:-1])
    position = np.where(scores == best[owner], np.arange(len(scores)), len(scores))
    return np.minimum.reduceat(position, offsets[:-1]).astype(np.int64)


def log_likelihoods(probabilities: np.ndarray, sets: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Bernoulli log-likelihood of each candidate set under its visit's per-drug probabilities.

    ``sum_{d in set} log p_d + sum_{d not in set} log(1 - p_d)`` with ``p`` clipped to
    ``[1e-6, 1 - 1e-6]``.

    Args:
        probabilities: ``[Q, n_drugs]`` per-drug probabilities.
        sets: ``[R, n_drugs]`` bool candidate sets.
        owner: ``[R]`` visit of each row.

    Returns:
        ``[R]`` float64.
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _CLIP, 1.0 - _CLIP)
    log_absent = np.log1p(-p)
    log_odds = np.log(p) - log_absent
    # log L = sum_d log(1 - p_d) + sum_{d in set} log(p_d / (1 - p_d))
    return log_absent.sum(axis=1)[owner] + np.einsum("ij,ij->i", sets.astype(np.float64), log_odds[owner])


def choose_by_likelihood(probabilities: np.ndarray, candidates: Candidates) -> np.ndarray:
    """The candidate row with the highest Bernoulli log-likelihood for each visit.

    Args:
        probabilities: ``[Q, n_drugs]`` per-drug probabilities of the visits.
        candidates: their candidates (every visit has at least one).

    Returns:
        ``[Q]`` int64 row indices into ``candidates``; among equal log-likelihoods the first
        row (the lower package id).
    """
    return choose_best(log_likelihoods(probabilities, candidates.sets, candidates.owner), candidates.offsets)


def top_k_sets(probabilities: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` drugs of highest probability of each visit (ties: the lower drug index).

    Args:
        probabilities: ``[Q, n_drugs]``.
        k: drugs per set, ``0 <= k``; more than ``n_drugs`` takes every drug.

    Returns:
        ``[Q, n_drugs]`` bool.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    n_drugs = p.shape[1]
    k = min(max(int(k), 0), n_drugs)
    out = np.zeros(p.shape, dtype=bool)
    if k:
        order = np.argsort(-p, axis=1, kind="stable")[:, :k]
        np.put_along_axis(out, order, True, axis=1)
    return out
