"""Small, deterministic fake data for tests (public: plugin authors use it too)."""

from __future__ import annotations

import numpy as np

from medtoolkit.components.schema import DataSchema
from medtoolkit.components.statistics import statistics_source
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


#: small real molecules that :func:`fake_smiles` cycles through (a salt with bond-less ions,
#: an aromatic ring, two SMILES for one drug, a calcium salt whose Ca has no bond)
FAKE_MOLECULES: tuple[tuple[str, ...], ...] = (
    ("CCO",),
    ("c1ccccc1",),
    ("[Na+].[Cl-]",),
    ("CC(=O)Oc1ccccc1C(=O)O",),
    ("CC(=O)O", "C"),
    ("[Ca++].[O-]C([O-])=O",),
    ("CN1C=NC2=C1C(=O)N(C(=O)N2C)C",),
    ("O=C(O)c1ccccc1O",),
)
#: drug index given no SMILES by :func:`fake_smiles` (when it exists)
FAKE_DRUG_WITHOUT_SMILES = 3
#: drug index given only an unparsable SMILES by :func:`fake_smiles` (when it exists)
FAKE_DRUG_UNPARSABLE = 4
#: drug index given an all-zero row by :func:`fake_substructure_mask` (the drug without SMILES)
FAKE_DRUG_WITHOUT_SUBSTRUCTURES = FAKE_DRUG_WITHOUT_SMILES


def fake_smiles(n_drugs: int) -> tuple[tuple[str, ...], ...]:
    """Deterministic SMILES per drug, for tests of molecule components (no real data needed).

    Drug ``i`` gets ``FAKE_MOLECULES[i % 8]``, except drug :data:`FAKE_DRUG_WITHOUT_SMILES`
    (3), which gets none, and drug :data:`FAKE_DRUG_UNPARSABLE` (4), which gets only
    ``"not_a_smiles"`` (rdkit cannot parse it), so both fallbacks of a drug encoder are
    exercised.

    Args:
        n_drugs: number of drugs.

    Returns:
        ``n_drugs`` tuples of SMILES.
    """
    result: list[tuple[str, ...]] = []
    for drug in range(n_drugs):
        if drug == FAKE_DRUG_WITHOUT_SMILES:
            result.append(())
        elif drug == FAKE_DRUG_UNPARSABLE:
            result.append(("not_a_smiles",))
        else:
            result.append(FAKE_MOLECULES[drug % len(FAKE_MOLECULES)])
    return tuple(result)


def fake_substructure_mask(n_drugs: int, n_substructures: int = 6) -> np.ndarray:
    """A deterministic drug-to-substructure mask (built by hand, no rdkit).

    Drug ``i`` has substructures ``i % S`` and ``(2 i + 1) % S``; drug
    :data:`FAKE_DRUG_WITHOUT_SUBSTRUCTURES` (3) has an all-zero row.

    Args:
        n_drugs: number of drugs.
        n_substructures: number of substructure columns S.

    Returns:
        ``[n_drugs, S]`` float32 0/1.
    """
    mask = np.zeros((n_drugs, n_substructures), dtype=np.float32)
    drugs = np.arange(n_drugs)
    mask[drugs, drugs % n_substructures] = 1.0
    mask[drugs, (2 * drugs + 1) % n_substructures] = 1.0
    if n_drugs > FAKE_DRUG_WITHOUT_SUBSTRUCTURES:
        mask[FAKE_DRUG_WITHOUT_SUBSTRUCTURES] = 0.0
    return mask


def fake_schema(data: EHRData | None = None) -> DataSchema:
    """A schema for ``data`` (default :func:`fake_ehr`) with co-occurrence over all visits.

    It carries SMILES and a substructure mask: those of ``data.knowledge`` when it has them,
    otherwise :func:`fake_smiles` and :func:`fake_substructure_mask`. Molecule graphs are
    built from the SMILES on demand (:meth:`DataSchema.require_molecules`, needs rdkit, in
    the ``test`` extra). Count statistics (:meth:`DataSchema.require_statistic`) are
    computed on demand over **all** visits of ``data`` (fake data has no split; a task's
    schema counts its training visits only).
    """
    data = data if data is not None else fake_ehr()
    visits = data.multi_hot(MEDICATIONS, np.arange(data.n_visits))
    knowledge = data.knowledge
    smiles = (tuple(tuple(str(s) for s in per_drug) for per_drug in knowledge.smiles)
              if knowledge.smiles is not None else fake_smiles(data.n_drugs))
    mask = (knowledge.substructure_mask if knowledge.substructure_mask is not None
            else fake_substructure_mask(data.n_drugs))
    return DataSchema(
        vocab_sizes={name: len(v) for name, v in data.vocabularies.items()},
        n_drugs=data.n_drugs,
        ddi_adjacency=knowledge.ddi_adjacency,
        cooccurrence_adjacency=cooccurrence_adjacency(visits),
        drug_codes=tuple(data.vocabularies[MEDICATIONS].idx2word),
        smiles=smiles,
        substructure_mask=mask,
        n_hospitals=int(data.hospital.max() + 1) if data.hospital is not None else 0,
        drug_frequency=visits.mean(axis=0),
        statistics_source=statistics_source(data, np.arange(data.n_visits)),
    )


def fake_batch(data: EHRData | None = None, n_patients: int | None = None) -> PaddedBatch:
    """A padded batch of the first ``n_patients`` patients of ``data``."""
    data = data if data is not None else fake_ehr()
    count = data.n_patients if n_patients is None else n_patients
    return make_batch(data, np.arange(count))
