"""Package graphs: one small directed drug graph per medication set, batched without a loop.

A *package* (a medication set) becomes a graph whose nodes are its drugs and whose edges are
the drug pairs the training data or the drug knowledge relates. Which pairs are edges, and the
numbers attached to them, are fixed once per split by :class:`PackageGraphRules`
(:func:`package_graph_rules`) from

* the training co-prescription counts ``pair_counts [n, n]`` and drug counts ``drug_counts [n]``
  (``schema.require_statistic(pair_counts("medications", "medications"))`` and
  ``code_counts("medications")``), giving the co-occurrence proportion
  ``p[v, u] = pair_counts[v, u] / drug_counts[v]`` (the share of visits prescribing ``v``
  that also prescribe ``u``);
* an optional directed relation matrix ``relation [n, n]`` (values of
  :class:`~medtoolkit.knowledge.ddi_types.Relation`: NONE 0, SYNERGY 1, ANTAGONISM 2,
  UNKNOWN 3; ``relation[v, u]`` is the effect of ``v`` on ``u``) and which drugs the
  relation source covers.

:func:`build_package_graphs` then cuts the graphs of ``G`` sets at once into a
``torch_geometric.data.Batch`` (the same tensors ``Batch.from_data_list`` gives for the
per-graph ``Data`` objects). ``torch_geometric`` is imported lazily: only code building
graphs needs it.

Shapes: ``n`` drugs, ``G`` graphs, ``N`` nodes (drugs of all graphs), ``E`` edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["PackageGraphRules", "build_package_graphs", "package_graph_rules", "require_torch_geometric"]

# the relation values (medtoolkit.knowledge.ddi_types.Relation), repeated to keep this module light
_NONE, _SYNERGY, _ANTAGONISM, _UNKNOWN = 0, 1, 2, 3
_INSTALL_HINT = 'pip install torch-geometric  (or: pip install "medtoolkit[dpr]")'


def require_torch_geometric() -> Any:
    """The ``torch_geometric.data`` module.

    Raises:
        ImportError: torch_geometric is not installed (the message says how to install it).
    """
    try:
        import torch_geometric.data as pyg_data
    except ImportError as error:
        raise ImportError(f"package graphs need torch_geometric, which is not installed: {_INSTALL_HINT}") from error
    return pyg_data


@dataclass(frozen=True, eq=False)
class PackageGraphRules:
    """Which drug pairs are edges of a package graph and the values their edges carry.

    Entry ``[v, u]`` describes the directed edge ``v -> u`` (a message from ``v`` to ``u``).
    Built by :func:`package_graph_rules`; all tensors live on the CPU.

    Attributes:
        edge_exists: ``[n, n]`` bool, whether ``v -> u`` is an edge when both drugs are in a
            package (never on the diagonal).
        prior: ``[n, n]`` float32 initial edge weight: +1 for synergy, -1 for antagonism,
            otherwise the co-occurrence proportion ``p[v, u]``.
        label: ``[n, n]`` int64 edge type to predict: 1 synergy, 2 antagonism, 0 no
            interaction (both drugs covered by the relation source, none listed), -1 unknown
            (not to be predicted).
        cooccurrence: ``[n, n]`` float32 co-occurrence proportion ``p[v, u]``.
    """

    edge_exists: torch.Tensor
    prior: torch.Tensor
    label: torch.Tensor
    cooccurrence: torch.Tensor

    @property
    def n_drugs(self) -> int:
        """``n``, the number of drugs."""
        return int(self.edge_exists.shape[0])


def _square(value: Any, name: str, n: int, dtype: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != (n, n):
        raise ValueError(f"{name} must have shape ({n}, {n}) to match drug_counts, got {array.shape}")
    return array.astype(dtype, copy=False)


def package_graph_rules(
    pair_counts: np.ndarray,
    drug_counts: np.ndarray,
    relation: np.ndarray | None = None,
    covered: np.ndarray | None = None,
    threshold: float = 0.01,
) -> PackageGraphRules:
    """The edge rules of package graphs from training counts and drug relations.

    ``p[v, u] = pair_counts[v, u] / drug_counts[v]`` (0 when ``drug_counts[v] == 0``; 0 on
    the diagonal). The edge ``v -> u`` exists iff ``v != u`` and either the relation of
    ``v`` on ``u`` is SYNERGY, ANTAGONISM or UNKNOWN or ``p[v, u] > threshold``. Its prior is
    +1 (SYNERGY), -1 (ANTAGONISM) or ``p[v, u]``; its label 1 (SYNERGY), 2 (ANTAGONISM), 0
    (NONE with both drugs covered: no listed interaction means none), -1 otherwise.

    Args:
        pair_counts: ``[n, n]`` training visits prescribing both drugs.
        drug_counts: ``[n]`` training visits prescribing each drug.
        relation: ``[n, n]`` int relation values (0..3), or None when no relation is known
            (every label is then -1).
        covered: ``[n]`` bool, drugs the relation source covers (None: all of them).
        threshold: co-occurrence proportion above which a pair without a relation is an edge.

    Returns:
        the :class:`PackageGraphRules`.

    Raises:
        ValueError: a shape does not match ``drug_counts``, a count is negative, a relation
            value is outside 0..3 or ``threshold`` is not finite.
    """
    counts = np.asarray(drug_counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"drug_counts must be 1-D [n], got shape {counts.shape}")
    n = counts.shape[0]
    pairs = _square(pair_counts, "pair_counts", n, np.float64)
    if (counts < 0).any() or (pairs < 0).any():
        raise ValueError("pair_counts and drug_counts must not be negative")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    proportion = np.divide(pairs, counts[:, None], out=np.zeros((n, n)), where=counts[:, None] > 0)
    np.fill_diagonal(proportion, 0.0)
    off_diagonal = ~np.eye(n, dtype=bool)

    if relation is None:
        kinds = np.zeros((n, n), dtype=np.int64)
        label = np.full((n, n), -1, dtype=np.int64)
    else:
        kinds = _square(relation, "relation", n, np.int64)
        if kinds.size and (kinds.min() < _NONE or kinds.max() > _UNKNOWN):
            raise ValueError(f"relation values must be 0..3 (NONE, SYNERGY, ANTAGONISM, UNKNOWN), "
                             f"got {kinds.min()}..{kinds.max()}")
        known = np.ones(n, dtype=bool) if covered is None else np.asarray(covered, dtype=bool)
        if known.shape != (n,):
            raise ValueError(f"covered must have shape ({n},) to match drug_counts, got {known.shape}")
        label = np.full((n, n), -1, dtype=np.int64)
        label[(kinds == _NONE) & known[:, None] & known[None, :]] = 0
        label[kinds == _SYNERGY] = 1
        label[kinds == _ANTAGONISM] = 2
    label[~off_diagonal] = -1

    related = kinds != _NONE
    edge_exists = off_diagonal & (related | (proportion > threshold))
    prior = np.where(kinds == _SYNERGY, 1.0, np.where(kinds == _ANTAGONISM, -1.0, proportion))
    return PackageGraphRules(
        edge_exists=torch.from_numpy(edge_exists),
        prior=torch.from_numpy(prior.astype(np.float32)),
        label=torch.from_numpy(label),
        cooccurrence=torch.from_numpy(proportion.astype(np.float32)),
    )


def build_package_graphs(sets: np.ndarray | torch.Tensor, rules: PackageGraphRules) -> Any:
    """The package graphs of ``G`` medication sets as one ``torch_geometric.data.Batch``.

    Graph ``g`` has one node per drug of ``sets[g]`` in ascending drug order and the edges
    ``v -> u`` of ``rules.edge_exists`` between its drugs. Fully vectorised: the candidate
    pairs of every graph (its nodes squared) are enumerated with ``repeat_interleave`` and
    filtered, with no Python loop over graphs, nodes or edges.

    Args:
        sets: ``[G, n]`` bool (or 0/1) medication sets; an empty set gives a graph without
            nodes.
        rules: the split's edge rules (same ``n``).

    Returns:
        a ``Batch`` (CPU) with ``x`` ``[N]`` int64 drug indices, ``edge_index`` ``[2, E]``
        int64 global node ids (row 0 the source ``v``, row 1 the target ``u``; edges ordered
        by graph, then source, then target), ``edge_prior`` ``[E]`` float32, ``edge_label``
        ``[E]`` int64, ``edge_cooccurrence`` ``[E]`` float32, ``batch`` ``[N]``, ``ptr``
        ``[G + 1]`` and ``num_graphs = G``; ``to_data_list()`` / ``get_example`` work as
        for ``Batch.from_data_list``.

    Raises:
        ValueError: ``sets`` is not ``[G, n]``.
        ImportError: torch_geometric is missing.
    """
    pyg_data = require_torch_geometric()
    matrix = torch.as_tensor(np.asarray(sets) if not isinstance(sets, torch.Tensor) else sets).to("cpu")
    if matrix.dim() != 2 or matrix.shape[1] != rules.n_drugs:
        raise ValueError(f"sets must be [G, {rules.n_drugs}] medication sets, got shape {tuple(matrix.shape)}")
    matrix = matrix != 0
    n_graphs = matrix.shape[0]
    graph_of_node, drug = matrix.nonzero(as_tuple=True)  # row-major: by graph, then drug
    sizes = matrix.sum(dim=1)
    ptr = torch.zeros(n_graphs + 1, dtype=torch.int64)
    torch.cumsum(sizes, dim=0, out=ptr[1:])

    # every ordered node pair (s, t) inside a graph: s repeated size(g) times, t running over g
    node_sizes = sizes[graph_of_node]
    source = torch.repeat_interleave(torch.arange(drug.numel()), node_sizes)
    pair_start = torch.cumsum(node_sizes, dim=0) - node_sizes
    offset = torch.arange(source.numel()) - torch.repeat_interleave(pair_start, node_sizes)
    target = ptr[graph_of_node[source]] + offset
    keep = rules.edge_exists[drug[source], drug[target]]
    source, target = source[keep], target[keep]
    v, u = drug[source], drug[target]

    edges_per_graph = torch.bincount(graph_of_node[source], minlength=n_graphs)
    edge_ptr = torch.zeros(n_graphs + 1, dtype=torch.int64)
    torch.cumsum(edges_per_graph, dim=0, out=edge_ptr[1:])
    zeros = torch.zeros(n_graphs, dtype=torch.int64)

    graphs = pyg_data.Batch(
        _base_cls=pyg_data.Data,
        x=drug,
        edge_index=torch.stack([source, target]),
        edge_prior=rules.prior[v, u],
        edge_label=rules.label[v, u],
        edge_cooccurrence=rules.cooccurrence[v, u],
        batch=graph_of_node,
        ptr=ptr,
    )
    graphs._num_graphs = n_graphs
    graphs._slice_dict = {"x": ptr, "edge_index": edge_ptr, "edge_prior": edge_ptr, "edge_label": edge_ptr,
                          "edge_cooccurrence": edge_ptr}
    graphs._inc_dict = {"x": zeros, "edge_index": ptr[:-1], "edge_prior": zeros, "edge_label": zeros,
                        "edge_cooccurrence": zeros}
    return graphs
