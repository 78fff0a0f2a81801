"""Batched inference: per-visit probabilities for a set of patients."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from medtoolkit.components.base import Recommender
from medtoolkit.data.batching import iterate_batches
from medtoolkit.data.ehr import EHRData


@dataclass
class Predictions:
    """Flattened per-visit predictions, in patient order then visit order.

    Attributes:
        probabilities: ``[V, n_drugs]`` float32.
        targets: ``[V, n_drugs]`` bool ground truth.
        visit_patient: ``[V]`` dataset patient index of each visit.
        visit_position: ``[V]`` position t of each visit within its patient (0 = first).
        visit_hospital: ``[V]`` hospital of each visit's sample: the hospital of the sample's
            first visit (with per-stay samples, the stay's own hospital), the hospital a
            ``repeat_per: hospital`` stage trains the sample under; None when the data has
            no hospitals.
    """

    probabilities: np.ndarray
    targets: np.ndarray
    visit_patient: np.ndarray
    visit_position: np.ndarray
    visit_hospital: np.ndarray | None = None


@torch.no_grad()
def predict(
    model: Recommender,
    data: EHRData,
    patients: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> Predictions:
    """Run ``model`` in eval mode over ``patients`` and gather real visits.

    Args:
        model: the recommender (moved to ``device`` by the caller).
        data: the dataset.
        patients: ``[P]`` patient indices.
        batch_size: patients per forward pass.
        device: where batches go.
    """
    was_training = model.training
    model.eval()
    probabilities, targets, owners, positions, hospitals = [], [], [], [], []
    for batch in iterate_batches(data, patients, batch_size, sort_by_length=False):
        batch = batch.to(device)
        probs = torch.sigmoid(model(batch).float())
        mask = batch.visit_mask
        probabilities.append(probs[mask].cpu().numpy())
        targets.append(batch.medications[mask].cpu().numpy() > 0)
        grid_patient = batch.patient_index[:, None].expand_as(mask)
        grid_position = torch.arange(mask.shape[1], device=mask.device)[None, :].expand_as(mask)
        owners.append(grid_patient[mask].cpu().numpy())
        positions.append(grid_position[mask].cpu().numpy())
        if batch.hospital is not None:
            # a patient belongs to the hospital of its first visit (as splits and units do)
            hospitals.append(batch.hospital[:, :1].expand_as(mask)[mask].cpu().numpy())
    model.train(was_training)
    n_drugs = data.n_drugs
    return Predictions(
        probabilities=np.concatenate(probabilities) if probabilities else np.zeros((0, n_drugs), np.float32),
        targets=np.concatenate(targets) if targets else np.zeros((0, n_drugs), bool),
        visit_patient=np.concatenate(owners) if owners else np.zeros(0, np.int64),
        visit_position=np.concatenate(positions) if positions else np.zeros(0, np.int64),
        visit_hospital=(np.concatenate(hospitals) if hospitals else np.zeros(0, np.int64))
        if data.hospital is not None else None,
    )


@torch.no_grad()
def embed_visits(
    model: Recommender,
    data: EHRData,
    patients: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor | None:
    """The model's visit embedding (:meth:`Recommender.visit_embedding`) of every visit of ``patients``.

    Args:
        model: the recommender (on ``device``); run in eval mode, its mode restored after.
        data: the dataset.
        patients: ``[P]`` patient indices.
        batch_size: patients per forward pass.
        device: where batches go.

    Returns:
        ``[V, D]`` float32 (on ``device``), the real visits in patient order then visit order
        (the order of :func:`predict` and of
        :func:`~medtoolkit.tasks.medication.visits_of`); None when the model has no visit
        embedding.

    Raises:
        ValueError: the embedding is not ``[B, T, D]``.
    """
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    try:
        for batch in iterate_batches(data, patients, batch_size, sort_by_length=False):
            batch = batch.to(device)
            embedding = model.visit_embedding(batch)
            if embedding is None:
                return None
            if embedding.dim() != 3 or tuple(embedding.shape[:2]) != tuple(batch.visit_mask.shape):
                raise ValueError(f"{type(model).__name__}.visit_embedding must return [B, T, D] = "
                                 f"[{batch.batch_size}, {batch.max_visits}, D], got {tuple(embedding.shape)}")
            chunks.append(embedding[batch.visit_mask].float())
    finally:
        model.train(was_training)
    if not chunks:
        return torch.zeros(0, 0, device=device)
    return torch.cat(chunks)


def merge_parts(parts: list[Predictions]) -> Predictions:
    """Concatenate the predictions of contiguous patient parts given in order.

    Args:
        parts: the parts' predictions (not empty), e.g. one per rank.

    Returns:
        one :class:`Predictions` in the parts' order (patient order when the parts were
        contiguous slices of one patient array).
    """
    hospitals = [part.visit_hospital for part in parts]
    return Predictions(
        probabilities=np.concatenate([part.probabilities for part in parts]),
        targets=np.concatenate([part.targets for part in parts]),
        visit_patient=np.concatenate([part.visit_patient for part in parts]),
        visit_position=np.concatenate([part.visit_position for part in parts]),
        visit_hospital=None if any(h is None for h in hospitals) else np.concatenate(hospitals),
    )


def predict_across_ranks(
    predict_part: Callable[[np.ndarray], Predictions], patients: np.ndarray, in_parts: bool = True,
) -> Predictions | None:
    """Predictions for ``patients`` computed by every rank on its share, gathered to rank 0.

    Under data parallelism (:mod:`medtoolkit.training.distributed`) rank r predicts the
    r-th of ``world_size`` contiguous parts of ``patients`` and rank 0 concatenates them in
    rank order (the patient order of a single call); with ``in_parts=False`` (a task whose
    predictions of a patient set are not the concatenation of its parts') rank 0 predicts
    every patient alone. In one process this is ``predict_part(patients)``.

    Args:
        predict_part: predictions of a (non-empty) patient array.
        patients: ``[P]`` patient indices.
        in_parts: whether the work may be shared between ranks.

    Returns:
        the predictions on rank 0 (or in one process); None on the other ranks.
    """
    from medtoolkit.training import distributed

    if not distributed.is_distributed():
        return predict_part(patients)
    if not in_parts:
        return predict_part(patients) if distributed.is_main() else None
    mine = np.array_split(np.asarray(patients), distributed.world_size())[distributed.rank()]
    gathered = distributed.gather_objects(predict_part(mine) if len(mine) else None)
    if gathered is None:
        return None
    parts = [part for part in gathered if part is not None]
    return merge_parts(parts) if parts else predict_part(patients[:0])
