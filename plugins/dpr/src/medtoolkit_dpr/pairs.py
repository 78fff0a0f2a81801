"""The node and edge layout of (visit, package graph) pairs, built without a loop over pairs.

DPR scores a package graph ``j`` for a visit ``i``; the mask ``m_i`` makes the graph's node
states depend on the visit, so each pair gets its own copy of the graph's nodes
(*pair-nodes*) and edges (*pair-edges*). :func:`pair_layout` lays them out with
``repeat_interleave`` of the graph sizes: the pair-nodes of pair ``p`` are consecutive, in
the graph's node order, and so are its pair-edges (in the graph's edge order).

A *unit* is what gets its own copy: a (visit, graph) pair, or just a graph when nothing
depends on the visit (then ``unit_graph = arange(G)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PairLayout:
    """Pair-nodes and pair-edges of ``n_units`` units (see the module docstring).

    Attributes:
        n_units: number of units ``P``.
        node_unit: ``[PN]`` int64 unit of each pair-node.
        node_source: ``[PN]`` int64 graph node (global id in the graph batch) of each pair-node.
        edge_unit: ``[PE]`` int64 unit of each pair-edge.
        edge_source: ``[PE]`` int64 pair-node id of the edge's source ``v``.
        edge_target: ``[PE]`` int64 pair-node id of the edge's target ``u`` (message ``v -> u``).
        edge_origin: ``[PE]`` int64 graph edge (column of ``edge_index``) of each pair-edge.
    """

    n_units: int
    node_unit: torch.Tensor
    node_source: torch.Tensor
    edge_unit: torch.Tensor
    edge_source: torch.Tensor
    edge_target: torch.Tensor
    edge_origin: torch.Tensor

    @property
    def n_nodes(self) -> int:
        """Number of pair-nodes ``PN``."""
        return int(self.node_unit.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of pair-edges ``PE``."""
        return int(self.edge_unit.shape[0])


def _exclusive_cumsum(counts: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(counts, 0) - counts


def _ranges(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(owner, offset)`` of ``sum(counts)`` items: item ``k`` is the ``offset``-th of ``owner``."""
    owners = torch.arange(counts.shape[0], device=counts.device).repeat_interleave(counts)
    offsets = torch.arange(owners.shape[0], device=counts.device) - _exclusive_cumsum(counts)[owners]
    return owners, offsets


def pair_layout(ptr: torch.Tensor, edge_index: torch.Tensor, unit_graph: torch.Tensor) -> PairLayout:
    """Copy graph ``unit_graph[p]``'s nodes and edges for every unit ``p``.

    Args:
        ptr: ``[G + 1]`` int64 node offsets of the graphs (graph ``g``: nodes ``ptr[g]:ptr[g+1]``).
        edge_index: ``[2, E]`` int64 global node ids, source row 0, target row 1, edges grouped
            by graph in graph order (as :func:`build_package_graphs` and torch_geometric's
            ``Batch`` give them).
        unit_graph: ``[P]`` int64 graph of each unit.

    Returns:
        the :class:`PairLayout`.

    Raises:
        ValueError: the edges are not grouped by graph in ascending order.
    """
    device = ptr.device
    n_graphs = ptr.shape[0] - 1
    node_counts = ptr[1:] - ptr[:-1]
    source, target = edge_index[0], edge_index[1]
    edge_graph = torch.searchsorted(ptr, source, right=True) - 1
    if edge_graph.numel() and bool((edge_graph[1:] < edge_graph[:-1]).any()):
        raise ValueError("pair_layout: edge_index must list the edges graph by graph (ascending graph order)")
    edge_counts = torch.bincount(edge_graph, minlength=n_graphs)
    edge_ptr = _exclusive_cumsum(edge_counts)

    unit_nodes = node_counts[unit_graph]
    node_unit, node_offset = _ranges(unit_nodes)
    node_source = ptr[unit_graph][node_unit] + node_offset
    unit_node_start = _exclusive_cumsum(unit_nodes)

    edge_unit, edge_offset = _ranges(edge_counts[unit_graph])
    graph = unit_graph[edge_unit]
    origin = edge_ptr[graph] + edge_offset
    base = unit_node_start[edge_unit] - ptr[graph]
    return PairLayout(
        n_units=int(unit_graph.shape[0]),
        node_unit=node_unit,
        node_source=node_source,
        edge_unit=edge_unit,
        edge_source=base + source[origin],
        edge_target=base + target[origin],
        edge_origin=origin.to(device),
    )
