"""The in-memory EHR model: patients -> visits -> codes per vocabulary.

Storage is columnar (CSR-like) so that a million visits fit comfortably in memory
and batches are cut with numpy slicing instead of Python loops:

* ``visit_offsets`` (``[n_patients + 1]``): visits of patient ``p`` are
  ``visit_offsets[p]:visit_offsets[p + 1]`` (global visit indices, in time order).
* for each vocabulary ``v``: ``codes[v]`` (``[n_codes_v]``, int32, 0-based vocabulary
  indices) and ``code_offsets[v]`` (``[n_visits + 1]``): codes of visit ``i`` are
  ``codes[v][code_offsets[v][i]:code_offsets[v][i + 1]]``.
* optional ``hospital`` (``[n_visits]``, int32) and ``time`` (``[n_visits]``, float64,
  days or any monotone unit; NaN when unknown).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.vocab import Vocabulary

DIAGNOSES = "diagnoses"
PROCEDURES = "procedures"
MEDICATIONS = "medications"
STANDARD_VOCABULARIES = (DIAGNOSES, PROCEDURES, MEDICATIONS)
#: visits per block when :meth:`EHRData.statistics` counts DDI pairs (bounds its memory)
_STATISTICS_BLOCK = 65_536


def _offsets_from_lengths(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=offsets[1:])
    return offsets


@dataclass
class EHRData:
    """Patients, their visits and the codes of each visit, plus drug knowledge.

    Attributes:
        vocabularies: one :class:`Vocabulary` per code kind; must contain ``"medications"``.
        visit_offsets: ``[n_patients + 1]`` int64 visit boundaries per patient.
        codes: per vocabulary, ``[n_codes]`` int32 vocabulary indices of all visits, concatenated.
        code_offsets: per vocabulary, ``[n_visits + 1]`` int64 boundaries per visit.
        patient_ids: ``[n_patients]`` identifiers as strings (file order is kept).
        knowledge: drug-side knowledge (DDI adjacency, SMILES, ...).
        hospital: optional ``[n_visits]`` int32 hospital index per visit.
        time: optional ``[n_visits]`` float64 visit time (NaN when unknown).
        name: human-readable name of the source.
        provenance: free-form facts about how the data was produced (paths, options, drops).
    """

    vocabularies: dict[str, Vocabulary]
    visit_offsets: np.ndarray
    codes: dict[str, np.ndarray]
    code_offsets: dict[str, np.ndarray]
    patient_ids: list[str]
    knowledge: DrugKnowledge
    hospital: np.ndarray | None = None
    time: np.ndarray | None = None
    name: str = "ehr"
    provenance: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_records(
        cls,
        records: Sequence[Sequence[Mapping[str, Sequence[int]] | Sequence[Sequence[int]]]],
        vocabularies: Mapping[str, Vocabulary],
        knowledge: DrugKnowledge,
        patient_ids: Sequence[str] | None = None,
        hospital: Sequence[int] | None = None,
        time: Sequence[float] | None = None,
        name: str = "ehr",
        provenance: dict[str, object] | None = None,
    ) -> "EHRData":
        """Build from nested lists (patient -> visit -> codes).

        Args:
            records: ``records[p][t]`` is either a mapping ``{vocab_name: [indices]}`` or a
                sequence of index lists in the order of ``vocabularies`` (the field's
                ``[diag, proc, med]`` layout).
            vocabularies: vocabularies in the order used by sequence-style visits.
            knowledge: drug knowledge.
            patient_ids: optional identifiers (default ``"0"``, ``"1"``, ...).
            hospital: optional per-visit hospital index (flattened visit order).
            time: optional per-visit time (flattened visit order).
            name: dataset name.
            provenance: free-form provenance facts.
        """
        names = list(vocabularies)
        visit_lengths = [len(patient) for patient in records]
        per_vocab_lists: dict[str, list[Sequence[int]]] = {v: [] for v in names}
        for patient in records:
            for visit in patient:
                for position, vocab_name in enumerate(names):
                    if isinstance(visit, Mapping):
                        per_vocab_lists[vocab_name].append(visit.get(vocab_name, ()))
                    else:
                        per_vocab_lists[vocab_name].append(visit[position])
        codes: dict[str, np.ndarray] = {}
        code_offsets: dict[str, np.ndarray] = {}
        for vocab_name, lists in per_vocab_lists.items():
            code_offsets[vocab_name] = _offsets_from_lengths([len(x) for x in lists])
            flat = [int(code) for visit_codes in lists for code in visit_codes]
            codes[vocab_name] = np.asarray(flat, dtype=np.int32)
        return cls(
            vocabularies=dict(vocabularies),
            visit_offsets=_offsets_from_lengths(visit_lengths),
            codes=codes,
            code_offsets=code_offsets,
            patient_ids=[str(p) for p in patient_ids] if patient_ids is not None
            else [str(i) for i in range(len(records))],
            knowledge=knowledge,
            hospital=None if hospital is None else np.asarray(hospital, dtype=np.int32),
            time=None if time is None else np.asarray(time, dtype=np.float64),
            name=name,
            provenance=dict(provenance or {}),
        )

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check internal consistency; raises ``ValueError`` naming the broken field."""
        if MEDICATIONS not in self.vocabularies:
            raise ValueError("EHRData needs a 'medications' vocabulary")
        offsets = np.asarray(self.visit_offsets)
        if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise ValueError("visit_offsets must start at 0 and be non-decreasing")
        n_visits = int(offsets[-1])
        if len(self.patient_ids) != len(offsets) - 1:
            raise ValueError(
                f"patient_ids has {len(self.patient_ids)} entries but visit_offsets describes "
                f"{len(offsets) - 1} patients"
            )
        for vocab_name, vocabulary in self.vocabularies.items():
            if vocab_name not in self.codes or vocab_name not in self.code_offsets:
                raise ValueError(f"vocabulary {vocab_name!r} has no codes/code_offsets")
            bounds = self.code_offsets[vocab_name]
            if len(bounds) != n_visits + 1 or bounds[0] != 0 or bounds[-1] != len(self.codes[vocab_name]):
                raise ValueError(f"code_offsets[{vocab_name!r}] does not match {n_visits} visits")
            values = self.codes[vocab_name]
            if len(values) and (values.min() < 0 or values.max() >= len(vocabulary)):
                raise ValueError(
                    f"codes[{vocab_name!r}] holds indices outside [0, {len(vocabulary)})"
                )
        for attribute in ("hospital", "time"):
            column = getattr(self, attribute)
            if column is not None and len(column) != n_visits:
                raise ValueError(f"{attribute} has {len(column)} entries for {n_visits} visits")
        n_drugs = len(self.vocabularies[MEDICATIONS])
        if self.knowledge.has_ddi and self.knowledge.ddi_adjacency.shape != (n_drugs, n_drugs):
            raise ValueError(
                f"DDI adjacency has shape {self.knowledge.ddi_adjacency.shape}, expected "
                f"({n_drugs}, {n_drugs}) for {n_drugs} medications"
            )

    # ------------------------------------------------------------------ views
    @property
    def n_patients(self) -> int:
        return len(self.visit_offsets) - 1

    @property
    def n_visits(self) -> int:
        return int(self.visit_offsets[-1])

    @property
    def n_drugs(self) -> int:
        return len(self.vocabularies[MEDICATIONS])

    @property
    def visits_per_patient(self) -> np.ndarray:
        """``[n_patients]`` number of visits of each patient."""
        return np.diff(self.visit_offsets)

    def visit_codes(self, vocab_name: str, visit_index: int) -> np.ndarray:
        """0-based codes of one (global) visit in one vocabulary."""
        bounds = self.code_offsets[vocab_name]
        return self.codes[vocab_name][bounds[visit_index]:bounds[visit_index + 1]]

    def patient_visits(self, patient_index: int) -> range:
        """Global visit indices of one patient, in time order."""
        return range(int(self.visit_offsets[patient_index]), int(self.visit_offsets[patient_index + 1]))

    def to_records(self, patients: Sequence[int] | None = None) -> list[list[list[list[int]]]]:
        """Nested lists ``[patient][visit][vocab] -> indices`` in vocabulary order (for inspection)."""
        chosen = range(self.n_patients) if patients is None else patients
        names = list(self.vocabularies)
        return [
            [[self.visit_codes(v, i).tolist() for v in names] for i in self.patient_visits(p)]
            for p in chosen
        ]

    def multi_hot(self, vocab_name: str, visit_indices: np.ndarray) -> np.ndarray:
        """``[len(visit_indices), vocab_size]`` float32 multi-hot of the given visits."""
        visit_indices = np.asarray(visit_indices, dtype=np.int64)
        size = len(self.vocabularies[vocab_name])
        out = np.zeros((len(visit_indices), size), dtype=np.float32)
        bounds = self.code_offsets[vocab_name]
        starts, ends = bounds[visit_indices], bounds[visit_indices + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(visit_indices)), lengths)
        flat = _gather_ranges(self.codes[vocab_name], starts, lengths)
        out[rows, flat] = 1.0
        return out

    def fingerprint(self) -> str:
        """A SHA-256 hex digest of codes, structure and vocabularies (identifies the data).

        Columns are hashed in place (no ``tobytes`` copy: 1.5 GB of codes at 10M visits),
        memory-mapped ones included.
        """
        digest = hashlib.sha256()
        digest.update(_buffer(self.visit_offsets))
        for vocab_name in sorted(self.vocabularies):
            digest.update(vocab_name.encode())
            digest.update("\x1f".join(self.vocabularies[vocab_name].idx2word).encode())
            digest.update(_buffer(self.codes[vocab_name]))
            digest.update(_buffer(self.code_offsets[vocab_name]))
        if self.knowledge.has_ddi:
            digest.update(np.ascontiguousarray(self.knowledge.ddi_adjacency, dtype=np.float32).tobytes())
        else:
            digest.update(b"no DDI matrix")
        if self.hospital is not None:
            digest.update(_buffer(self.hospital))
        return digest.hexdigest()

    def ground_truth_ddi_rate(self, block_visits: int = _STATISTICS_BLOCK) -> float | None:
        """Pooled DDI rate of the prescribed sets (:func:`medtoolkit.metrics.ddi_rate`).

        Counted ``block_visits`` visits at a time: the pair counts are integers, so the
        value is the same as over one ``[n_visits, n_drugs]`` multi-hot, without holding
        it (4.5 GB for 10M visits of 112 drugs).

        Returns:
            interacting pairs over all pairs (0.0 without any pair); None without a DDI matrix.
        """
        from medtoolkit.metrics import pair_counts  # local import: metrics imports nothing from data

        adjacency = self.knowledge.ddi_adjacency
        if adjacency is None:
            return None
        interacting = pairs = 0
        for start in range(0, self.n_visits, max(int(block_visits), 1)):
            visits = np.arange(start, min(start + block_visits, self.n_visits))
            ddi_pairs, all_pairs = pair_counts(self.multi_hot(MEDICATIONS, visits) > 0, adjacency)
            interacting += int(ddi_pairs.sum())
            pairs += int(all_pairs.sum())
        return float(interacting / pairs) if pairs else 0.0

    def statistics(self) -> dict[str, float | int]:
        """Counts and true per-visit averages (not the field's per-patient-union numbers)."""
        stats: dict[str, float | int] = {
            "patients": self.n_patients,
            "visits": self.n_visits,
            "n_drugs": self.n_drugs,
            "visits_per_patient": float(self.n_visits / max(self.n_patients, 1)),
            "max_visits_per_patient": int(self.visits_per_patient.max(initial=0)),
        }
        for vocab_name, vocabulary in self.vocabularies.items():
            stats[f"vocab_{vocab_name}"] = len(vocabulary)
            stats[f"per_visit_{vocab_name}"] = float(
                len(self.codes[vocab_name]) / max(self.n_visits, 1)
            )
        stats["ground_truth_ddi_rate"] = self.ground_truth_ddi_rate()
        if self.hospital is not None:
            stats["hospitals"] = int(len(np.unique(self.hospital)))
        return stats


def _buffer(values: np.ndarray) -> memoryview:
    """The bytes of ``values`` in C order, without a copy when it is already contiguous."""
    return memoryview(np.ascontiguousarray(values)).cast("B")


def _gather_ranges(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``values[s:s+l]`` for all (s, l) without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=values.dtype)
    segment_starts = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return values[segment_starts + np.arange(total)]
