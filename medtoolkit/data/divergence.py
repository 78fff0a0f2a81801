"""How different the hospitals' prescribing is: Jensen-Shannon divergence between hospitals.

TEMPT (Fig. 2) motivates multi-centre training with the Jensen-Shannon divergence (JSD) of
the *prescription distributions* of every pair of hospitals. Here, as there:

* a **prescription** is one (visit, drug) pair of the ground truth (a drug given at a
  visit counts once for that visit);
* the **prescription distribution** of hospital ``h`` is the share of its prescriptions
  that go to each drug: ``p_h[d] = n_h[d] / sum_d' n_h[d']`` (a row summing to 1), where
  ``n_h[d]`` is the number of visits of ``h`` that hold drug ``d``;
* ``JSD(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M)`` with ``M = (P + Q) / 2``, in **bits**
  (log base 2), so it lies in ``[0, 1]``: 0 for identical distributions, 1 for
  distributions without a common drug. ``0 log 0`` is 0.

The empirical distribution of a small hospital is noisy, so even hospitals that prescribe
alike in truth show a JSD above 0 when they have few visits: compare values between
datasets of similar sizes. Everything is vectorised; the ``[H, H]`` matrix is computed in
blocks of rows so that memory stays near ``_BLOCK_ELEMENTS`` floats whatever ``H``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medtoolkit.data.ehr import MEDICATIONS, EHRData

#: float64 elements of one ``[rows, H, n_drugs]`` block of the pairwise computation (32 MiB)
_BLOCK_ELEMENTS = 4_000_000


def prescription_counts(data: EHRData, n_hospitals: int | None = None) -> np.ndarray:
    """Visits holding each drug, per hospital.

    Args:
        data: data with a ``hospital`` index per visit.
        n_hospitals: number of hospital indices ``H`` (None: ``max(data.hospital) + 1``).

    Returns:
        ``[H, n_drugs]`` int64; a hospital index without visits has a row of zeros.

    Raises:
        ValueError: the data has no hospital column, or an index is outside ``0..H-1``.
    """
    if data.hospital is None:
        raise ValueError(f"{data.name}: no hospital per visit (EHRData.hospital is None); "
                         "prescription distributions need hospitals")
    n_drugs = len(data.vocabularies[MEDICATIONS])
    largest = int(data.hospital.max(initial=-1))
    if n_hospitals is None:
        n_hospitals = largest + 1
    elif largest >= n_hospitals or int(data.hospital.min(initial=0)) < 0:
        raise ValueError(f"{data.name}: hospital indices {int(data.hospital.min())}..{largest} "
                         f"do not fit n_hospitals={n_hospitals}")
    per_visit = np.diff(data.code_offsets[MEDICATIONS])
    hospital_of_code = np.repeat(data.hospital.astype(np.int64), per_visit)
    keys = hospital_of_code * n_drugs + data.codes[MEDICATIONS].astype(np.int64)
    counts = np.bincount(keys, minlength=n_hospitals * n_drugs)
    return counts.reshape(n_hospitals, n_drugs)


def prescription_distributions(data: EHRData, *, n_hospitals: int | None = None,
                               skip_empty: bool = False) -> np.ndarray:
    """Each hospital's share of prescriptions per drug.

    Args:
        data: data with a ``hospital`` index per visit.
        n_hospitals: number of hospital indices (None: ``max(data.hospital) + 1``).
        skip_empty: leave out hospital indices without prescriptions (no visits) instead of
            refusing them; the rows are then the hospitals with prescriptions, in index
            order (``np.flatnonzero(prescription_counts(data, n_hospitals).sum(1))``).

    Returns:
        ``[H, n_drugs]`` float64, every row summing to 1.

    Raises:
        ValueError: no hospital column, or (without ``skip_empty``) a hospital index without
            prescriptions (the message names them).
    """
    counts = prescription_counts(data, n_hospitals).astype(np.float64)
    totals = counts.sum(axis=1)
    empty = np.flatnonzero(totals == 0)
    if len(empty) and not skip_empty:
        shown = ", ".join(str(h) for h in empty[:10]) + (" ..." if len(empty) > 10 else "")
        raise ValueError(
            f"{data.name}: {len(empty)} hospital indices have no prescriptions (no visits): {shown}; "
            "pass skip_empty=True to leave them out"
        )
    keep = totals > 0
    return counts[keep] / totals[keep, None]


def _plogp(p: np.ndarray) -> np.ndarray:
    """Elementwise ``p * log2(p)`` with ``0 log 0 = 0``."""
    positive = p > 0
    return np.where(positive, p * np.log2(np.where(positive, p, 1.0)), 0.0)


def jensen_shannon(p: np.ndarray) -> np.ndarray:
    """Pairwise Jensen-Shannon divergence in bits between the rows of ``p``.

    Uses ``JSD(P, Q) = H((P + Q) / 2) - (H(P) + H(Q)) / 2`` with the entropy ``H`` in bits.

    Args:
        p: ``[H, n]`` non-negative rows, each summing to 1 (probability distributions).

    Returns:
        ``[H, H]`` float64 symmetric matrix in ``[0, 1]`` with a zero diagonal.

    Raises:
        ValueError: ``p`` is not 2-D, has negative or non-finite entries, or a row does not
            sum to 1 (tolerance 1e-6).
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"jensen_shannon: expected [H, n] distributions, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("jensen_shannon: distributions must be finite and non-negative")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
    if len(bad):
        raise ValueError(f"jensen_shannon: rows {bad[:10].tolist()} do not sum to 1 (sums {sums[bad[:10]].tolist()})")
    n_rows, width = p.shape
    own = -_plogp(p).sum(axis=1)  # [H] entropy of each row
    result = np.empty((n_rows, n_rows), dtype=np.float64)
    block = max(1, _BLOCK_ELEMENTS // max(n_rows * width, 1))
    for start in range(0, n_rows, block):
        rows = p[start:start + block]
        mixture = 0.5 * (rows[:, None, :] + p[None, :, :])  # [b, H, n]
        mixed = -_plogp(mixture).sum(axis=2)
        result[start:start + block] = mixed - 0.5 * (own[start:start + block, None] + own[None, :])
    np.clip(result, 0.0, 1.0, out=result)
    np.fill_diagonal(result, 0.0)
    return result


#: most hospitals whose pairs :func:`hospital_divergence_summary` compares (beyond: a seeded sample)
MAX_SUMMARY_HOSPITALS = 1000


def hospital_divergence_summary(data: EHRData, n_hospitals: int | None = None) -> dict[str, Any]:
    """Mean, median, min and max pairwise JSD (bits) between hospitals' prescription distributions.

    Hospital indices without visits are left out (counted in ``skipped_hospitals``). With more
    than :data:`MAX_SUMMARY_HOSPITALS` hospitals the statistics are over the pairs of a seeded
    random sample of that many (``sampled_hospitals``), so the cost stays bounded.

    Args:
        data: data with a ``hospital`` index per visit.
        n_hospitals: number of hospital indices (None: ``max(data.hospital) + 1``).

    Returns:
        ``{"n_hospitals", "skipped_hospitals", "n_pairs", "mean", "median", "min", "max",
        "base"}``; the statistics are over the ``n_pairs = H (H - 1) / 2`` unordered pairs of
        distinct hospitals, None when fewer than two hospitals have visits. ``base`` is 2.

    Raises:
        ValueError: the data has no hospital column.
    """
    counts = prescription_counts(data, n_hospitals).astype(np.float64)
    totals = counts.sum(axis=1)
    distributions = counts[totals > 0] / totals[totals > 0, None]
    kept = len(distributions)
    summary: dict[str, Any] = {
        "n_hospitals": kept, "skipped_hospitals": len(counts) - kept,
        "n_pairs": kept * (kept - 1) // 2, "base": 2,
        "mean": None, "median": None, "min": None, "max": None,
    }
    if kept > MAX_SUMMARY_HOSPITALS:  # the pairs grow quadratically: summarise a fixed random sample
        chosen = np.sort(np.random.default_rng(0).choice(kept, MAX_SUMMARY_HOSPITALS, replace=False))
        distributions = distributions[chosen]
        kept = MAX_SUMMARY_HOSPITALS
        summary.update(sampled_hospitals=kept, n_pairs=kept * (kept - 1) // 2)
    if kept < 2:
        return summary
    upper = jensen_shannon(distributions)[np.triu_indices(kept, k=1)]
    summary.update(mean=float(upper.mean()), median=float(np.median(upper)),
                   min=float(upper.min()), max=float(upper.max()))
    return summary
