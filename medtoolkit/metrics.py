"""Metrics of medication recommendation: per-visit scores, aggregation and the bootstrap.

Pure numpy and vectorised over visits (large inputs are processed in row blocks to bound
memory; there is no Python loop over visits). Definitions follow the field's reference
code (``multi_label_metric`` / ``ddi_rate_score``), with its undefined cases made explicit.
For one visit with ground-truth set ``T`` and predicted set ``P``:

* Jaccard ``|P ∩ T| / |P ∪ T|`` (0 when the union is empty);
* precision ``|P ∩ T| / |P|`` (0 when nothing is predicted);
* recall ``|P ∩ T| / |T|`` (0 when the visit has no ground-truth drug);
* F1 ``2 p r / (p + r)`` of the two above (0 when ``p + r = 0``) - the papers' "F1";
* PRAUC: average precision of ranking the drugs *within the visit* (sklearn's
  ``average_precision_score`` on that visit's row), not a per-label PR-AUC;
* DDI: unordered predicted pairs ``i < j`` with ``A[i, j] = 1`` or ``A[j, i] = 1``.

Aggregation must name its averaging: ``"patient"`` (mean per patient, then mean over
patients; the neural papers) or ``"visit"`` (mean over visits; LR/ECC/TEMPT scripts).
The DDI rate and the average number of drugs are pooled ratios of sums in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

#: the aggregated metrics, in report order
METRICS: tuple[str, ...] = ("jaccard", "prauc", "f1", "precision", "recall", "ddi_rate", "avg_drugs")
#: per-visit metrics that are averaged (the others are pooled ratios of sums)
AVERAGED_METRICS: tuple[str, ...] = ("jaccard", "prauc", "f1", "precision", "recall")

Averaging = Literal["patient", "visit"]

_BLOCK_ROWS = 65_536  # rows per block: bounds temporary [rows, n_drugs] arrays


# ----------------------------------------------------------------------------- helpers
def _as_matrix(values: Any, name: str, dtype: type | None = None) -> np.ndarray:
    array = np.asarray(values) if dtype is None else np.asarray(values, dtype=dtype)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [visits, drugs] array, got shape {array.shape}")
    return array


def _check_same_shape(targets: np.ndarray, other: np.ndarray, other_name: str) -> None:
    if targets.shape != other.shape:
        raise ValueError(f"targets has shape {targets.shape} but {other_name} has shape {other.shape}")


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with 0.0 where the denominator is 0 (float64)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _check_averaging(averaging: str) -> None:
    if averaging not in ("patient", "visit"):
        raise ValueError(f"averaging must be 'patient' or 'visit', got {averaging!r}")


# ----------------------------------------------------------------------------- average precision
def _average_precision_block(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision of each row of a ``[n, D]`` block (see :func:`average_precision`)."""
    n_rows, n_drugs = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    sorted_targets = np.take_along_axis(targets, order, axis=1).astype(np.float64)

    true_positives = np.cumsum(sorted_targets, axis=1)  # tp count at each cut-off position
    # tied scores form one threshold: only the last position of each tie group is a cut-off
    group_end = np.ones((n_rows, n_drugs), dtype=bool)
    group_end[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]
    group_start = np.ones((n_rows, n_drugs), dtype=bool)
    group_start[:, 1:] = group_end[:, :-1]
    positions = np.arange(n_drugs)
    start_index = np.maximum.accumulate(np.where(group_start, positions, 0), axis=1)
    # true positives strictly before each group = those at the previous cut-off
    before_group = np.take_along_axis(true_positives - sorted_targets, start_index, axis=1)

    total = true_positives[:, -1:]
    recall = _safe_divide(true_positives, total)
    previous_recall = _safe_divide(before_group, total)
    precision = true_positives / (positions + 1.0)
    steps = np.where(group_end, (recall - previous_recall) * precision, 0.0)
    return np.maximum(steps.sum(axis=1), 0.0)


def average_precision(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-row average precision of ranking the drugs by score (the papers' "PRAUC").

    Equal to ``sklearn.metrics.average_precision_score(targets[i], scores[i])`` for every
    row, tied scores included (equal scores form a single threshold), up to floating-point
    summation order. A row without any positive target scores 0.0, as in sklearn.

    Args:
        targets: ``[N, D]`` bool (or 0/1) ground truth.
        scores: ``[N, D]`` float scores (probabilities or logits); must be finite.

    Returns:
        ``[N]`` float64 average precision per row.
    """
    target_matrix = _as_matrix(targets, "targets").astype(bool)
    score_matrix = _as_matrix(scores, "scores", dtype=np.float64)
    _check_same_shape(target_matrix, score_matrix, "scores")
    if score_matrix.shape[1] == 0:
        raise ValueError("average precision needs at least one drug column")
    if not np.isfinite(score_matrix).all():
        raise ValueError("scores contain NaN or infinite values")
    out = np.empty(score_matrix.shape[0], dtype=np.float64)
    for start in range(0, score_matrix.shape[0], _BLOCK_ROWS):
        stop = start + _BLOCK_ROWS
        out[start:stop] = _average_precision_block(target_matrix[start:stop], score_matrix[start:stop])
    return out


# ----------------------------------------------------------------------------- DDI
def _interaction_upper(ddi_adjacency: np.ndarray, n_drugs: int) -> np.ndarray:
    """Strict upper triangle of the symmetrised 0/1 adjacency (``A[i,j] or A[j,i]``), float64."""
    adjacency = np.asarray(ddi_adjacency)
    if adjacency.shape != (n_drugs, n_drugs):
        raise ValueError(f"ddi_adjacency has shape {adjacency.shape}, expected ({n_drugs}, {n_drugs})")
    interacting = (adjacency != 0) | (adjacency.T != 0)
    return np.triu(interacting, k=1).astype(np.float64)


def pair_counts(predicted: np.ndarray, ddi_adjacency: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Interacting and total unordered pairs among each visit's predicted drugs.

    Args:
        predicted: ``[N, D]`` bool predicted sets.
        ddi_adjacency: ``[D, D]`` interaction matrix (nonzero = interacting; read
            symmetrically, the diagonal is ignored). None counts no interacting pair.

    Returns:
        ``(ddi_pairs, all_pairs)``, each ``[N]`` int64: pairs ``i < j`` with an interaction,
        and all pairs ``n (n - 1) / 2``.
    """
    matrix = _as_matrix(predicted, "predicted").astype(bool)
    n_predicted = matrix.sum(axis=1, dtype=np.int64)
    all_pairs = n_predicted * (n_predicted - 1) // 2
    ddi_pairs = np.zeros(matrix.shape[0], dtype=np.int64)
    if ddi_adjacency is None:
        return ddi_pairs, all_pairs
    upper = _interaction_upper(ddi_adjacency, matrix.shape[1])
    for start in range(0, matrix.shape[0], _BLOCK_ROWS):
        block = matrix[start:start + _BLOCK_ROWS].astype(np.float64)
        ddi_pairs[start:start + _BLOCK_ROWS] = np.rint(((block @ upper) * block).sum(axis=1)).astype(np.int64)
    return ddi_pairs, all_pairs


def ddi_rate(predicted: np.ndarray, ddi_adjacency: np.ndarray | None) -> float | None:
    """Pooled DDI rate: interacting predicted pairs over all predicted pairs, over all visits.

    A ratio of sums (visits with fewer than two drugs contribute nothing), as in the
    reference ``ddi_rate_score``; 0.0 when there is no pair at all.

    Args:
        predicted: ``[N, D]`` bool predicted (or ground-truth) sets.
        ddi_adjacency: ``[D, D]`` interaction matrix; None when the dataset has none.

    Returns:
        the rate in [0, 1]; None (not available) without a DDI matrix.
    """
    if ddi_adjacency is None:
        return None
    interacting, total = pair_counts(predicted, ddi_adjacency)
    denominator = int(total.sum())
    return float(interacting.sum() / denominator) if denominator else 0.0


# ----------------------------------------------------------------------------- per-visit scores
@dataclass(frozen=True)
class VisitScores:
    """Per-visit scores; every attribute is an ``[N]`` array over the same visits.

    Attributes:
        jaccard: ``|P ∩ T| / |P ∪ T|`` (0 when the union is empty).
        precision: ``|P ∩ T| / |P|`` (0 when nothing is predicted).
        recall: ``|P ∩ T| / |T|`` (0 when the visit has no target drug).
        f1: ``2pr / (p + r)`` (0 when ``p + r = 0``).
        prauc: average precision of the visit's drug ranking.
        n_predicted: number of predicted drugs ``|P|`` (int64).
        ddi_pairs: interacting unordered pairs among predicted drugs (int64); None when
            the dataset has no DDI matrix (the DDI rate is then not available).
        all_pairs: all unordered pairs among predicted drugs (int64).
    """

    jaccard: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    prauc: np.ndarray
    n_predicted: np.ndarray
    ddi_pairs: np.ndarray | None
    all_pairs: np.ndarray

    def __post_init__(self) -> None:
        lengths = {item.name: np.shape(getattr(self, item.name)) for item in fields(self)
                   if getattr(self, item.name) is not None or item.name != "ddi_pairs"}
        if len(set(lengths.values())) != 1 or len(next(iter(lengths.values()))) != 1:
            raise ValueError(f"VisitScores fields must be 1-D arrays of one length, got {lengths}")

    def __len__(self) -> int:
        return int(self.jaccard.shape[0])

    def take(self, visits: np.ndarray) -> "VisitScores":
        """Scores of a subset (or re-ordering, with repeats) of the visits."""
        index = np.asarray(visits, dtype=np.int64)
        return VisitScores(**{
            item.name: None if getattr(self, item.name) is None else getattr(self, item.name)[index]
            for item in fields(self)
        })


def score_visits(
    targets: np.ndarray,
    probabilities: np.ndarray,
    threshold: float = 0.5,
    ddi_adjacency: np.ndarray | None = None,
) -> VisitScores:
    """Score every visit: the predicted set is ``probabilities >= threshold``.

    Args:
        targets: ``[N, D]`` bool (or 0/1) ground-truth medications.
        probabilities: ``[N, D]`` float predicted probabilities (also ranked for PRAUC).
        threshold: a drug is recommended when its probability is ``>= threshold``.
        ddi_adjacency: ``[D, D]`` interaction matrix; None (the dataset has none) leaves
            ``ddi_pairs`` None, so the DDI rate is reported as not available.

    Returns:
        the per-visit :class:`VisitScores`.
    """
    truth = _as_matrix(targets, "targets").astype(bool)
    probs = _as_matrix(probabilities, "probabilities", dtype=np.float64)
    _check_same_shape(truth, probs, "probabilities")
    predicted = probs >= threshold

    n_predicted = predicted.sum(axis=1, dtype=np.int64)
    n_true = truth.sum(axis=1, dtype=np.int64)
    overlap = (predicted & truth).sum(axis=1, dtype=np.int64)
    union = n_predicted + n_true - overlap

    precision = _safe_divide(overlap, n_predicted)
    recall = _safe_divide(overlap, n_true)
    f1 = _safe_divide(2.0 * precision * recall, precision + recall)
    ddi_pairs: np.ndarray | None
    ddi_pairs, all_pairs = pair_counts(predicted, ddi_adjacency)
    if ddi_adjacency is None:
        ddi_pairs = None
    return VisitScores(
        jaccard=_safe_divide(overlap, union),
        precision=precision,
        recall=recall,
        f1=f1,
        prauc=average_precision(truth, probs),
        n_predicted=n_predicted,
        ddi_pairs=ddi_pairs,
        all_pairs=all_pairs,
    )


# ----------------------------------------------------------------------------- aggregation
@dataclass(frozen=True)
class _PatientTable:
    """Per-patient sums of the per-visit scores (rows follow ``patients``, sorted ids)."""

    patients: np.ndarray  # [P] patient ids
    sums: np.ndarray  # [P, len(AVERAGED_METRICS)] weighted sums of the averaged metrics
    visits: np.ndarray  # [P] weighted visit counts
    ddi_pairs: np.ndarray | None  # [P]; None without a DDI matrix
    all_pairs: np.ndarray  # [P]
    n_predicted: np.ndarray  # [P]


def _patient_table(scores: VisitScores, visit_patient: np.ndarray, visit_weight: np.ndarray) -> _PatientTable:
    owners = np.asarray(visit_patient)
    if owners.shape != (len(scores),):
        raise ValueError(f"visit_patient has shape {owners.shape}, expected ({len(scores)},)")
    patients, row = np.unique(owners, return_inverse=True)
    n_patients = len(patients)

    def per_patient(values: np.ndarray) -> np.ndarray:
        return np.bincount(row, weights=visit_weight * np.asarray(values, dtype=np.float64), minlength=n_patients)

    return _PatientTable(
        patients=patients,
        sums=np.stack([per_patient(getattr(scores, m)) for m in AVERAGED_METRICS], axis=1),
        visits=np.bincount(row, weights=visit_weight, minlength=n_patients),
        ddi_pairs=None if scores.ddi_pairs is None else per_patient(scores.ddi_pairs),
        all_pairs=per_patient(scores.all_pairs),
        n_predicted=per_patient(scores.n_predicted),
    )


def _combine(table: _PatientTable, patient_weight: np.ndarray, averaging: str) -> dict[str, np.ndarray | None]:
    """Aggregate for several weightings of the patients at once.

    Args:
        table: per-patient sums.
        patient_weight: ``[R, P]`` how often each patient counts in each of R aggregations.
        averaging: ``"patient"`` or ``"visit"``.

    Returns:
        ``{metric: [R]}``; NaN for averaged metrics when no visit is covered; ``ddi_rate``
        is None without a DDI matrix.
    """
    present = table.visits > 0
    weight = np.where(present[None, :], patient_weight, 0.0)
    if averaging == "patient":
        patient_means = table.sums / np.where(present, table.visits, 1.0)[:, None]
        numerator, denominator = weight @ patient_means, weight.sum(axis=1)
    else:
        numerator, denominator = weight @ table.sums, weight @ table.visits
    with np.errstate(invalid="ignore", divide="ignore"):
        averaged = numerator / denominator[:, None]
        avg_drugs = (weight @ table.n_predicted) / (weight @ table.visits)
    out: dict[str, np.ndarray | None] = {metric: averaged[:, k] for k, metric in enumerate(AVERAGED_METRICS)}
    out["ddi_rate"] = (None if table.ddi_pairs is None
                       else _safe_divide(weight @ table.ddi_pairs, weight @ table.all_pairs))
    out["avg_drugs"] = avg_drugs
    return {metric: out[metric] for metric in METRICS}


def aggregate(
    scores: VisitScores,
    visit_patient: np.ndarray,
    averaging: Averaging = "patient",
    visits: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Aggregate per-visit scores into one number per metric.

    Args:
        scores: per-visit scores of N visits.
        visit_patient: ``[N]`` patient id of each visit (any integers).
        averaging: ``"patient"``: mean over each patient's visits, then mean over patients
            (the neural papers); ``"visit"``: mean over visits. ``ddi_rate`` and
            ``avg_drugs`` are pooled ratios of sums in both modes.
        visits: optional index array of the visits to include (a repeated index counts
            that visit again); default all visits.

    Returns:
        ``{metric: value}`` for :data:`METRICS`; averaged metrics are NaN and
        ``ddi_rate`` is 0.0 when no visit is selected; ``ddi_rate`` is None (not
        available) when the scores were computed without a DDI matrix.
    """
    _check_averaging(averaging)
    if visits is None:
        visit_weight = np.ones(len(scores), dtype=np.float64)
    else:
        visit_weight = np.bincount(np.asarray(visits, dtype=np.int64), minlength=len(scores)).astype(np.float64)
        if len(visit_weight) != len(scores):
            raise ValueError(f"visits index out of range for {len(scores)} visits")
    table = _patient_table(scores, visit_patient, visit_weight)
    combined = _combine(table, np.ones((1, len(table.patients))), averaging)
    return {metric: None if values is None else float(values[0]) for metric, values in combined.items()}


def bootstrap(
    scores: VisitScores,
    visit_patient: np.ndarray,
    rounds: int = 10,
    fraction: float = 0.8,
    seed: int = 2048,
    averaging: Averaging = "patient",
) -> dict[str, Any]:
    """Bootstrap over patients: mean and std of the aggregated metrics over rounds.

    Each round draws ``round(fraction * n_patients)`` patients (at least one) uniformly
    **with replacement** - a patient drawn twice counts twice, with all of its visits -
    and aggregates them with :func:`aggregate`'s rules. Patients are taken in ascending
    id order and drawn with ``numpy.random.RandomState(seed).choice`` round after round,
    i.e. the same draws as the reference scripts' ``np.random.seed(seed)`` followed by
    ``np.random.choice(test_patients, size, replace=True)`` when ids follow file order.

    Args:
        scores: per-visit scores of N visits.
        visit_patient: ``[N]`` patient id of each visit.
        rounds: number of rounds; 0 scores the full set once (std 0.0).
        fraction: share of the patients drawn per round, in (0, 1].
        seed: seed of the draws.
        averaging: ``"patient"`` or ``"visit"`` (see :func:`aggregate`).

    Returns:
        ``{metric: {"mean": m, "std": s}}`` for :data:`METRICS` (std is numpy's, ddof=0)
        and ``"rounds"``: a list with one ``{metric: value}`` dict per round (empty when
        ``rounds`` is 0). Without a DDI matrix ``ddi_rate`` is ``{"mean": None, "std": None}``
        and None in every round.
    """
    _check_averaging(averaging)
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    table = _patient_table(scores, visit_patient, np.ones(len(scores), dtype=np.float64))
    n_patients = len(table.patients)
    if rounds == 0 or n_patients == 0:
        combined = _combine(table, np.ones((1, n_patients)), averaging)
        result: dict[str, Any] = {
            metric: {"mean": None, "std": None} if values is None else {"mean": float(values[0]), "std": 0.0}
            for metric, values in combined.items()
        }
        result["rounds"] = []
        return result

    size = max(1, int(round(fraction * n_patients)))
    generator = np.random.RandomState(seed)
    weights = np.stack(
        [np.bincount(generator.choice(n_patients, size=size, replace=True), minlength=n_patients)
         for _ in range(rounds)]
    ).astype(np.float64)
    combined = _combine(table, weights, averaging)
    result = {
        metric: {"mean": None, "std": None} if values is None
        else {"mean": float(np.mean(values)), "std": float(np.std(values))}
        for metric, values in combined.items()
    }
    result["rounds"] = [
        {metric: None if combined[metric] is None else float(combined[metric][r]) for metric in METRICS}
        for r in range(rounds)
    ]
    return result
