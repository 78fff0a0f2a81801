"""``DataSchema``: what components may know about the data (sizes and knowledge, never records)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DataSchema:
    """Typed facts derived from a dataset and its training split.

    Attributes:
        vocab_sizes: number of codes per vocabulary (``{"diagnoses": 1958, ...}``).
        n_drugs: size of the medication vocabulary (width of every logit tensor).
        ddi_adjacency: ``[n_drugs, n_drugs]`` float32 0/1 interaction matrix, or None when
            the dataset has no DDI matrix (see :attr:`has_ddi` and :meth:`require_ddi`).
        cooccurrence_adjacency: ``[n_drugs, n_drugs]`` float32 co-prescription graph built
            from the training split only (None before a split exists).
        drug_codes: the medication codes in index order.
        smiles: per drug, SMILES strings (optional).
        substructure_mask: ``[n_drugs, n_substructures]`` (optional).
        n_hospitals: number of hospitals (0 when unknown).
        drug_frequency: ``[n_drugs]`` share of training visits prescribing each drug (optional).
    """

    vocab_sizes: dict[str, int]
    n_drugs: int
    ddi_adjacency: np.ndarray | None
    cooccurrence_adjacency: np.ndarray | None = None
    drug_codes: tuple[str, ...] = ()
    smiles: tuple[tuple[str, ...], ...] | None = None
    substructure_mask: np.ndarray | None = None
    n_hospitals: int = 0
    drug_frequency: np.ndarray | None = field(default=None)

    @property
    def has_ddi(self) -> bool:
        """Whether the dataset has a DDI matrix (False: DDI metrics are reported as n/a)."""
        return self.ddi_adjacency is not None

    def require_ddi(self, component: str) -> np.ndarray:
        """The DDI matrix, for a component that cannot work without it.

        Args:
            component: what needs the matrix, as the user configured it (e.g.
                ``"loss 'ddi'"``, ``"memory 'gcn' with ddi_in_memory=true"``).

        Returns:
            the ``[n_drugs, n_drugs]`` matrix.

        Raises:
            ValueError: the dataset has no DDI matrix; the message names ``component``.
        """
        if self.ddi_adjacency is None:
            raise ValueError(
                f"{component} needs a DDI matrix, but the dataset has no DDI matrix "
                f"(ddi_adjacency is none); remove that component or load a dataset with one"
            )
        return self.ddi_adjacency

    def vocab_size(self, name: str) -> int:
        """Size of vocabulary ``name``; a clear error when the data has no such vocabulary."""
        try:
            return self.vocab_sizes[name]
        except KeyError:
            raise KeyError(
                f"the data has no {name!r} vocabulary (it has: {', '.join(self.vocab_sizes)})"
            ) from None
