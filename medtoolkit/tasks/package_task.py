"""Drug package recommendation as a task: choose one training package per test visit.

The ``package_recommendation`` task (DPR, Zheng et al.) keeps the splits, the schema and
the training loop of :class:`~medtoolkit.tasks.medication.MedicationRecommendationTask`;
only the test prediction differs. For every test visit:

1. The recommender's per-drug probabilities ``p`` ``[n_drugs]`` are computed as in the
   medication task (:meth:`~medtoolkit.components.base.Task.predict`).
2. The **packages** are the distinct medication sets of the split's **training** visits
   (:class:`~medtoolkit.tasks.packages.PackageIndex`; test and validation visits never add
   a package). The index is built lazily per split and cached on the task.
3. The **candidates** of the visit are the packages of its ``k_neighbours`` nearest training
   patients by cosine similarity (:func:`~medtoolkit.tasks.packages.nearest_patients`,
   :func:`~medtoolkit.tasks.packages.candidate_packages`). The patient embedding is, until a
   fitted one (such as NCF) exists, the multi-hot of diagnoses and procedures: for the query,
   the test visit's own multi-hot; for a training patient, the mean of its visits'
   multi-hots; both L2-normalised (cosine similarity).
4. The **chosen** package is the candidate with the highest Bernoulli log-likelihood under
   ``p`` (``scoring: likelihood``)::

       sum_{d in package} log p_d + sum_{d not in package} log (1 - p_d)

   with ``p`` clipped to ``[1e-6, 1 - 1e-6]``; ties go to the lower package id.

The returned :class:`~medtoolkit.training.predict.Predictions` hold the chosen package as
0/1 floats in ``probabilities``, so evaluation at any threshold in ``(0, 1)`` scores exactly
the chosen set: Jaccard, precision, recall and F1 are the paper's per-visit package metrics
(the same numbers as :func:`~medtoolkit.tasks.packages.package_scores`), DDI rate and the
average number of drugs are those of the chosen packages, and PR-AUC is that of a 0/1
score (not informative). :meth:`PackageRecommendationTask.evaluate` adds a ``"packages"``
entry: ``k_neighbours``, the mean number of candidates per test visit, the share of test
visits whose true medication set is among their candidates (an upper bound on exact hits)
and the number of training packages.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from medtoolkit.components.schema import DataSchema
from medtoolkit.config import EvalParams
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.tasks.medication import MedicationRecommendationTask, Split, visits_of
from medtoolkit.tasks.packages import PackageIndex, candidate_packages, nearest_patients

if TYPE_CHECKING:
    import torch

    from medtoolkit.components.base import Recommender
    from medtoolkit.training.predict import Predictions

_BLOCK_VISITS = 4096  # test visits (or training visits) per vectorised block
_CLIP = 1e-6


def _patient_features(data: EHRData, visits: np.ndarray) -> np.ndarray:
    """``[len(visits), n_diagnoses + n_procedures]`` float32 multi-hot of diagnoses and procedures."""
    return np.concatenate([data.multi_hot(DIAGNOSES, visits), data.multi_hot(PROCEDURES, visits)], axis=1)


def training_embeddings(data: EHRData, patients: np.ndarray) -> np.ndarray:
    """Mean diagnosis+procedure multi-hot of each patient's visits (the default patient embedding).

    Args:
        data: the dataset.
        patients: ``[U]`` patient indices, each with at least one visit.

    Returns:
        ``[U, n_diagnoses + n_procedures]`` float64, computed over blocks of patients (no
        Python loop over visits or patients).
    """
    patients = np.asarray(patients, dtype=np.int64)
    width = len(data.vocabularies[DIAGNOSES]) + len(data.vocabularies[PROCEDURES])
    out = np.zeros((len(patients), width), dtype=np.float64)
    lengths = data.visits_per_patient[patients].astype(np.int64)
    start = 0
    while start < len(patients):
        # as many patients as fit in a block of visits (at least one)
        cumulative = np.cumsum(lengths[start:])
        stop = start + max(1, int(np.searchsorted(cumulative, _BLOCK_VISITS, side="right")))
        block_patients = patients[start:stop]
        block_lengths = lengths[start:stop]
        features = _patient_features(data, visits_of(data, block_patients))
        # a patient's visits are consecutive rows: sum them with reduceat (patients without
        # a visit keep a zero embedding)
        has_visits = block_lengths > 0
        if has_visits.any():
            starts = (np.cumsum(block_lengths) - block_lengths)[has_visits]
            sums = np.add.reduceat(features.astype(np.float64), starts, axis=0)
            out[start:stop][has_visits] = sums / block_lengths[has_visits][:, None]
        start = stop
    return out


def choose_by_likelihood(
    probabilities: np.ndarray,
    packages: np.ndarray,
    offsets: np.ndarray,
    package_ids: np.ndarray,
) -> np.ndarray:
    """The candidate with the highest Bernoulli log-likelihood for each visit.

    Args:
        probabilities: ``[Q, n_drugs]`` per-drug probabilities of the visits.
        packages: ``[P, n_drugs]`` bool packages.
        offsets: ``[Q + 1]`` CSR offsets of the candidates (every visit has at least one).
        package_ids: ``[offsets[-1]]`` candidate package ids.

    Returns:
        ``[Q]`` int64 chosen package ids; among equal log-likelihoods the first candidate
        (the lower package id when candidates are ascending).
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _CLIP, 1.0 - _CLIP)
    log_absent = np.log1p(-p)
    log_odds = np.log(p) - log_absent
    base = log_absent.sum(axis=1)
    lengths = np.diff(offsets)
    if (lengths < 1).any():
        raise ValueError("every visit needs at least one candidate package")
    owner = np.repeat(np.arange(len(p), dtype=np.int64), lengths)
    # log L = sum_d log(1 - p_d) + sum_{d in package} log(p_d / (1 - p_d))
    scores = base[owner] + np.einsum("ij,ij->i", packages[package_ids].astype(np.float64), log_odds[owner])
    best = np.maximum.reduceat(scores, offsets[:-1])
    position = np.where(scores == best[owner], np.arange(len(scores)), len(scores))
    first = np.minimum.reduceat(position, offsets[:-1])
    return package_ids[first]


class PackageRecommendationTask(MedicationRecommendationTask):
    """Recommend one whole training package per test visit (DPR's task).

    Splits, schema, training and validation are those of the medication task; test
    prediction chooses, for every test visit, the most likely package among those of its
    nearest training patients and reports it as 0/1 scores (see the module docstring).
    """

    class Params(MedicationRecommendationTask.Params):
        """The medication task's parameters plus the candidate step.

        Attributes:
            k_neighbours: nearest training patients whose packages are the candidates of a
                test visit (the paper's K = 10); at most the number of training patients.
            scoring: how a candidate is scored: ``"likelihood"``, the Bernoulli
                log-likelihood of the package under the model's per-drug probabilities.
        """

        k_neighbours: int = Field(10, ge=1, description="nearest training patients giving the candidate packages")
        scoring: Literal["likelihood"] = Field(
            "likelihood", description="'likelihood': Bernoulli log-likelihood of the package under the model"
        )

    params: "PackageRecommendationTask.Params"

    def __init__(self, params: Any = None, schema: DataSchema | None = None) -> None:
        super().__init__(params, schema)
        self._indexes: dict[int, tuple[Split, PackageIndex, np.ndarray]] = {}
        self._reset_stats()

    def _reset_stats(self) -> None:
        self._stats: dict[str, Any] = {"visits": 0, "candidates": 0, "true_among": 0, "n_train_packages": None}

    def package_index(self, data: EHRData, split: Split) -> tuple[PackageIndex, np.ndarray]:
        """The package index of ``split``'s training visits and its patients' embeddings (cached per split).

        Returns:
            ``(index, keys)``: the :class:`PackageIndex` and ``[U, D]`` float64 embeddings of
            ``index.patients`` in that order.
        """
        cached = self._indexes.get(id(split))
        if cached is not None and cached[0] is split:
            return cached[1], cached[2]
        train_visits = visits_of(data, split.train)
        owners = np.repeat(split.train, data.visits_per_patient[split.train])
        medications = np.concatenate(
            [data.multi_hot(MEDICATIONS, train_visits[s:s + _BLOCK_VISITS]) > 0
             for s in range(0, len(train_visits), _BLOCK_VISITS)]
        ) if len(train_visits) else np.zeros((0, data.n_drugs), dtype=bool)
        index = PackageIndex.from_visits(medications, owners)
        keys = training_embeddings(data, index.patients)
        self._indexes[id(split)] = (split, index, keys)
        return index, keys

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        model: "Recommender",
        data: EHRData,
        split: Split,
        patients: np.ndarray,
        batch_size: int,
        device: "torch.device",
    ) -> "Predictions":
        """The chosen package of every test visit, as 0/1 scores.

        Runs the default per-drug prediction, then :meth:`choose_packages` with the
        packages and neighbours of ``split``'s training part.

        Returns:
            :class:`~medtoolkit.training.predict.Predictions` whose ``probabilities`` are
            the chosen packages as 0/1 float32 (any threshold in ``(0, 1)`` recovers the
            chosen sets); targets, patients, positions and hospitals as the default gives.

        Raises:
            ValueError: ``task.k_neighbours`` exceeds the split's training patients, or some
                ``patients`` are training patients of ``split``.
        """
        predictions = super().predict(model, data, split, patients, batch_size, device)
        return self.choose_packages(predictions, data, split)

    def choose_packages(self, predictions: "Predictions", data: EHRData, split: Split) -> "Predictions":
        """Replace per-drug probabilities by the chosen training package of each visit.

        Args:
            predictions: per-drug predictions of test visits of ``split``.
            data: the dataset.
            split: the split whose training visits give the packages and the neighbours.

        Returns:
            the same predictions with ``probabilities`` the chosen packages (0/1 float32).
            The candidate statistics are added to what :meth:`evaluate` reports next.

        Raises:
            ValueError: ``task.k_neighbours`` exceeds the number of training patients, or a
                predicted visit belongs to a training patient.
        """
        owners = np.asarray(predictions.visit_patient, dtype=np.int64)
        if np.isin(owners, split.train).any():
            raise ValueError(f"split {split.name!r}: packages are chosen for test visits, but some visits "
                             f"belong to training patients")
        index, keys = self.package_index(data, split)
        k = self.params.k_neighbours
        if k > index.n_patients:
            raise ValueError(f"task.k_neighbours = {k} exceeds the {index.n_patients} training patients with "
                             f"visits of split {split.name!r}; lower task.k_neighbours")
        visits = data.visit_offsets[owners] + np.asarray(predictions.visit_position, dtype=np.int64)
        probabilities = np.asarray(predictions.probabilities)
        truth = index.package_of(np.asarray(predictions.targets, dtype=bool)) if len(visits) else np.zeros(0, int)
        chosen = np.empty(len(visits), dtype=np.int64)
        n_candidates = 0
        true_among = 0
        for start in range(0, len(visits), _BLOCK_VISITS):
            stop = start + _BLOCK_VISITS
            query = _patient_features(data, visits[start:stop])
            neighbours = nearest_patients(query, keys, k)
            offsets, package_ids = candidate_packages(index, neighbours)
            chosen[start:stop] = choose_by_likelihood(probabilities[start:stop], index.packages, offsets,
                                                      package_ids)
            owner = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
            true_among += int(np.unique(owner[package_ids == truth[start:stop][owner]]).size)
            n_candidates += int(offsets[-1])
        stats = self._stats
        stats["visits"] += len(visits)
        stats["candidates"] += n_candidates
        stats["true_among"] += true_among
        stats["n_train_packages"] = index.n_packages
        return dataclasses.replace(predictions, probabilities=index.packages[chosen].astype(np.float32))

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        probabilities: np.ndarray,
        targets: np.ndarray,
        visit_patient: np.ndarray,
        schema: DataSchema,
        eval_params: EvalParams | None = None,
        visit_group: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """The medication task's evaluation of the chosen packages, plus ``"packages"``.

        ``result["packages"]`` (present when :meth:`predict` ran since the last evaluation):
        ``{"k_neighbours", "mean_candidates", "true_set_among_candidates",
        "n_train_packages"}``, over all visits predicted since then (the units of a stage
        together).
        """
        result = super().evaluate(probabilities, targets, visit_patient, schema, eval_params, visit_group)
        stats = self._stats
        if stats["n_train_packages"] is not None:
            n = stats["visits"]
            result["packages"] = {
                "k_neighbours": self.params.k_neighbours,
                "mean_candidates": stats["candidates"] / n if n else float("nan"),
                "true_set_among_candidates": stats["true_among"] / n if n else float("nan"),
                "n_train_packages": int(stats["n_train_packages"]),
            }
            self._reset_stats()
        return result
