"""ATC3-level drug-drug interaction pairs shipped with the package.

The pair list is derived from SafeDrug's processed MIMIC-III DDI matrix (TWOSIDES-based; the 40
least frequent side-effect types as coded) by ``scripts/derive_ddi_pairs.py``; see
``medtoolkit/resources/drug_knowledge/PROVENANCE.md``. It covers 112 ATC3 classes
(:func:`ddi_classes`); for any other class interactions are unknown, not absent.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from medtoolkit.knowledge._resources import resource_path

__all__ = ["DDI_PROVENANCE", "ddi_adjacency", "ddi_classes", "ddi_pairs"]

DDI_PROVENANCE = (
    "ddi_atc3_pairs.csv (shipped): 337 ATC3 pairs over 112 classes derived from SafeDrug's "
    "processed MIMIC-III ddi_A_final.pkl (TWOSIDES, 40 least frequent side-effect types as coded) "
    "by scripts/derive_ddi_pairs.py; see resources/drug_knowledge/PROVENANCE.md"
)


@functools.lru_cache(maxsize=1)
def _pairs() -> pd.DataFrame:
    return pd.read_csv(resource_path("ddi_atc3_pairs.csv"), dtype=str)


def ddi_pairs() -> pd.DataFrame:
    """The shipped ATC3 DDI pair list.

    Returns:
        a copy with columns ``atc3_a``, ``atc3_b`` (``atc3_a < atc3_b``, rows sorted).
    """
    return _pairs().copy()


@functools.lru_cache(maxsize=1)
def ddi_classes() -> frozenset[str]:
    """The 112 ATC3 classes the shipped pair list covers.

    Returns:
        the classes; a class outside this set has *unknown* interactions.
    """
    table = pd.read_csv(resource_path("ddi_atc3_classes.csv"), dtype={"atc3": str})
    return frozenset(table["atc3"])


def _atc3_of(code: str) -> str:
    code = str(code).strip().upper()
    if len(code) < 4:
        raise ValueError(f"ddi_adjacency needs ATC codes of level 3 or deeper, got {code!r}")
    return code[:4]


def ddi_adjacency(med_codes: Sequence[str]) -> np.ndarray:
    """Symmetric 0/1 DDI matrix aligned with a medication vocabulary.

    ATC3 codes (4 characters) are looked up directly. Deeper codes (ATC4 ``N02BE``, ATC5) use
    their ATC3 prefix: two drugs interact when their ATC3 classes form a listed pair. This is an
    **approximation**: not every subclass of an interacting class pair interacts, and two codes of
    the same ATC3 class are never connected (the list has no same-class pairs).

    Args:
        med_codes: ATC codes, level 3 or deeper (vocabulary order).

    Returns:
        ``[n, n]`` float32 0/1 matrix with a zero diagonal.

    Raises:
        ValueError: a code is shorter than 4 characters (ATC level 1/2).
    """
    prefixes = [_atc3_of(code) for code in med_codes]
    n = len(prefixes)
    adjacency = np.zeros((n, n), dtype=np.float32)
    if n == 0:
        return adjacency
    positions: dict[str, list[int]] = {}
    for index, prefix in enumerate(prefixes):
        positions.setdefault(prefix, []).append(index)
    pairs = _pairs()
    for a, b in zip(pairs["atc3_a"], pairs["atc3_b"]):
        rows, cols = positions.get(a), positions.get(b)
        if rows and cols:
            adjacency[np.ix_(rows, cols)] = 1.0
            adjacency[np.ix_(cols, rows)] = 1.0
    np.fill_diagonal(adjacency, 0.0)
    return adjacency
