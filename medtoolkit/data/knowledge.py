"""Drug-side knowledge: interactions, co-occurrence, molecules."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DrugKnowledge:
    """What is known about the drugs of a medication vocabulary (index-aligned with it).

    Attributes:
        ddi_adjacency: ``[n_drugs, n_drugs]`` symmetric 0/1 float32 interaction matrix, or
            None when the dataset has no DDI matrix (e.g. processed eICU data): DDI metrics
            are then not available and components that need the matrix refuse to build.
        ddi_types: optional ``[n_drugs, n_drugs]`` int interaction-type ids (0 = none).
        ddi_sign: optional ``[n_drugs, n_drugs]`` signed interactions (+1 synergy, -1 antagonism).
        smiles: per drug, a list of SMILES strings (may be empty).
        substructure_mask: optional ``[n_drugs, n_substructures]`` 0/1 (e.g. BRICS fragments).
        provenance: where each piece came from.
    """

    ddi_adjacency: np.ndarray | None
    ddi_types: np.ndarray | None = None
    ddi_sign: np.ndarray | None = None
    smiles: list[list[str]] | None = None
    substructure_mask: np.ndarray | None = None
    provenance: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ddi_adjacency is None:
            return
        adjacency = np.asarray(self.ddi_adjacency, dtype=np.float32)
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(f"ddi_adjacency must be square, got shape {adjacency.shape}")
        if not np.array_equal(adjacency, adjacency.T):
            raise ValueError("ddi_adjacency must be symmetric")
        if not np.isin(adjacency, (0.0, 1.0)).all():
            raise ValueError("ddi_adjacency must be 0/1")
        self.ddi_adjacency = adjacency

    @property
    def has_ddi(self) -> bool:
        """Whether a DDI matrix is known (False: DDI metrics are not available)."""
        return self.ddi_adjacency is not None

    @property
    def n_drugs(self) -> int:
        """Size of the DDI matrix.

        Raises:
            ValueError: there is no DDI matrix (use the medication vocabulary's size).
        """
        if self.ddi_adjacency is None:
            raise ValueError("DrugKnowledge has no DDI matrix: n_drugs comes from the medication vocabulary")
        return int(self.ddi_adjacency.shape[0])

    @property
    def n_ddi_pairs(self) -> int | None:
        """Number of unordered interacting pairs (off-diagonal); None without a DDI matrix."""
        if self.ddi_adjacency is None:
            return None
        return int(np.triu(self.ddi_adjacency, k=1).sum())

    @staticmethod
    def empty(n_drugs: int) -> "DrugKnowledge":
        """Knowledge with no interactions (for data sets that carry none)."""
        return DrugKnowledge(ddi_adjacency=np.zeros((n_drugs, n_drugs), dtype=np.float32))


def cooccurrence_adjacency(multi_hot_visits: np.ndarray) -> np.ndarray:
    """Binary drug co-prescription graph from visits.

    Args:
        multi_hot_visits: ``[n_visits, n_drugs]`` 0/1 medications of the visits to use
            (the training split only, to avoid leaking test prescriptions).

    Returns:
        ``[n_drugs, n_drugs]`` float32, 1 where two different drugs share a visit, zero diagonal.
    """
    visits = np.asarray(multi_hot_visits, dtype=np.float32)
    counts = visits.T @ visits
    adjacency = (counts > 0).astype(np.float32)
    np.fill_diagonal(adjacency, 0.0)
    return adjacency
