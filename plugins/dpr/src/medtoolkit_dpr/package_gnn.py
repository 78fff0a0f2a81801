"""DPR's package-graph scorer (Section 4.3): DPR-WG (Eq. 9-14), DPR-AG (Eq. 16-21) and GNN.

For a (visit ``i``, package graph ``j``) pair, with patient embedding ``u_i``, drug embeddings
``d`` and the mask ``m_i = sigmoid(MLP(u_i))`` (ones without the mask layer):

* **WG** (Eq. 9-13): ``d^ = m_i * d_v`` per node; ``c_vu = tanh(a^T MLP([d^_u || d^_v]))``
  (1 without context); ``e^_vu = c_vu * e_vu`` with ``e_vu`` the graph's prior edge weight
  (+1 synergy, -1 antagonism, else the co-occurrence proportion; 1 without it);
  ``M_u = sum_v GRU(e^_vu W1 h_v, h_u)``; ``h_u' = MLP(W0 h_u + M_u)``; ``h^(0) = d``.
* **AG** (Eq. 16-20): ``e_vu = MLP([d_v || d_u])`` per graph edge, ``e^ = m_i * e_vu``,
  ``M_u = sum_v W1 e^_vu = W1 (m_i * S_u)`` with ``S_u = sum_v e_vu`` per graph node (exact:
  the message is linear), ``h_u' = MLP(W0 h_u + M_u)``. Further layers reuse ``e^``.
* **GNN**: WG without mask, context and prior (every edge weight 1).
* **Readout** (Eq. 14): ``g = sum_v sigmoid(MLP([d_v || h_v])) * MLP([d_v || h_v])``;
  **score** ``MLP([u_i || g_ij])`` (Eq. 15's matching model).

Only what depends on the visit is computed per pair: when the mask does not reach the node
states (GNN, WG without context, no mask) each graph is encoded once and its embedding is
shared by every pair scoring it (see :mod:`medtoolkit_dpr.pairs` for units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from medtoolkit_dpr.edge_ops import edge_context, edge_gru_sum
from medtoolkit_dpr.layers import SplitMLP, mlp
from medtoolkit_dpr.pairs import PairLayout, pair_layout

Variant = Literal["gnn", "wg", "ag"]


@dataclass(frozen=True)
class PackageGraphs:
    """The graph fields the scorer reads (a ``torch_geometric`` ``Batch`` has them all).

    Attributes:
        x: ``[N]`` int64 drug index of each node.
        edge_index: ``[2, E]`` int64 global node ids (source, target), grouped by graph.
        ptr: ``[G + 1]`` int64 node offsets.
        edge_prior: ``[E]`` float32 DPR-WG's initial edge weight.
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    ptr: torch.Tensor
    edge_prior: torch.Tensor

    @classmethod
    def of(cls, graphs: object) -> "PackageGraphs":
        """The fields of a graph batch (``x``, ``edge_index``, ``ptr``, ``edge_prior``).

        Raises:
            AttributeError: a field is missing (the message names it).
        """
        values = {}
        for name in ("x", "edge_index", "ptr", "edge_prior"):
            value = getattr(graphs, name, None)
            if value is None:
                raise AttributeError(f"package graphs lack the field {name!r} (built by build_package_graphs?)")
            values[name] = value
        return cls(**values)

    @property
    def n_graphs(self) -> int:
        return int(self.ptr.shape[0]) - 1


class WGLayer(nn.Module):
    """One DPR-WG message-passing layer (Eq. 11-13) over pair-nodes.

    Parameters: ``message`` (``W1``), ``gru`` (a ``GRUCell``), ``self_loop`` (``W0``),
    ``update`` (the ``MLP`` of Eq. 13).
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.message = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        self.self_loop = nn.Linear(dim, dim, bias=False)
        self.update = mlp(dim, hidden, dim)

    def forward(self, h: torch.Tensor, weight: torch.Tensor, layout: PairLayout) -> torch.Tensor:
        """``h' [PN, D]`` from ``h [PN, D]`` and the pair-edge weights ``e^ [PE]``."""
        input_gates = self.message(h) @ self.gru.weight_ih.T
        hidden_gates = torch.addmm(self.gru.bias_hh, h, self.gru.weight_hh.T)
        aggregated = edge_gru_sum(input_gates, self.gru.bias_ih, hidden_gates, h, weight,
                                  layout.edge_source, layout.edge_target)
        return self.update(self.self_loop(h) + aggregated)


class AGLayer(nn.Module):
    """One DPR-AG layer (Eq. 18-20): ``h' = MLP(W0 h + W1 A)`` with ``A = m_i * S_u`` per pair-node."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.message = nn.Linear(dim, dim, bias=False)
        self.self_loop = nn.Linear(dim, dim, bias=False)
        self.update = mlp(dim, hidden, dim)

    def forward(self, h: torch.Tensor, aggregated_attributes: torch.Tensor) -> torch.Tensor:
        """``h' [PN, D]`` from ``h [PN, D]`` and the summed masked incoming edge attributes ``[PN, D]``."""
        return self.update(self.self_loop(h) + self.message(aggregated_attributes))


class PackageScorer(nn.Module):
    """Scores (visit, package graph) pairs with DPR-WG, DPR-AG or GNN (see the module docstring).

    Args:
        variant: ``"wg"``, ``"ag"`` or ``"gnn"``.
        dim: embedding width ``D``.
        hidden: hidden width of every MLP.
        layers: message-passing layers.
        mask: use the mask layer (WG: in the context factor; AG: on the edge attributes).
        context: WG's contextual impact factor (Eq. 10).
        edge_prior: WG's prior edge weights (else 1).

    Submodules: ``mask`` (``MLP`` of Eq. 9/17, when used), ``context`` (Eq. 10, WG with
    context), ``edge_attributes`` (Eq. 16) and ``edge_classifier`` (``Q``, Eq. 21) for AG,
    ``layers``, ``gate`` and ``value`` (Eq. 14) and ``score`` (Eq. 15).
    """

    def __init__(self, variant: Variant, dim: int, hidden: int, layers: int = 1,
                 mask: bool = True, context: bool = True, edge_prior: bool = True) -> None:
        super().__init__()
        if variant not in ("gnn", "wg", "ag"):
            raise ValueError(f"variant must be 'gnn', 'wg' or 'ag', got {variant!r}")
        self.variant = variant
        graph_variant = variant != "gnn"
        self.use_prior = variant == "wg" and edge_prior
        self.mask = mlp(dim, hidden, dim) if graph_variant and mask and (variant == "ag" or context) else None
        self.context = SplitMLP(dim, dim, hidden, 1, out_bias=False) if variant == "wg" and context else None
        if variant == "ag":
            self.edge_attributes = SplitMLP(dim, dim, hidden, dim)
            self.edge_classifier = nn.Linear(dim, 3, bias=False)
            self.layers = nn.ModuleList([AGLayer(dim, hidden) for _ in range(layers)])
        else:
            self.layers = nn.ModuleList([WGLayer(dim, hidden) for _ in range(layers)])
        self.gate = SplitMLP(dim, dim, hidden, dim)
        self.value = SplitMLP(dim, dim, hidden, dim)
        self.score = SplitMLP(dim, dim, hidden, 1)

    @property
    def visit_dependent(self) -> bool:
        """Whether node states depend on the visit (then every pair gets its own graph copy)."""
        return self.mask is not None

    def edge_vectors(self, drugs: torch.Tensor, graphs: PackageGraphs) -> torch.Tensor:
        """AG's ``e_vu = MLP([d_v || d_u])`` for every graph edge: ``[E, D]`` (unmasked)."""
        source, target = graphs.edge_index
        return self.edge_attributes.gathered(drugs, graphs.x[source], drugs, graphs.x[target])

    def forward(
        self,
        patients: torch.Tensor,
        drugs: torch.Tensor,
        graphs: PackageGraphs,
        pair_visit: torch.Tensor,
        pair_graph: torch.Tensor,
        edge_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores ``MLP([u_i || g_ij])`` of the pairs.

        Args:
            patients: ``[V, D]`` patient embeddings ``u``.
            drugs: ``[n_drugs, D]`` drug embeddings ``d``.
            graphs: the package graphs.
            pair_visit: ``[P]`` int64 row of ``patients`` per pair.
            pair_graph: ``[P]`` int64 graph per pair.
            edge_vectors: AG's :meth:`edge_vectors` when already computed (else computed here).

        Returns:
            ``[P]`` scores.
        """
        if self.visit_dependent:
            unit_graph, unit_visit, pair_unit = pair_graph, pair_visit, None
        else:
            unit_graph = torch.arange(graphs.n_graphs, device=pair_graph.device)
            unit_visit, pair_unit = None, pair_graph
        layout = pair_layout(graphs.ptr, graphs.edge_index, unit_graph)
        node_drug = graphs.x[layout.node_source]
        node_mask = None
        if self.mask is not None:
            node_mask = torch.sigmoid(self.mask(patients))[unit_visit][layout.node_unit]  # m_i per pair-node
        h = drugs[node_drug]
        if self.variant == "ag":
            vectors = self.edge_vectors(drugs, graphs) if edge_vectors is None else edge_vectors
            summed = vectors.new_zeros((graphs.x.shape[0], vectors.shape[1])).index_add_(
                0, graphs.edge_index[1], vectors)  # S_u per graph node
            aggregated = summed[layout.node_source]
            if node_mask is not None:
                aggregated = aggregated * node_mask
            for layer in self.layers:
                h = layer(h, aggregated)
        else:
            weight = self.edge_weights(graphs, layout, h, node_mask)
            for layer in self.layers:
                h = layer(h, weight, layout)
        gates = self.gate.gathered(drugs, node_drug, h)
        weighted = torch.sigmoid(gates) * self.value.gathered(drugs, node_drug, h)
        embeddings = weighted.new_zeros((layout.n_units, h.shape[1])).index_add_(
            0, layout.node_unit, weighted)  # g per unit, Eq. 14
        graph_of_pair = torch.arange(pair_visit.shape[0], device=h.device) if pair_unit is None else pair_unit
        return self.score.gathered(patients, pair_visit, embeddings, graph_of_pair).squeeze(-1)

    def edge_weights(self, graphs: PackageGraphs, layout: PairLayout, d: torch.Tensor,
                     node_mask: torch.Tensor | None) -> torch.Tensor:
        """WG's ``e^ = c * e`` per pair-edge ``[PE]`` (Eq. 10 and the prior; ``d``: ``[PN, D]`` drug embeddings)."""
        if self.use_prior:
            weight = graphs.edge_prior.to(d.dtype)[layout.edge_origin]
        else:
            weight = d.new_ones(layout.n_edges)
        if self.context is None:
            return weight
        masked = d if node_mask is None else d * node_mask  # d^ = m_i * d
        factor = edge_context(self.context.left(masked), self.context.right(masked),
                              self.context.out.weight.squeeze(0), layout.edge_target, layout.edge_source)
        return weight * factor
