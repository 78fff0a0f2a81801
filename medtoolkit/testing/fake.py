"""Small, deterministic fake data for tests (public: plugin authors use it too)."""

from __future__ import annotations

import numpy as np

from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch, make_batch
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge, cooccurrence_adjacency
from medtoolkit.data.vocab import Vocabulary


def fake_ehr(
    n_patients: int = 12,
    n_diagnoses: int = 30,
    n_procedures: int = 20,
    n_drugs: int = 15,
    max_visits: int = 4,
    n_hospitals: int = 0,
    seed: int = 0,
) -> EHRData:
    """A tiny random dataset: 1..``max_visits`` visits per patient, 1..6 codes per kind.

    Five DDI pairs are planted among the drugs. Same seed, same data.
    """
    rng = np.random.default_rng(seed)
    vocabularies = {
        DIAGNOSES: Vocabulary([f"D{i:03d}" for i in range(n_diagnoses)], DIAGNOSES),
        PROCEDURES: Vocabulary([f"P{i:03d}" for i in range(n_procedures)], PROCEDURES),
        MEDICATIONS: Vocabulary([f"M{i:02d}X" for i in range(n_drugs)], MEDICATIONS),
    }
    sizes = (n_diagnoses, n_procedures, n_drugs)
    records = []
    for _ in range(n_patients):
        visits = []
        for _ in range(int(rng.integers(1, max_visits + 1))):
            visits.append(
                [sorted(rng.choice(size, size=int(rng.integers(1, min(6, size) + 1)), replace=False).tolist())
                 for size in sizes]
            )
        records.append(visits)
    adjacency = np.zeros((n_drugs, n_drugs), dtype=np.float32)
    pairs = 0
    while pairs < min(5, n_drugs * (n_drugs - 1) // 2):
        i, j = rng.choice(n_drugs, size=2, replace=False)
        if adjacency[i, j] == 0:
            adjacency[i, j] = adjacency[j, i] = 1.0
            pairs += 1
    n_visits = sum(len(p) for p in records)
    hospital = rng.integers(0, n_hospitals, size=n_visits) if n_hospitals else None
    return EHRData.from_records(
        records,
        vocabularies,
        DrugKnowledge(ddi_adjacency=adjacency),
        hospital=hospital,
        name="fake",
    )


def fake_schema(data: EHRData | None = None) -> DataSchema:
    """A schema for ``data`` (default :func:`fake_ehr`) with co-occurrence over all visits."""
    data = data if data is not None else fake_ehr()
    visits = data.multi_hot(MEDICATIONS, np.arange(data.n_visits))
    return DataSchema(
        vocab_sizes={name: len(v) for name, v in data.vocabularies.items()},
        n_drugs=data.n_drugs,
        ddi_adjacency=data.knowledge.ddi_adjacency,
        cooccurrence_adjacency=cooccurrence_adjacency(visits),
        drug_codes=tuple(data.vocabularies[MEDICATIONS].idx2word),
        n_hospitals=int(data.hospital.max() + 1) if data.hospital is not None else 0,
        drug_frequency=visits.mean(axis=0),
    )


def fake_batch(data: EHRData | None = None, n_patients: int | None = None) -> PaddedBatch:
    """A padded batch of the first ``n_patients`` patients of ``data``."""
    data = data if data is not None else fake_ehr()
    count = data.n_patients if n_patients is None else n_patients
    return make_batch(data, np.arange(count))
