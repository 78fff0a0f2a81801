"""Padded batches of whole patients: ``[B patients, T visits, L codes]`` with masks.

Code tensors hold vocabulary index **+ 1** so that 0 means padding
(``nn.Embedding(size + 1, dim, padding_idx=0)`` consumes them directly).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from medtoolkit.data.ehr import MEDICATIONS, EHRData, _gather_ranges


@dataclass
class PaddedBatch:
    """A batch of patients with every visit, padded.

    Attributes:
        codes: per vocabulary, ``[B, T, L_v]`` int64, vocabulary index + 1, 0 = padding.
        visit_mask: ``[B, T]`` bool, True for real visits.
        medications: ``[B, T, n_drugs]`` float32 multi-hot of each visit's prescriptions
            (the target of visit t; models may only read it at visits < t).
        patient_index: ``[B]`` int64 index of each patient in the dataset.
        hospital: ``[B, T]`` int64 hospital index per visit (0 when unknown), or None.
        items: task-supplied per-batch items by name (e.g. ``"package_graphs"``, added by
            the task's :meth:`~medtoolkit.components.base.Task.collate_fn`); tensors and
            objects with ``.to`` / ``.pin_memory`` (a ``torch_geometric`` ``Batch``) move with
            the batch, anything else is carried as is. Empty unless a recommender asked
            for items (:meth:`~medtoolkit.components.base.Recommender.batch_items_needed`).
    """

    codes: dict[str, torch.Tensor]
    visit_mask: torch.Tensor
    medications: torch.Tensor
    patient_index: torch.Tensor
    hospital: torch.Tensor | None = None
    items: dict[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.visit_mask.shape[0])

    @property
    def max_visits(self) -> int:
        return int(self.visit_mask.shape[1])

    @property
    def n_visits(self) -> int:
        """Number of real (unpadded) visits (the length of the cached :meth:`real_visit_rows`)."""
        return int(self.real_visit_rows().shape[0])

    def real_visit_rows(self) -> torch.Tensor:
        """Flat slots ``b * T + t`` of the real visits, row-major: ``[V]`` int64 on the mask's device.

        Computed once per batch (cached with the ``visit_mask`` it came from and that tensor's
        version counter: a mask that is replaced or changed in place is searched again).
        """
        mask = self.visit_mask
        cached = self.__dict__.get("_real_visit_rows")
        if cached is not None and cached[0] is mask and cached[1] == mask._version:
            return cached[2]
        rows = mask.reshape(-1).nonzero().squeeze(1)
        self.__dict__["_real_visit_rows"] = (mask, mask._version, rows)
        return rows

    def real_visits(self, values: torch.Tensor) -> torch.Tensor:
        """``values[visit_mask]`` for per-visit values ``[B, T, ...]``: ``[V, ...]``, row-major.

        The same rows as boolean indexing, gathered with the cached :meth:`real_visit_rows`
        (no search for the mask's true entries on every call). Inside :meth:`sharing_gathers`
        a gather of the same tensor is done once and shared.
        """
        rows = self.real_visit_rows()
        kept: list[tuple[Any, ...]] | None = self.__dict__.get("_shared_gathers")
        if kept is None or values.is_inference():  # inference tensors have no version counter to check
            return values.flatten(0, 1).index_select(0, rows)
        grad_mode = torch.is_grad_enabled()
        for source, version, mode, from_rows, result, result_version in kept:
            if (source is values and version == values._version and mode == grad_mode and from_rows is rows
                    and result_version == result._version):
                return result
        result = values.flatten(0, 1).index_select(0, rows)
        kept.append((values, values._version, grad_mode, rows, result, result._version))
        return result

    @contextlib.contextmanager
    def sharing_gathers(self) -> Iterator["PaddedBatch"]:
        """Within the block, :meth:`real_visits` of one tensor is gathered once and shared.

        Loss terms that read the same logits (and targets) then share one gather and one
        autograd node; the values are the same. A tensor changed in place since its gather
        (or a gathered result changed in place), or a change of gradient mode, gives a new
        gather. Leaving the block forgets the gathers, so a later pass over the same tensors
        (another objective, another backward pass) builds its own.
        """
        outer = self.__dict__.get("_shared_gathers")
        self.__dict__["_shared_gathers"] = [] if outer is None else outer
        try:
            yield self
        finally:
            if outer is None:
                del self.__dict__["_shared_gathers"]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PaddedBatch":
        """A copy with every tensor (and every item with a ``.to`` method) on ``device``."""
        return self._map(lambda value: value.to(device, non_blocking=non_blocking), "to")

    def pin_memory(self) -> "PaddedBatch":
        """A copy in pinned host memory (faster host-to-GPU copies); items with ``.pin_memory`` too."""
        return self._map(lambda value: value.pin_memory(), "pin_memory")

    def _map(self, apply: Callable[[Any], Any], method: str) -> "PaddedBatch":
        """A copy with ``apply`` run on every tensor, every tensor of ``codes`` and every item having ``method``."""
        mapped: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, torch.Tensor):
                value = apply(value)
            elif item.name == "items":
                value = {k: apply(v) if callable(getattr(v, method, None)) else v for k, v in value.items()}
            elif isinstance(value, dict):
                value = {k: apply(v) for k, v in value.items()}
            mapped[item.name] = value
        return PaddedBatch(**mapped)


def make_batch(
    data: EHRData,
    patients: Sequence[int] | np.ndarray,
    vocabularies: Sequence[str] | None = None,
) -> PaddedBatch:
    """Cut a padded batch of the given patients (vectorised; no loop over visits).

    Args:
        data: the dataset.
        patients: dataset patient indices, in batch order.
        vocabularies: which code kinds to include (default: all of ``data``).

    Returns:
        a :class:`PaddedBatch`.
    """
    patients = np.asarray(patients, dtype=np.int64)
    if patients.ndim != 1 or len(patients) == 0:
        raise ValueError("make_batch needs a non-empty 1-D sequence of patient indices")
    starts = data.visit_offsets[patients]
    n_per_patient = data.visit_offsets[patients + 1] - starts
    n_slots = int(n_per_patient.max(initial=0))
    n_slots = max(n_slots, 1)
    batch_size = len(patients)

    # global visit index of every real (b, t) slot, row-major
    slot_b = np.repeat(np.arange(batch_size), n_per_patient)
    slot_t = np.arange(int(n_per_patient.sum())) - np.repeat(
        np.concatenate(([0], np.cumsum(n_per_patient)[:-1])), n_per_patient
    )
    visit_index = starts[slot_b] + slot_t

    visit_mask = np.zeros((batch_size, n_slots), dtype=bool)
    visit_mask[slot_b, slot_t] = True

    codes: dict[str, torch.Tensor] = {}
    for vocab_name in vocabularies if vocabularies is not None else data.vocabularies:
        bounds = data.code_offsets[vocab_name]
        code_starts = bounds[visit_index]
        lengths = bounds[visit_index + 1] - code_starts
        width = max(int(lengths.max(initial=0)), 1)
        padded = np.zeros((batch_size, n_slots, width), dtype=np.int64)
        flat = _gather_ranges(data.codes[vocab_name], code_starts, lengths).astype(np.int64) + 1
        rows = np.repeat(np.arange(len(visit_index)), lengths)
        position = np.arange(len(flat)) - np.repeat(
            np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths
        )
        padded[slot_b[rows], slot_t[rows], position] = flat
        codes[vocab_name] = torch.from_numpy(padded)

    medications = np.zeros((batch_size, n_slots, data.n_drugs), dtype=np.float32)
    medications[slot_b, slot_t] = data.multi_hot(MEDICATIONS, visit_index)

    hospital = None
    if data.hospital is not None:
        hospital_grid = np.zeros((batch_size, n_slots), dtype=np.int64)
        hospital_grid[slot_b, slot_t] = data.hospital[visit_index]
        hospital = torch.from_numpy(hospital_grid)

    return PaddedBatch(
        codes=codes,
        visit_mask=torch.from_numpy(visit_mask),
        medications=torch.from_numpy(medications),
        patient_index=torch.from_numpy(patients.copy()),
        hospital=hospital,
    )


def batch_chunks(
    data: EHRData,
    patients: Sequence[int] | np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    generator: np.random.Generator | None = None,
    sort_by_length: bool = False,
) -> list[np.ndarray]:
    """The patients of every batch :func:`iterate_batches` yields, in order (nothing is cut).

    Args:
        data: the dataset (visit counts, for ``sort_by_length``).
        patients: patient indices to cover (each exactly once).
        batch_size: patients per batch.
        shuffle: shuffle patients first (needs ``generator`` for reproducibility).
        generator: numpy generator used for shuffling.
        sort_by_length: group patients of similar visit counts to reduce padding
            (batch order is still shuffled when ``shuffle`` is set).

    Returns:
        one int64 array of dataset patient indices per batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.asarray(patients, dtype=np.int64)
    rng = generator if generator is not None else np.random.default_rng(0)
    if shuffle:
        order = order[rng.permutation(len(order))]
    if sort_by_length:
        lengths = data.visits_per_patient[order]
        order = order[np.argsort(lengths, kind="stable")]
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle and sort_by_length:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    return chunks


def iterate_batches(
    data: EHRData,
    patients: Sequence[int] | np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    generator: np.random.Generator | None = None,
    sort_by_length: bool = False,
) -> Iterator[PaddedBatch]:
    """Yield padded batches over ``patients`` (the batches of :func:`batch_chunks`, same arguments)."""
    for chunk in batch_chunks(data, patients, batch_size, shuffle, generator, sort_by_length):
        yield make_batch(data, chunk)
