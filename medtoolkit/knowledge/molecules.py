"""SMILES per ATC class and BRICS substructure masks.

SMILES come from the shipped ``atc3_to_smiles.csv`` (MIT; 133 ATC3 classes, 284 SMILES). Unlike
SafeDrug (first 3 of a Python set: hash-randomised, reference notes pitfall 4), the SMILES of a
class are **sorted** and the first ``max_per_class`` kept, so the choice is the same in every run.
BRICS fragments are computed with rdkit (optional extra ``medtoolkit[chem]``), and the fragment
columns are **sorted** (SafeDrug's ``list(set(...))`` order is not reproducible).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medtoolkit.knowledge._resources import resource_path

__all__ = ["BricsDecomposition", "SMILES_PROVENANCE", "brics_decompose", "brics_mask",
           "rdkit_available", "smiles_for"]

SMILES_PROVENANCE = (
    "atc3_to_smiles.csv (shipped, MIT, LICENSE.atc3_to_smiles): up to 3 SMILES per ATC3 class, "
    "sorted lexicographically (ATC4+ codes use their ATC3 prefix)"
)


@dataclass
class BricsDecomposition:
    """Result of :func:`brics_decompose`.

    Attributes:
        mask: ``[n_drugs, n_fragments]`` float32, 1 when the fragment occurs in any SMILES of the drug.
        fragments: the fragment SMILES, sorted (column order of ``mask``).
        unparsable: ``(drug index, SMILES)`` for every SMILES rdkit could not parse or decompose.
        per_drug: the fragment set of each drug.
    """

    mask: np.ndarray
    fragments: list[str]
    unparsable: list[tuple[int, str]] = field(default_factory=list)
    per_drug: list[frozenset[str]] = field(default_factory=list)


def _import_rdkit() -> tuple[Any, Any]:
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import BRICS
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "BRICS substructures need rdkit, which is not installed: "
            'pip install "medtoolkit[chem]"'
        ) from error
    RDLogger.DisableLog("rdApp.*")
    return Chem, BRICS


def rdkit_available() -> bool:
    """Whether rdkit can be imported (the optional ``chem`` extra).

    Returns:
        True when ``import rdkit`` works.
    """
    try:
        import rdkit  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _shipped_table() -> dict[str, tuple[str, ...]]:
    raw = pd.read_csv(resource_path("atc3_to_smiles.csv"), dtype=str).dropna()
    raw["atc3"] = raw["atc3"].str.strip().str.upper()
    raw["smiles"] = raw["smiles"].str.strip()
    return {atc3: tuple(group) for atc3, group in raw.groupby("atc3")["smiles"]}


def smiles_for(med_codes: Sequence[str], table: Mapping[str, Sequence[str]] | None = None,
               max_per_class: int | None = 3) -> list[list[str]]:
    """SMILES for each medication code.

    Args:
        med_codes: ATC codes of level 3 or deeper; deeper codes use their ATC3 prefix.
        table: ATC3 -> SMILES candidates; the shipped ``atc3_to_smiles.csv`` when None.
        max_per_class: keep at most this many SMILES per class after sorting
            (deduplicated, lexicographic order); None keeps all.

    Returns:
        one list per code (empty when the class has no SMILES).
    """
    source = _shipped_table() if table is None else table
    result: list[list[str]] = []
    for code in med_codes:
        key = str(code).strip().upper()[:4]
        candidates = sorted({str(s).strip() for s in source.get(key, ()) if str(s).strip()})
        result.append(candidates if max_per_class is None else candidates[:max_per_class])
    return result


def brics_decompose(smiles_lists: Sequence[Sequence[str]]) -> BricsDecomposition:
    """BRICS fragments of each drug: union of ``BRICS.BRICSDecompose`` over its SMILES.

    Args:
        smiles_lists: per drug, its SMILES.

    Returns:
        the mask with sorted fragment columns, and the SMILES that failed (never silently dropped).

    Raises:
        ImportError: rdkit is missing (``pip install "medtoolkit[chem]"``).
    """
    Chem, BRICS = _import_rdkit()
    per_drug: list[frozenset[str]] = []
    unparsable: list[tuple[int, str]] = []
    for index, smiles_list in enumerate(smiles_lists):
        fragments: set[str] = set()
        for smiles in smiles_list:
            molecule = Chem.MolFromSmiles(smiles)
            if molecule is None:
                unparsable.append((index, smiles))
                continue
            try:
                fragments.update(BRICS.BRICSDecompose(molecule))
            except Exception:  # noqa: BLE001 - rdkit raises various errors; counted, not hidden
                unparsable.append((index, smiles))
        per_drug.append(frozenset(fragments))
    columns = sorted(set().union(*per_drug)) if per_drug else []
    column_of = {fragment: k for k, fragment in enumerate(columns)}
    mask = np.zeros((len(per_drug), len(columns)), dtype=np.float32)
    for index, fragments in enumerate(per_drug):
        mask[index, [column_of[f] for f in fragments]] = 1.0
    return BricsDecomposition(mask=mask, fragments=columns, unparsable=unparsable, per_drug=per_drug)


def brics_mask(smiles_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, list[str]]:
    """Drug-to-BRICS-fragment mask with sorted fragment columns.

    Unparsable SMILES are reported with a :class:`UserWarning` giving their count (use
    :func:`brics_decompose` to get them).

    Args:
        smiles_lists: per drug, its SMILES.

    Returns:
        ``(mask [n_drugs, n_fragments] float32, fragments)``.

    Raises:
        ImportError: rdkit is missing (``pip install "medtoolkit[chem]"``).
    """
    result = brics_decompose(smiles_lists)
    if result.unparsable:
        warnings.warn(f"brics_mask: {len(result.unparsable)} SMILES could not be parsed or "
                      f"decomposed (first: {result.unparsable[0]})", UserWarning, stacklevel=2)
    return result.mask, result.fragments
