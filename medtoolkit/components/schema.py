"""``DataSchema``: what components may know about the data (sizes and knowledge, never records)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medtoolkit.components.statistics import parse_statistic
from medtoolkit.data.ehr import MEDICATIONS

if TYPE_CHECKING:
    from medtoolkit.knowledge.molecules import MoleculeGraphs

_CHEM_EXTRA = 'pip install "medtoolkit[chem]"'


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
        smiles: per drug, SMILES strings (optional). Components get molecule graphs built
            from them with :meth:`require_molecules`.
        substructure_mask: ``[n_drugs, n_substructures]`` (optional; see
            :meth:`require_substructures`).
        n_hospitals: number of hospitals (0 when unknown).
        hospital_sizes: ``[n_hospitals]`` int64 number of samples (records) of each hospital
            in the prepared data, a sample counting for the hospital of its first visit (the
            TEMPT paper's "record count of each hospital"; it decides a hospital's size bin in
            grouped evaluation); None when the data has no hospitals.
        hospital_ids: the original id of each hospital index (eICU ``hospitalid``), or ``()``
            when unknown (hospitals are then named by their index).
        drug_frequency: ``[n_drugs]`` share of training visits prescribing each drug (optional).
        molecules: prebuilt molecule graphs (optional; e.g. built by hand in tests without
            rdkit). :meth:`require_molecules` returns them when their ``explicit_hydrogens``
            matches, and otherwise builds graphs from :attr:`smiles`.
        statistics: precomputed training-split statistics by name (optional; e.g. built by
            hand in tests), returned by :meth:`require_statistic` before
            :attr:`statistics_source` is asked. Not compared, not shown in ``repr``.
        statistics_source: computes one statistic by name from the training split
            (``name -> float32 array``; set by the task, see
            :mod:`medtoolkit.components.statistics`); called at most once per name, by
            :meth:`require_statistic`, so nothing is computed that no component asked for.
            None: only :attr:`statistics` are available. Not compared, not shown in ``repr``.
    """

    vocab_sizes: dict[str, int]
    n_drugs: int
    ddi_adjacency: np.ndarray | None
    cooccurrence_adjacency: np.ndarray | None = None
    drug_codes: tuple[str, ...] = ()
    smiles: tuple[tuple[str, ...], ...] | None = None
    substructure_mask: np.ndarray | None = None
    n_hospitals: int = 0
    hospital_sizes: np.ndarray | None = field(default=None, compare=False)
    hospital_ids: tuple[str, ...] = ()
    drug_frequency: np.ndarray | None = field(default=None)
    molecules: "MoleculeGraphs | None" = None
    statistics: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    statistics_source: Callable[[str], np.ndarray] | None = field(default=None, compare=False, repr=False)
    # what require_molecules / require_substructures / require_statistic built, once per option
    _lazy: dict[Any, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

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

    # ------------------------------------------------------------------ molecules
    def _has_smiles(self) -> bool:
        return self.smiles is not None and any(len(per_drug) for per_drug in self.smiles)

    def _check_rdkit(self, component: str, what: str) -> None:
        from medtoolkit.knowledge.molecules import rdkit_available

        if not rdkit_available():
            raise ImportError(f"{component} needs {what} built from SMILES with rdkit, which is not "
                              f"installed: {_CHEM_EXTRA}")

    def _check_smiles_length(self, component: str) -> tuple[tuple[str, ...], ...]:
        assert self.smiles is not None
        if len(self.smiles) != self.n_drugs:
            raise ValueError(f"{component}: the dataset has SMILES for {len(self.smiles)} drugs but "
                             f"{self.n_drugs} drugs")
        return self.smiles

    def require_molecules(self, component: str, explicit_hydrogens: bool = False) -> "MoleculeGraphs":
        """Molecule graphs of the drugs, for a component that cannot work without them.

        Built from :attr:`smiles` with rdkit on first use and kept (once per value of
        ``explicit_hydrogens``), in memory and on disk
        (:func:`~medtoolkit.knowledge.molecules.cached_molecule_graphs` under
        ``$MEDTOOLKIT_CACHE_DIR``, so later runs skip rdkit); :attr:`molecules` is returned
        instead when it was given with the same ``explicit_hydrogens``.

        Args:
            component: what needs the graphs, as the user configured it (e.g.
                ``"encoder 'mpnn'"``).
            explicit_hydrogens: hydrogens as atoms (rdkit ``AddHs``).

        Returns:
            the graphs (``n_drugs`` = :attr:`n_drugs`; unparsable SMILES are in ``failed``).

        Raises:
            ValueError: the dataset has no SMILES; the message names ``component``.
            ImportError: rdkit is not installed; the message names ``component`` and
                ``pip install "medtoolkit[chem]"``.
        """
        key = ("molecules", bool(explicit_hydrogens))
        if key in self._lazy:
            return self._lazy[key]
        if self.molecules is not None and self.molecules.explicit_hydrogens == bool(explicit_hydrogens):
            graphs = self.molecules
        else:
            if not self._has_smiles():
                given = ("" if self.molecules is None else
                         f"; its prebuilt molecules have explicit_hydrogens={self.molecules.explicit_hydrogens}")
                raise ValueError(f"{component} needs molecule graphs, but the dataset has no SMILES "
                                 f"(smiles is none or empty{given}); remove that component or load a "
                                 f"dataset with SMILES")
            self._check_rdkit(component, "molecule graphs")
            from medtoolkit.knowledge.molecules import cached_molecule_graphs

            graphs = cached_molecule_graphs(self._check_smiles_length(component),
                                            explicit_hydrogens=explicit_hydrogens)
        if graphs.n_drugs != self.n_drugs:
            raise ValueError(f"{component}: the molecule graphs cover {graphs.n_drugs} drugs but the "
                             f"dataset has {self.n_drugs}")
        self._lazy[key] = graphs
        self._lazy["last_molecules"] = graphs
        return graphs

    def require_substructures(self, component: str) -> np.ndarray:
        """The drug-to-substructure mask, for a component that cannot work without it.

        :attr:`substructure_mask` when the dataset has one; otherwise BRICS fragments of
        :attr:`smiles` (rdkit, :func:`~medtoolkit.knowledge.molecules.brics_mask`, sorted
        columns), built on first use and kept.

        Args:
            component: what needs the mask, as the user configured it (``"recommender 'safedrug'"``).

        Returns:
            ``[n_drugs, n_substructures]`` float32 0/1 (a row may be all zero).

        Raises:
            ValueError: the dataset has neither a mask nor SMILES, or the mask has the wrong
                number of rows; the message names ``component``.
            ImportError: the mask must be built from SMILES and rdkit is not installed
                (``pip install "medtoolkit[chem]"``).
        """
        if "substructures" in self._lazy:
            return self._lazy["substructures"]
        if self.substructure_mask is not None:
            mask = np.asarray(self.substructure_mask, dtype=np.float32)
            if mask.ndim != 2 or mask.shape[0] != self.n_drugs:
                raise ValueError(f"{component}: the substructure mask has shape {mask.shape}, expected "
                                 f"({self.n_drugs}, n_substructures)")
        else:
            if not self._has_smiles():
                raise ValueError(f"{component} needs a substructure mask, but the dataset has neither a "
                                 f"substructure mask nor SMILES to build one from; remove that component "
                                 f"or load a dataset with one")
            self._check_rdkit(component, "a substructure mask")
            from medtoolkit.knowledge.molecules import brics_mask

            mask, _ = brics_mask(self._check_smiles_length(component))
        self._lazy["substructures"] = mask
        return mask

    def molecule_summary(self) -> dict[str, Any] | None:
        """Counts of the molecule knowledge components used in this run, for the report.

        Returns:
            None when no component asked for molecules or substructures; otherwise
            :meth:`MoleculeGraphs.summary` of the graphs built last (when any) and
            ``"substructures"`` (number of mask columns, when a component asked for them).
        """
        if "last_molecules" not in self._lazy and "substructures" not in self._lazy:
            return None
        summary: dict[str, Any] = {}
        if "last_molecules" in self._lazy:
            summary.update(self._lazy["last_molecules"].summary())
        if "substructures" in self._lazy:
            summary["substructures"] = int(self._lazy["substructures"].shape[1])
        return summary

    # ------------------------------------------------------------------ statistics
    def statistic_shape(self, name: str, component: str) -> tuple[int, ...]:
        """Shape statistic ``name`` has for this schema's vocabularies.

        Args:
            name: a statistic name (:mod:`medtoolkit.components.statistics`).
            component: what asks, as the user configured it (for messages).

        Returns:
            ``(V,)`` for code counts, ``(V_rows, V_cols)`` for pair counts (the medication
            vocabulary has :attr:`n_drugs` codes even when :attr:`vocab_sizes` omits it).

        Raises:
            ValueError: malformed name, or a vocabulary the data lacks; the message names
                ``component`` (and the vocabularies the data has).
        """
        try:
            _, vocabularies = parse_statistic(name)
        except ValueError as error:
            raise ValueError(f"{component}: {error}") from None
        sizes = {MEDICATIONS: self.n_drugs, **self.vocab_sizes}
        for vocabulary in vocabularies:
            if vocabulary not in sizes:
                raise ValueError(f"{component} needs statistic {name!r}, but the data has no {vocabulary!r} "
                                 f"vocabulary (it has: {', '.join(sizes)})")
        return tuple(int(sizes[vocabulary]) for vocabulary in vocabularies)

    def require_statistic(self, name: str, component: str) -> np.ndarray:
        """A training-split count statistic, computed on first use and kept.

        Returns :attr:`statistics` ``[name]`` when given, otherwise what
        :attr:`statistics_source` computes (once per name; later calls return the same
        array). Do not modify the array in place: other components may share it.

        Args:
            name: a statistic name built with
                :func:`~medtoolkit.components.statistics.code_counts` or
                :func:`~medtoolkit.components.statistics.pair_counts`.
            component: what needs it, as the user configured it (``"memory 'x'"``).

        Returns:
            float32 ``[V]`` (code counts) or ``[V_rows, V_cols]`` (pair counts).

        Raises:
            ValueError: malformed name, a vocabulary the data lacks, no precomputed value
                and no source, or a value of the wrong shape; the message names ``component``.
        """
        key = ("statistic", name)
        if key in self._lazy:
            return self._lazy[key]
        expected = self.statistic_shape(name, component)
        if name in self.statistics:
            value = np.asarray(self.statistics[name], dtype=np.float32)
            origin = "the precomputed value"
        elif self.statistics_source is not None:
            value = np.asarray(self.statistics_source(name), dtype=np.float32)
            origin = "the statistics source"
        else:
            given = ", ".join(map(repr, self.statistics)) or "none"
            raise ValueError(f"{component} needs the training statistic {name!r}, but this schema has no "
                             f"statistics source (statistics_source is none) and no precomputed value "
                             f"(precomputed: {given}); build the schema with the task's build_schema")
        if value.shape != expected:
            raise ValueError(f"{component}: statistic {name!r} from {origin} has shape {value.shape}, "
                             f"expected {expected}")
        self._lazy[key] = value
        return value

    def statistics_summary(self) -> dict[str, list[int]]:
        """The statistics components required so far, for the report.

        Returns:
            ``{name: shape}`` in name order (empty when no component asked for any).
        """
        found = {key[1]: list(value.shape) for key, value in self._lazy.items()
                 if isinstance(key, tuple) and key[0] == "statistic"}
        return dict(sorted(found.items()))
