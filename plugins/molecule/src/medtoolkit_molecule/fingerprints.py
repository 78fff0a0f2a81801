"""Weisfeiler-Lehman atom fingerprints, the atom input of SafeDrug's molecule encoder.

Atoms start with a label from ``(atomic number, aromatic flag)`` (SafeDrug's "symbol and
aromaticity") and bonds with their type. Each of ``radius`` rounds relabels

* every atom ``v`` with the key ``(label_v, sorted((label_u, bond_uv) for u in neighbours(v)))``,
* every bond ``uv`` with ``(sorted(label'_u, label'_v), bond_uv)`` from the new atom labels,

as in the reference (Tsubaki et al.'s ``extract_fingerprints``, used by SafeDrug's
``buildMPNN``; reference notes section 1.3). Differences, on purpose:

* Every atom gets a fingerprint, bond-less ones too (an ion of a salt gets the key of an atom
  without neighbours). The reference drops them from its neighbour table, and the molecule
  fails silently (reference notes pitfall 10: ``A02A`` ends with a zero embedding).
* Labels of every round are ranks of the sorted keys of that round over all molecules, so
  the ids do not depend on molecule order or on a dictionary shared between runs, and the
  vocabulary holds final-round keys only. (The reference's dictionary is shared across
  rounds and single-atom molecules, so its 1990 ids also count radius-1 keys.)
* A single-atom molecule goes through the same rounds (its key is "atom without
  neighbours"); the reference gives it its bare atom id.

Edges stay within molecules, so the whole batch of molecules is refined at once.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["MoleculeArrays", "rank_keys", "wl_fingerprints", "wl_refine"]


class MoleculeArrays(Protocol):
    """What :func:`wl_fingerprints` reads of a ``MoleculeGraphs`` (medtoolkit.knowledge.molecules)."""

    atom_features: np.ndarray  # int64 [A, 7]; column 0 atomic number, column 1 aromatic flag
    edge_index: np.ndarray  # int64 [2, E], both directions of every bond
    edge_features: np.ndarray  # int64 [E, 3]; column 0 bond type


def rank_keys(keys: Sequence[Hashable]) -> tuple[np.ndarray, int]:
    """Replace each key by its rank among the distinct keys, sorted.

    Args:
        keys: ``K`` mutually comparable keys (ints or nested tuples of ints).

    Returns:
        ``(ranks [K] int64, number of distinct keys)``.

    Example: ``rank_keys([(2, 1), (0,), (2, 1)])`` gives ``([1, 0, 1], 2)``.
    """
    distinct: list[Any] = sorted(set(keys))
    index = {key: rank for rank, key in enumerate(distinct)}
    return np.fromiter((index[key] for key in keys), dtype=np.int64, count=len(keys)), len(distinct)


def wl_refine(
    atom_labels: Sequence[Hashable],
    edge_index: np.ndarray,
    bond_labels: Sequence[Hashable],
    radius: int,
) -> tuple[np.ndarray, int]:
    """Weisfeiler-Lehman relabelling of a (batched) graph.

    Args:
        atom_labels: ``[A]`` initial atom labels (comparable, e.g. ``(atomic_num, aromatic)``).
        edge_index: ``[2, E]`` int, every bond in both directions (``(v, u)`` and ``(u, v)``).
        bond_labels: ``[E]`` label of each directed edge (the same for both directions).
        radius: number of rounds (0: the ranks of the initial labels).

    Returns:
        ``(ids [A] int64 in 0..n_ids-1, n_ids)``: the atom labels after ``radius`` rounds,
        as ranks of the sorted final keys.

    Raises:
        ValueError: ``radius`` is negative or the arrays disagree in length.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    n_atoms, n_edges = len(atom_labels), edge_index.shape[1]
    if len(bond_labels) != n_edges:
        raise ValueError(f"{len(bond_labels)} bond labels for {n_edges} edges")
    labels, count = rank_keys(list(atom_labels))
    edges, _ = rank_keys(list(bond_labels))
    source, target = edge_index[0].tolist(), edge_index[1].tolist()
    outgoing: list[list[int]] = [[] for _ in range(n_atoms)]
    for e, v in enumerate(source):
        outgoing[v].append(e)
    for _ in range(radius):
        keys = [
            (int(labels[v]), tuple(sorted((int(labels[target[e]]), int(edges[e])) for e in outgoing[v])))
            for v in range(n_atoms)
        ]
        labels, count = rank_keys(keys)
        edge_keys = [
            (min(labels[source[e]], labels[target[e]]), max(labels[source[e]], labels[target[e]]), int(edges[e]))
            for e in range(n_edges)
        ]
        edges, _ = rank_keys([(int(a), int(b), c) for a, b, c in edge_keys])
    return labels, count


def wl_fingerprints(graphs: MoleculeArrays, radius: int = 2) -> tuple[np.ndarray, int]:
    """SafeDrug's atom fingerprints of a batch of molecules.

    Args:
        graphs: a ``MoleculeGraphs`` (atoms of all molecules; edges within molecules).
        radius: Weisfeiler-Lehman rounds.

    Returns:
        ``(ids [A] int64, n_ids)``: fingerprint id of every atom, ids ranked by sorted key.
    """
    features = np.asarray(graphs.atom_features, dtype=np.int64)
    atoms = [(int(number), int(aromatic)) for number, aromatic in features[:, :2]]
    bond_types = np.asarray(graphs.edge_features, dtype=np.int64).reshape(-1, 3)[:, 0]
    bonds = [int(kind) for kind in bond_types]
    return wl_refine(atoms, graphs.edge_index, bonds, radius)
