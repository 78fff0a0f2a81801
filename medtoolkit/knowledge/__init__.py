"""Drug knowledge: NDC/GSN/name -> ATC mapping, ATC3 DDI pairs, SMILES and BRICS masks.

Public API (stable; loaders call it):

* :func:`normalize_ndc` / :func:`normalize_ndc_counted` (``ndc``)
* :class:`DrugMapper`, :class:`MappingCoverage` (``mapping``)
* :func:`ddi_pairs`, :func:`ddi_adjacency` (``ddi``)
* :func:`smiles_for`, :func:`brics_mask`, :func:`brics_decompose`, :func:`molecule_graphs`,
  :func:`cached_molecule_graphs`, :class:`MoleculeGraphs` (``molecules``)
* :func:`build_drug_knowledge`, :func:`drug_knowledge_names` (here)
"""

from __future__ import annotations

import warnings

from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.knowledge.ddi import DDI_PROVENANCE, ddi_adjacency, ddi_classes, ddi_pairs
from medtoolkit.knowledge.mapping import DrugMapper, MappingCoverage, atc_truncate
from medtoolkit.knowledge.molecules import (
    ATOM_FEATURE_SIZES,
    ATOM_FEATURES,
    BOND_FEATURE_SIZES,
    BOND_FEATURES,
    SMILES_PROVENANCE,
    BricsDecomposition,
    MoleculeGraphs,
    brics_decompose,
    brics_mask,
    cached_molecule_graphs,
    molecule_graphs,
    rdkit_available,
    smiles_for,
)
from medtoolkit.knowledge.ndc import NdcCounts, normalize_ndc, normalize_ndc_counted

__all__ = [
    "ATOM_FEATURES",
    "ATOM_FEATURE_SIZES",
    "BOND_FEATURES",
    "BOND_FEATURE_SIZES",
    "BricsDecomposition",
    "DrugMapper",
    "MappingCoverage",
    "MoleculeGraphs",
    "NdcCounts",
    "atc_truncate",
    "brics_decompose",
    "brics_mask",
    "build_drug_knowledge",
    "cached_molecule_graphs",
    "ddi_adjacency",
    "ddi_classes",
    "ddi_pairs",
    "drug_knowledge_names",
    "molecule_graphs",
    "normalize_ndc",
    "normalize_ndc_counted",
    "rdkit_available",
    "smiles_for",
]


def drug_knowledge_names(with_substructures: bool = True) -> frozenset[str]:
    """Knowledge names (:data:`medtoolkit.components.requirements.KNOWLEDGE_NAMES`) that
    :func:`build_drug_knowledge` provides, for a loader's ``knowledge_provided``.

    Args:
        with_substructures: as passed to :func:`build_drug_knowledge`.

    Returns:
        ``{"ddi", "smiles"}``, plus ``"substructures"`` when the mask will be computed
        (``with_substructures`` and rdkit installed).
    """
    names = {"ddi", "smiles"}
    if with_substructures and rdkit_available():
        names.add("substructures")
    return frozenset(names)


def build_drug_knowledge(med_codes: list[str], atc_level: int = 3,
                         with_substructures: bool = True) -> DrugKnowledge:
    """Drug knowledge index-aligned with a medication vocabulary of ATC codes.

    Args:
        med_codes: ATC codes in vocabulary order (level ``atc_level``; 3 = ``N02B``, 4 = ``N02BE``).
        atc_level: 3 or 4. At level 4 the DDI graph and the SMILES come from the ATC3 prefix
            (an approximation, see :func:`ddi_adjacency`).
        with_substructures: compute the BRICS substructure mask (skipped with a warning when
            rdkit is not installed).

    Returns:
        :class:`~medtoolkit.data.knowledge.DrugKnowledge` with ``ddi_adjacency``, ``smiles``,
        ``substructure_mask`` (or None) and ``provenance`` (keys ``ddi``, ``ddi_coverage``,
        ``smiles``, ``substructures``).

    Raises:
        ValueError: ``atc_level`` is not 3/4, or a code has the wrong length for it.
    """
    if atc_level not in (3, 4):
        raise ValueError(f"build_drug_knowledge supports ATC levels 3 and 4, got {atc_level!r}")
    length = 4 if atc_level == 3 else 5
    codes = [str(code).strip().upper() for code in med_codes]
    wrong = [code for code in codes if len(code) != length]
    if wrong:
        raise ValueError(f"ATC level {atc_level} codes have {length} characters; got {wrong[:5]}")
    adjacency = ddi_adjacency(codes)
    covered = ddi_classes()
    outside = sorted({code[:4] for code in codes} - covered)
    smiles = smiles_for(codes)
    provenance = {
        "ddi": DDI_PROVENANCE + ("" if atc_level == 3 else
                                 "; ATC4 codes connected through their ATC3 prefixes (approximation)"),
        "ddi_coverage": (f"{len({c[:4] for c in codes}) - len(outside)} of {len({c[:4] for c in codes})}"
                         f" ATC3 classes covered by the DDI list; not covered (interactions unknown): "
                         f"{' '.join(outside) if outside else 'none'}"),
        "smiles": SMILES_PROVENANCE + f"; {sum(1 for s in smiles if not s)} of {len(codes)} drugs "
                  "without SMILES",
    }
    mask = None
    if with_substructures:
        if rdkit_available():
            result = brics_decompose(smiles)
            mask = result.mask
            provenance["substructures"] = (
                f"BRICS fragments (rdkit BRICSDecompose) of the SMILES above, {len(result.fragments)} "
                f"fragments in sorted order; {len(result.unparsable)} SMILES unparsable"
            )
            provenance["substructure_fragments"] = "\n".join(result.fragments)
        else:
            warnings.warn('rdkit is not installed: no substructure mask (pip install "medtoolkit[chem]")',
                          UserWarning, stacklevel=2)
            provenance["substructures"] = "not computed: rdkit not installed"
    return DrugKnowledge(ddi_adjacency=adjacency, smiles=smiles, substructure_mask=mask,
                         provenance=provenance)
