"""Per-stay samples: a view of :class:`EHRData` in which every visit is a sample of its own.

eICU work (TEMPT among it) treats each ICU stay as one record: the model sees the diagnoses
and procedures of that stay only, never the stays before it. :func:`per_visit_view` turns a
patient-sample dataset into that form without copying the code arrays: the view shares
``codes``, ``code_offsets``, ``hospital``, ``time``, the vocabularies and the knowledge with
its source and only replaces the patient structure (``visit_offsets = arange(n_visits + 1)``,
one visit per sample).

The view remembers which source patient each sample came from
(:attr:`PerVisitData.source_offsets`), so a split can keep all stays of one patient in the
same part (:func:`sample_groups`, :func:`expand_groups`): a patient's second stay must not be
in the test set while the first one trains the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from medtoolkit.data.ehr import EHRData

#: the separator of a per-visit sample id: ``"<source patient id>/<k>"``, k the 0-based stay number
SAMPLE_ID_SEPARATOR = "/"


@dataclass
class PerVisitData(EHRData):
    """An :class:`EHRData` whose samples are single visits (stays) of the source's patients.

    Sample ``i`` is visit ``i`` of the source (same global visit index), so every per-visit
    array of the source applies unchanged. Everything :class:`EHRData` offers works on the
    view; ``n_patients`` counts samples (stays).

    Attributes:
        source_offsets: ``[n_source_patients + 1]`` int64: the samples (= visits) of source
            patient ``p`` are ``source_offsets[p]:source_offsets[p + 1]`` (the source's
            ``visit_offsets``).
        source_patient_ids: ``[n_source_patients]`` identifiers of the source patients.
    """

    source_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    source_patient_ids: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """:meth:`EHRData.validate`, plus: one visit per sample, source offsets covering the samples."""
        super().validate()
        if np.any(np.diff(self.visit_offsets) != 1):
            raise ValueError("PerVisitData: visit_offsets must be arange(n_visits + 1) (one visit per sample)")
        bounds = np.asarray(self.source_offsets)
        if (bounds.ndim != 1 or len(bounds) == 0 or bounds[0] != 0 or bounds[-1] != self.n_visits
                or np.any(np.diff(bounds) < 0)):
            raise ValueError(
                f"PerVisitData: source_offsets must start at 0, be non-decreasing and end at the "
                f"{self.n_visits} samples"
            )
        if len(self.source_patient_ids) != len(bounds) - 1:
            raise ValueError(
                f"PerVisitData: source_patient_ids has {len(self.source_patient_ids)} entries but "
                f"source_offsets describes {len(bounds) - 1} source patients"
            )

    @property
    def n_source_patients(self) -> int:
        """Number of patients of the source data."""
        return len(self.source_offsets) - 1

    @property
    def sample_patient(self) -> np.ndarray:
        """``[n_samples]`` int64 source patient index of each sample."""
        return np.repeat(np.arange(self.n_source_patients, dtype=np.int64), np.diff(self.source_offsets))

    def fingerprint(self) -> str:
        """SHA-256 of the sample data (:meth:`EHRData.fingerprint`), the marker ``samples=visit``
        and the source patient structure.

        Never equal to the source's fingerprint, even when every source patient has a single
        visit (then the code arrays and offsets coincide): a model trained on per-visit samples
        is not resumed or re-evaluated as one trained on patients, and vice versa.
        """
        digest = hashlib.sha256(super().fingerprint().encode())
        digest.update(b"samples=visit")
        digest.update(np.ascontiguousarray(self.source_offsets, dtype=np.int64).tobytes())
        return digest.hexdigest()


def per_visit_view(data: EHRData) -> PerVisitData:
    """Every visit of ``data`` as a one-visit sample, sharing the code arrays (no copy).

    Vectorised: the only per-visit work is numpy (ids included); about 0.1 s for
    100,000 visits. A view given again is returned unchanged.

    Args:
        data: patient-sample data (``visit_offsets`` over patients).

    Returns:
        The view: ``visit_offsets = arange(n_visits + 1)``; ``codes``, ``code_offsets``,
        ``hospital``, ``time``, vocabularies and knowledge are the source's objects;
        ``patient_ids[i] = "<source patient id>/<k>"`` (k: 0-based stay number within the
        patient); ``provenance`` is the source's plus ``samples: "visit"`` and
        ``source_patients`` (the number of source patients).
    """
    if isinstance(data, PerVisitData):
        return data
    n_visits = data.n_visits
    lengths = data.visits_per_patient
    owner = np.repeat(np.arange(data.n_patients, dtype=np.int64), lengths)
    stay = np.arange(n_visits, dtype=np.int64) - data.visit_offsets[:-1][owner]
    if n_visits:
        source_ids = np.asarray(data.patient_ids, dtype=str)[owner]
        ids = np.char.add(np.char.add(source_ids, SAMPLE_ID_SEPARATOR), stay.astype(str)).tolist()
    else:
        ids = []
    provenance = dict(data.provenance)
    provenance["samples"] = "visit"
    provenance["source_patients"] = data.n_patients
    return PerVisitData(
        vocabularies=dict(data.vocabularies),
        visit_offsets=np.arange(n_visits + 1, dtype=np.int64),
        codes=dict(data.codes),
        code_offsets=dict(data.code_offsets),
        patient_ids=ids,
        knowledge=data.knowledge,
        hospital=data.hospital,
        time=data.time,
        name=data.name,
        provenance=provenance,
        source_offsets=np.asarray(data.visit_offsets, dtype=np.int64),
        source_patient_ids=list(data.patient_ids),
    )


def sample_groups(data: EHRData) -> np.ndarray:
    """Samples grouped by source patient: ``[n_groups + 1]`` int64 offsets into the samples.

    Args:
        data: patient samples (each patient its own group) or a :class:`PerVisitData` view
            (the stays of one source patient form a group).

    Returns:
        Group ``g`` holds samples ``offsets[g]:offsets[g + 1]``: ``arange(n_patients + 1)``
        for patient samples, :attr:`PerVisitData.source_offsets` for a view.
    """
    if isinstance(data, PerVisitData):
        return np.asarray(data.source_offsets, dtype=np.int64)
    return np.arange(data.n_patients + 1, dtype=np.int64)


def expand_groups(offsets: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The samples of the given groups, group after group (vectorised).

    Args:
        offsets: ``[n_groups + 1]`` group boundaries (:func:`sample_groups`).
        groups: ``[G]`` group indices.

    Returns:
        ``[total samples of those groups]`` int64 sample indices; ascending when ``groups``
        is ascending.
    """
    groups = np.asarray(groups, dtype=np.int64)
    starts = offsets[groups]
    lengths = offsets[groups + 1] - starts
    total = int(lengths.sum())
    first = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    return np.repeat(starts - first, lengths) + np.arange(total, dtype=np.int64)
