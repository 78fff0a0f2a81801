"""SMILES per ATC class, BRICS substructure masks and molecule graphs.

SMILES come from the shipped ``atc3_to_smiles.csv`` (MIT; 133 ATC3 classes, 284 SMILES). Unlike
SafeDrug (first 3 of a Python set: hash-randomised, reference notes pitfall 4), the SMILES of a
class are **sorted** and the first ``max_per_class`` kept, so the choice is the same in every run.
BRICS fragments are computed with rdkit (optional extra ``medtoolkit[chem]``), and the fragment
columns are **sorted** (SafeDrug's ``list(set(...))`` order is not reproducible).
:func:`molecule_graphs` turns the SMILES into plain numpy atom/bond arrays
(:class:`MoleculeGraphs`) for drug encoders; it needs rdkit too, and never needs torch.
:func:`cached_molecule_graphs` keeps them on disk (one ``.npz`` of plain arrays per SMILES
vocabulary, loaded with ``allow_pickle=False``) so rdkit runs once per vocabulary, not per run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medtoolkit.knowledge._resources import resource_path

__all__ = ["ATOM_FEATURES", "ATOM_FEATURE_SIZES", "BOND_FEATURES", "BOND_FEATURE_SIZES",
           "BricsDecomposition", "MOLECULE_CACHE_VERSION", "MoleculeGraphs", "SMILES_PROVENANCE",
           "brics_decompose", "brics_mask", "cached_molecule_graphs", "molecule_cache_path", "molecule_graphs",
           "rdkit_available", "smiles_for"]

logger = logging.getLogger(__name__)

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


def _import_rdkit(what: str = "BRICS substructures") -> tuple[Any, Any]:
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import BRICS
    except ImportError as error:
        raise ImportError(
            f"{what} need rdkit, which is not installed: "
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


# ---------------------------------------------------------------------------------- molecule graphs

#: columns of :attr:`MoleculeGraphs.atom_features`
ATOM_FEATURES: tuple[str, ...] = ("atomic_num", "aromatic", "degree", "formal_charge", "total_hs",
                                  "hybridization", "in_ring")
#: number of values of each atom feature column (ids are ``0 .. size - 1``)
ATOM_FEATURE_SIZES: tuple[int, ...] = (120, 2, 8, 11, 9, 8, 2)
#: columns of :attr:`MoleculeGraphs.edge_features`
BOND_FEATURES: tuple[str, ...] = ("bond_type", "conjugated", "in_ring")
#: number of values of each bond feature column
BOND_FEATURE_SIZES: tuple[int, ...] = (5, 2, 2)

# rdkit hybridization name -> id; anything else (SP2D, OTHER) is 7
_HYBRIDIZATION_IDS = {"UNSPECIFIED": 0, "S": 1, "SP": 2, "SP2": 3, "SP3": 4, "SP3D": 5, "SP3D2": 6}
# rdkit bond type name -> id; anything else (dative, ionic, ...) is 4
_BOND_TYPE_IDS = {"SINGLE": 0, "DOUBLE": 1, "TRIPLE": 2, "AROMATIC": 3}


@dataclass(frozen=True, repr=False)
class MoleculeGraphs:
    """All molecules of a drug vocabulary as one disjoint graph of plain numpy arrays.

    A = atoms, E = directed edges (2 per bond), M = molecules (parsed SMILES). Molecules are
    ordered by drug, then by the drug's SMILES order; atoms and edges by molecule. A SMILES
    with several fragments (a salt such as ``[Na+].[Cl-]``) is one molecule; atoms without
    bonds are kept (degree 0).

    Attributes:
        atom_features: ``[A, 7]`` int64 ids, columns :data:`ATOM_FEATURES`: atomic number
            (0..118, 119 = other), aromatic 0/1, degree (0..6, 7 = more), formal charge + 5
            (clipped to 0..10), total hydrogens (clipped to 0..8), hybridization (0
            unspecified, 1 s, 2 sp, 3 sp2, 4 sp3, 5 sp3d, 6 sp3d2, 7 other), in ring 0/1.
            Column sizes :data:`ATOM_FEATURE_SIZES`.
        edge_index: ``[2, E]`` int64 (source, target) atom indices; bond ``k`` gives edges
            ``2k`` (begin -> end) and ``2k + 1`` (end -> begin).
        edge_features: ``[E, 3]`` int64, columns :data:`BOND_FEATURES`: bond type (0 single,
            1 double, 2 triple, 3 aromatic, 4 other), conjugated 0/1, in ring 0/1.
        atom_molecule: ``[A]`` int64 molecule of each atom (non-decreasing).
        molecule_drug: ``[M]`` int64 drug of each molecule (non-decreasing).
        molecule_smiles: ``[M]`` the SMILES of each molecule.
        n_drugs: size of the drug vocabulary (drugs without molecules included).
        failed: ``(drug, smiles, reason)`` for every SMILES rdkit could not turn into a graph.
        drugs_without_molecules: drugs with no SMILES, or only failed ones (sorted).
        explicit_hydrogens: whether hydrogens are atoms of the graphs (rdkit ``AddHs``).
        rdkit_version: rdkit version that built the graphs ("" when built by hand).
    """

    atom_features: np.ndarray
    edge_index: np.ndarray
    edge_features: np.ndarray
    atom_molecule: np.ndarray
    molecule_drug: np.ndarray
    molecule_smiles: tuple[str, ...]
    n_drugs: int
    failed: tuple[tuple[int, str, str], ...] = ()
    drugs_without_molecules: tuple[int, ...] = ()
    explicit_hydrogens: bool = False
    rdkit_version: str = ""

    def __post_init__(self) -> None:
        arrays = {name: np.asarray(getattr(self, name), dtype=np.int64)
                  for name in ("atom_features", "edge_index", "edge_features", "atom_molecule",
                               "molecule_drug")}
        for name, array in arrays.items():
            object.__setattr__(self, name, array)
        n_atoms, n_edges = len(arrays["atom_molecule"]), arrays["edge_index"].shape[-1]
        n_molecules = len(arrays["molecule_drug"])
        expected = {"atom_features": (n_atoms, len(ATOM_FEATURES)), "edge_index": (2, n_edges),
                    "edge_features": (n_edges, len(BOND_FEATURES)), "atom_molecule": (n_atoms,),
                    "molecule_drug": (n_molecules,)}
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise ValueError(f"MoleculeGraphs.{name} must have shape {shape}, got {arrays[name].shape}")
        if len(self.molecule_smiles) != n_molecules:
            raise ValueError(f"MoleculeGraphs has {n_molecules} molecules but "
                             f"{len(self.molecule_smiles)} molecule_smiles")
        if n_edges and not (0 <= arrays["edge_index"].min() and arrays["edge_index"].max() < n_atoms):
            raise ValueError("MoleculeGraphs.edge_index refers to atoms that do not exist")
        if n_atoms and (np.any(np.diff(arrays["atom_molecule"]) < 0) or arrays["atom_molecule"][0] < 0
                        or arrays["atom_molecule"][-1] >= n_molecules):
            raise ValueError("MoleculeGraphs.atom_molecule must be non-decreasing molecule indices")
        if n_molecules and (np.any(np.diff(arrays["molecule_drug"]) < 0) or arrays["molecule_drug"][0] < 0
                            or arrays["molecule_drug"][-1] >= self.n_drugs):
            raise ValueError("MoleculeGraphs.molecule_drug must be non-decreasing drug indices < n_drugs")

    def __repr__(self) -> str:
        counts = ", ".join(f"{key}={value}" for key, value in self.summary().items())
        return f"MoleculeGraphs({counts})"

    @property
    def n_atoms(self) -> int:
        """Number of atoms A."""
        return int(self.atom_molecule.shape[0])

    @property
    def n_bonds(self) -> int:
        """Number of bonds (E / 2)."""
        return int(self.edge_index.shape[1] // 2)

    @property
    def n_molecules(self) -> int:
        """Number of molecules M."""
        return int(self.molecule_drug.shape[0])

    def summary(self) -> dict[str, int | bool]:
        """Counts for run reports.

        Returns:
            ``{"drugs", "molecules", "atoms", "bonds", "failed", "drugs_without_molecules"}``
            counts and ``"explicit_hydrogens"``.
        """
        return {"drugs": int(self.n_drugs), "molecules": self.n_molecules, "atoms": self.n_atoms,
                "bonds": self.n_bonds, "failed": len(self.failed),
                "drugs_without_molecules": len(self.drugs_without_molecules),
                "explicit_hydrogens": bool(self.explicit_hydrogens)}


def _atom_row(atom: Any) -> list[int]:
    atomic_num = atom.GetAtomicNum()
    return [
        atomic_num if 0 <= atomic_num <= 118 else 119,
        int(atom.GetIsAromatic()),
        min(atom.GetDegree(), 7),
        min(max(atom.GetFormalCharge() + 5, 0), 10),
        min(atom.GetTotalNumHs(includeNeighbors=True), 8),
        _HYBRIDIZATION_IDS.get(str(atom.GetHybridization()), 7),
        int(atom.IsInRing()),
    ]


def _molecule_arrays(Chem: Any, smiles: str, explicit_hydrogens: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atom features ``[a, 7]``, local edge index ``[2, e]`` and edge features ``[e, 3]`` of one SMILES.

    Raises:
        ValueError: rdkit cannot parse ``smiles`` or it has no atoms (the reason is the message).
    """
    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None:
        raise ValueError("rdkit could not parse it")
    if explicit_hydrogens:
        molecule = Chem.AddHs(molecule)
    if molecule.GetNumAtoms() == 0:
        raise ValueError("no atoms")
    atoms = np.array([_atom_row(atom) for atom in molecule.GetAtoms()], dtype=np.int64)
    edges = np.zeros((2, 2 * molecule.GetNumBonds()), dtype=np.int64)
    features = np.zeros((2 * molecule.GetNumBonds(), len(BOND_FEATURES)), dtype=np.int64)
    for k, bond in enumerate(molecule.GetBonds()):
        begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        edges[:, 2 * k] = (begin, end)
        edges[:, 2 * k + 1] = (end, begin)
        features[2 * k] = features[2 * k + 1] = (_BOND_TYPE_IDS.get(str(bond.GetBondType()), 4),
                                                 int(bond.GetIsConjugated()), int(bond.IsInRing()))
    return atoms, edges, features


def molecule_graphs(smiles_lists: Sequence[Sequence[str]], explicit_hydrogens: bool = False) -> MoleculeGraphs:
    """Molecule graphs of every drug's SMILES, as numpy arrays (see :class:`MoleculeGraphs`).

    A SMILES rdkit cannot parse is recorded in ``failed`` with the reason, never raised; a
    drug with no SMILES, or only failed ones, is listed in ``drugs_without_molecules`` (the
    drug encoder decides what such a drug gets).

    Args:
        smiles_lists: per drug (vocabulary order), its SMILES; ``len`` is ``n_drugs``.
        explicit_hydrogens: add hydrogens as atoms (rdkit ``AddHs``), as SafeDrug does.

    Returns:
        the graphs of all parsed SMILES.

    Raises:
        ImportError: rdkit is missing (``pip install "medtoolkit[chem]"``).
    """
    Chem, _ = _import_rdkit("molecule graphs")
    import rdkit

    atom_blocks: list[np.ndarray] = []
    edge_blocks: list[np.ndarray] = []
    feature_blocks: list[np.ndarray] = []
    atom_molecule: list[np.ndarray] = []
    molecule_drug: list[int] = []
    molecule_smiles: list[str] = []
    failed: list[tuple[int, str, str]] = []
    without: list[int] = []
    n_atoms = 0
    for drug, smiles_list in enumerate(smiles_lists):
        parsed = 0
        for smiles in smiles_list:
            try:
                atoms, edges, features = _molecule_arrays(Chem, str(smiles), explicit_hydrogens)
            except Exception as error:  # noqa: BLE001 - rdkit raises various errors; recorded, not hidden
                failed.append((drug, str(smiles), str(error) or type(error).__name__))
                continue
            atom_blocks.append(atoms)
            edge_blocks.append(edges + n_atoms)
            feature_blocks.append(features)
            atom_molecule.append(np.full(len(atoms), len(molecule_drug), dtype=np.int64))
            molecule_drug.append(drug)
            molecule_smiles.append(str(smiles))
            n_atoms += len(atoms)
            parsed += 1
        if parsed == 0:
            without.append(drug)
    return MoleculeGraphs(
        atom_features=np.concatenate(atom_blocks) if atom_blocks else np.zeros((0, len(ATOM_FEATURES)), np.int64),
        edge_index=np.concatenate(edge_blocks, axis=1) if edge_blocks else np.zeros((2, 0), np.int64),
        edge_features=(np.concatenate(feature_blocks) if feature_blocks
                       else np.zeros((0, len(BOND_FEATURES)), np.int64)),
        atom_molecule=np.concatenate(atom_molecule) if atom_molecule else np.zeros(0, np.int64),
        molecule_drug=np.asarray(molecule_drug, dtype=np.int64),
        molecule_smiles=tuple(molecule_smiles),
        n_drugs=len(smiles_lists),
        failed=tuple(failed),
        drugs_without_molecules=tuple(without),
        explicit_hydrogens=bool(explicit_hydrogens),
        rdkit_version=str(rdkit.__version__),
    )


# ---------------------------------------------------------------------------- on-disk cache

#: bump when the layout of a cache file or the features of :func:`molecule_graphs` change
MOLECULE_CACHE_VERSION = 1
_ARRAY_FIELDS = ("atom_features", "edge_index", "edge_features", "atom_molecule", "molecule_drug")


def _cache_key(smiles_lists: Sequence[Sequence[str]], explicit_hydrogens: bool, rdkit_version: str) -> str:
    """SHA-256 of the format version, the SMILES lists, ``explicit_hydrogens`` and the rdkit version."""
    payload = {"format": MOLECULE_CACHE_VERSION, "smiles": [[str(s) for s in lst] for lst in smiles_lists],
               "explicit_hydrogens": bool(explicit_hydrogens), "rdkit": str(rdkit_version)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def molecule_cache_path(smiles_lists: Sequence[Sequence[str]], explicit_hydrogens: bool = False,
                        cache_dir: Path | str | None = None) -> Path:
    """Where :func:`cached_molecule_graphs` keeps the graphs of ``smiles_lists``.

    Args:
        smiles_lists: per drug, its SMILES.
        explicit_hydrogens: as for :func:`molecule_graphs`.
        cache_dir: cache root; None = :func:`medtoolkit.data.cache.default_cache_dir`
            (``$MEDTOOLKIT_CACHE_DIR`` or ``~/.cache/medtoolkit``).

    Returns:
        ``<cache_dir>/molecules/<sha256>.npz``.

    Raises:
        ImportError: rdkit is missing (its version is part of the key).
    """
    _import_rdkit("molecule graphs")
    import rdkit

    if cache_dir is None:
        from medtoolkit.data.cache import default_cache_dir

        cache_dir = default_cache_dir()
    key = _cache_key(smiles_lists, explicit_hydrogens, str(rdkit.__version__))
    return Path(cache_dir) / "molecules" / f"{key}.npz"


def _save_graphs(graphs: MoleculeGraphs, key: str, handle: Any) -> None:
    meta = {"format": MOLECULE_CACHE_VERSION, "key": key, "n_drugs": int(graphs.n_drugs),
            "molecule_smiles": list(graphs.molecule_smiles),
            "failed": [[int(d), str(s), str(r)] for d, s, r in graphs.failed],
            "drugs_without_molecules": [int(d) for d in graphs.drugs_without_molecules],
            "explicit_hydrogens": bool(graphs.explicit_hydrogens), "rdkit_version": str(graphs.rdkit_version)}
    arrays = {name: np.asarray(getattr(graphs, name), dtype=np.int64) for name in _ARRAY_FIELDS}
    arrays["meta"] = np.frombuffer(json.dumps(meta, ensure_ascii=True).encode("ascii"), dtype=np.uint8)
    np.savez(handle, **arrays)


def _load_graphs(path: Path, key: str) -> MoleculeGraphs:
    """Read a cache file, checking everything; any problem raises ``ValueError``."""
    if path.is_symlink():
        raise ValueError("is a symlink (cache entries are plain files)")
    if not path.is_file():
        raise ValueError("is not a regular file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            if names != {*_ARRAY_FIELDS, "meta"}:
                raise ValueError(f"unexpected arrays {sorted(names)}")
            arrays = {name: npz[name] for name in names}
        for name in _ARRAY_FIELDS:
            if arrays[name].dtype != np.int64:
                raise ValueError(f"{name} has dtype {arrays[name].dtype}, expected int64")
        if arrays["meta"].dtype != np.uint8 or arrays["meta"].ndim != 1:
            raise ValueError("meta is not a byte array")
        meta = json.loads(arrays["meta"].tobytes().decode("ascii"))
        if not isinstance(meta, dict):
            raise ValueError("meta is not an object")
        if meta.get("format") != MOLECULE_CACHE_VERSION or meta.get("key") != key:
            raise ValueError(f"format {meta.get('format')!r} / key do not match this entry")
        failed = tuple((int(d), str(s), str(r)) for d, s, r in meta["failed"])
        if not (isinstance(meta["n_drugs"], int) and isinstance(meta["explicit_hydrogens"], bool)
                and isinstance(meta["rdkit_version"], str)
                and all(isinstance(s, str) for s in meta["molecule_smiles"])
                and all(isinstance(d, int) for d in meta["drugs_without_molecules"])):
            raise ValueError("meta fields have the wrong types")
        return MoleculeGraphs(
            **{name: arrays[name] for name in _ARRAY_FIELDS},
            molecule_smiles=tuple(meta["molecule_smiles"]),
            n_drugs=meta["n_drugs"],
            failed=failed,
            drugs_without_molecules=tuple(meta["drugs_without_molecules"]),
            explicit_hydrogens=meta["explicit_hydrogens"],
            rdkit_version=meta["rdkit_version"],
        )
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoding problem (bad zip, CRC, JSON, keys) means "rebuild"
        raise ValueError(f"cannot decode ({type(error).__name__}: {error})") from None


def cached_molecule_graphs(smiles_lists: Sequence[Sequence[str]], explicit_hydrogens: bool = False,
                           cache_dir: Path | str | None = None) -> MoleculeGraphs:
    """:func:`molecule_graphs`, kept on disk so rdkit builds them once per SMILES vocabulary.

    The graphs are stored as one ``.npz`` of plain arrays (the SMILES, failures and drugs
    without molecules as a JSON byte array inside it; read with ``allow_pickle=False``) at
    :func:`molecule_cache_path`, keyed by a SHA-256 of :data:`MOLECULE_CACHE_VERSION`, the
    SMILES lists, ``explicit_hydrogens`` and the rdkit version. The file is written to a
    temporary file and moved into place (``os.replace``), so readers never see half a file.
    A corrupt, malformed or symlinked entry is rebuilt with a ``RuntimeWarning`` (a symlink
    loses the link only, never its target); an unwritable cache is logged and skipped.

    Args:
        smiles_lists: per drug (vocabulary order), its SMILES.
        explicit_hydrogens: as for :func:`molecule_graphs`.
        cache_dir: cache root; None = :func:`medtoolkit.data.cache.default_cache_dir`
            (``$MEDTOOLKIT_CACHE_DIR`` or ``~/.cache/medtoolkit``).

    Returns:
        the graphs, equal field by field to ``molecule_graphs(smiles_lists, explicit_hydrogens)``.

    Raises:
        ImportError: rdkit is missing (``pip install "medtoolkit[chem]"``).
    """
    path = molecule_cache_path(smiles_lists, explicit_hydrogens, cache_dir)
    key = path.stem
    if path.is_symlink() or path.exists():
        try:
            graphs = _load_graphs(path, key)
        except ValueError as error:
            warnings.warn(f"molecule graph cache entry {path} is corrupt, rebuilding: {error}",
                          RuntimeWarning, stacklevel=2)
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
        else:
            if graphs.n_drugs == len(smiles_lists):
                return graphs
            warnings.warn(f"molecule graph cache entry {path} covers {graphs.n_drugs} drugs, not "
                          f"{len(smiles_lists)}; rebuilding", RuntimeWarning, stacklevel=2)
    graphs = molecule_graphs(smiles_lists, explicit_hydrogens=explicit_hydrogens)
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{key[:12]}-", suffix=".tmp", dir=path.parent)
        with os.fdopen(descriptor, "wb") as handle:
            _save_graphs(graphs, key, handle)
        os.replace(temporary, path)
        temporary = None
    except OSError as error:  # an unwritable cache must not stop the run
        logger.warning("could not write molecule graph cache %s: %s", path, error)
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    return graphs
