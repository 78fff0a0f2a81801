"""Grouped evaluation: metrics per hospital and averaged per hospital-size bin.

The TEMPT paper (Table 7) scores every hospital on its own test records, then averages
the hospitals' values inside size groups: *small* (``r <= 1000`` records), *medium*
(``1000 < r <= 2000``) and *large* (``r > 2000``), and over all hospitals. A hospital's
size ``r`` is its number of records in the (prepared) data
(:attr:`~medtoolkit.components.schema.DataSchema.hospital_sizes`), not in the test set.

Per hospital the metrics are visit averages over its test visits (Jaccard, PRAUC, F1,
precision, recall and the number of predicted drugs); the DDI rate is the pooled ratio of
interacting pairs over all predicted pairs of its visits, as everywhere in
:mod:`medtoolkit.metrics`. No bootstrap per hospital. A bin's value is the plain mean over
its hospitals (each hospital counts once, whatever its size).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medtoolkit.metrics import AVERAGED_METRICS, METRICS, VisitScores

#: bin names when there are exactly three bins (two bounds), as in the paper
THREE_BIN_NAMES = ("small", "medium", "large")
#: the entry of ``per_bin`` that averages over every hospital
ALL = "all"
#: the one bin when ``eval.group_bins`` is empty
ANY = "any"


def check_bins(bins: Sequence[int]) -> list[int]:
    """The bin bounds as ints; they must be positive and strictly increasing.

    Args:
        bins: upper bounds (inclusive) of all bins but the last (open) one.

    Raises:
        ValueError: a bound is below 1 or the bounds do not increase (the message names
            ``eval.group_bins``).
    """
    bounds = [int(b) for b in bins]
    if any(b < 1 for b in bounds) or any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ValueError(f"eval.group_bins must be positive and strictly increasing, got {list(bins)}")
    return bounds


def bin_bounds(bins: Sequence[int]) -> list[str]:
    """The size range of each bin as text: ``[1000, 2000]`` -> ``["<=1000", "1001-2000", ">2000"]``.

    Args:
        bins: upper bounds (inclusive) of all bins but the last; may be empty (one bin,
            ``"any"``).

    Returns:
        ``len(bins) + 1`` texts.
    """
    bounds = check_bins(bins)
    if not bounds:
        return [ANY]
    texts = [f"<={bounds[0]}"]
    for low, high in zip(bounds, bounds[1:]):
        texts.append(str(high) if low + 1 == high else f"{low + 1}-{high}")
    texts.append(f">{bounds[-1]}")
    return texts


def bin_names(bins: Sequence[int]) -> list[str]:
    """The name of each bin: small/medium/large for exactly three bins, else the bounds text.

    Args:
        bins: upper bounds (inclusive) of all bins but the last.

    Returns:
        ``len(bins) + 1`` names.
    """
    texts = bin_bounds(bins)
    return list(THREE_BIN_NAMES) if len(texts) == len(THREE_BIN_NAMES) else texts


def assign_bins(sizes: np.ndarray, bins: Sequence[int]) -> np.ndarray:
    """The bin of each size: bin ``k`` holds sizes in ``(bins[k-1], bins[k]]``; the last is open.

    Args:
        sizes: ``[H]`` record counts.
        bins: upper bounds (inclusive) of all bins but the last.

    Returns:
        ``[H]`` int64 bin indices in ``[0, len(bins)]``.
    """
    return np.searchsorted(np.asarray(check_bins(bins), dtype=np.int64), np.asarray(sizes), side="left").astype(
        np.int64
    )


def per_hospital_metrics(scores: VisitScores, visit_group: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Visit-averaged metrics of each hospital that has visits (vectorised).

    Args:
        scores: per-visit scores of N visits.
        visit_group: ``[N]`` hospital index of each visit.

    Returns:
        ``(hospitals, n_visits, values)``: ``[G]`` ascending hospital indices present,
        ``[G]`` their visit counts, and ``{metric: [G] float64 or None}`` for
        :data:`~medtoolkit.metrics.METRICS` (``ddi_rate`` None without a DDI matrix).
    """
    groups = np.asarray(visit_group, dtype=np.int64)
    if groups.shape != (len(scores),):
        raise ValueError(f"visit_group has shape {groups.shape}, expected ({len(scores)},)")
    hospitals, row, counts = np.unique(groups, return_inverse=True, return_counts=True)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(row, weights=np.asarray(values, dtype=np.float64), minlength=len(hospitals))

    values: dict[str, np.ndarray | None] = {m: total(getattr(scores, m)) / counts for m in AVERAGED_METRICS}
    values["avg_drugs"] = total(scores.n_predicted) / counts
    if scores.ddi_pairs is None:
        values["ddi_rate"] = None
    else:
        pairs = total(scores.all_pairs)
        values["ddi_rate"] = np.divide(total(scores.ddi_pairs), pairs, out=np.zeros_like(pairs), where=pairs > 0)
    return hospitals, counts.astype(np.int64), {m: values[m] for m in METRICS}


def group_scores(
    scores: VisitScores,
    visit_group: np.ndarray,
    hospital_sizes: np.ndarray,
    bins: Sequence[int],
    hospital_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """Metrics per hospital with test visits, and their means per size bin and over all hospitals.

    Args:
        scores: per-visit scores of the N test visits (:func:`medtoolkit.metrics.score_visits`).
        visit_group: ``[N]`` hospital index of each visit.
        hospital_sizes: ``[n_hospitals]`` records of each hospital in the data.
        bins: upper bounds (inclusive) of the size bins but the last (``eval.group_bins``).
        hospital_ids: original id per hospital index (empty: the index, as text, names it).

    Returns:
        ``{"by": "hospital", "bins": [...], "per_group": {id: {"index", "size", "n_test",
        metric: value}}, "per_bin": {name: {"bounds", "hospitals", metric: mean}}}``; a
        bin without hospitals has ``hospitals`` 0 and None values; ``ddi_rate`` is None
        everywhere without a DDI matrix. ``per_bin`` ends with ``"all"``.

    Raises:
        ValueError: a visit's hospital index is outside ``hospital_sizes``, or bad bins.
    """
    bounds = check_bins(bins)
    sizes = np.asarray(hospital_sizes, dtype=np.int64)
    hospitals, n_test, values = per_hospital_metrics(scores, visit_group)
    if len(hospitals) and (hospitals[0] < 0 or hospitals[-1] >= len(sizes)):
        raise ValueError(
            f"visit_group holds hospital indices outside [0, {len(sizes)}) of the schema's hospital_sizes"
        )
    names = [str(hospital_ids[h]) if len(hospital_ids) == len(sizes) else str(h) for h in hospitals]
    group_size = sizes[hospitals]
    per_group: dict[str, dict[str, Any]] = {}
    for position, (name, index) in enumerate(zip(names, hospitals)):
        entry: dict[str, Any] = {"index": int(index), "size": int(group_size[position]),
                                 "n_test": int(n_test[position])}
        for metric, column in values.items():
            entry[metric] = None if column is None else float(column[position])
        per_group[name] = entry

    which = assign_bins(group_size, bounds)
    per_bin: dict[str, dict[str, Any]] = {}
    members = [which == k for k in range(len(bounds) + 1)] + [np.ones(len(hospitals), dtype=bool)]
    for name, text, chosen in zip(bin_names(bounds) + [ALL], bin_bounds(bounds) + [ALL], members):
        entry = {"bounds": text, "hospitals": int(chosen.sum())}
        for metric, column in values.items():
            entry[metric] = None if column is None or not chosen.any() else float(column[chosen].mean())
        per_bin[name] = entry
    return {"by": "hospital", "bins": bounds, "per_group": per_group, "per_bin": per_bin}


def combine_groups(per_split: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``groups`` of several splits: each bin's values as ``{"mean", "std"}`` over splits.

    Args:
        per_split: the ``groups`` entries of the splits' test metrics (same bins).

    Returns:
        ``{"by", "bins", "per_bin": {name: {"bounds", "hospitals": {"mean", "std"},
        metric: {"mean", "std"}}}}`` (std: numpy's, ddof 0); a value missing (None) in
        some splits is left out of its mean; ``{"mean": None, "std": None}`` when missing
        in all. ``per_group`` is left out (each split keeps its own).
    """
    first = per_split[0]
    per_bin: dict[str, dict[str, Any]] = {}
    for name, entry in first["per_bin"].items():
        combined: dict[str, Any] = {"bounds": entry.get("bounds")}
        for key in ("hospitals", *METRICS):
            found = [g["per_bin"].get(name, {}).get(key) for g in per_split]
            present = [float(v) for v in found if v is not None]
            combined[key] = ({"mean": float(np.mean(present)), "std": float(np.std(present))} if present
                             else {"mean": None, "std": None})
        per_bin[name] = combined
    return {"by": first.get("by", "hospital"), "bins": list(first.get("bins", [])), "per_bin": per_bin}
