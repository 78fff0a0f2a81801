"""``dpr``: DPR's package recommender (Section 4.3) on top of the ``ncf`` parts.

The model holds the ``ncf`` submodules under the same names (``patient``, ``drugs``,
``matcher``), so its logits are NCF's drug scores ``r_ij`` and a pre-training stage with the
``bpr`` loss trains them, plus ``package``, a
:class:`~medtoolkit_dpr.package_gnn.PackageScorer` (``variant``: ``gnn``, ``wg`` or ``ag``).

It needs the batch item ``package_graphs`` (the package graph of every real visit of the
batch, row-major ``visit_mask`` order, supplied by the ``package_recommendation`` task's
collate) and provides the extras:

* ``package_scores`` ``[V, 1 + negatives]``: column 0 scores the visit's own package graph,
  the others graphs of other visits of the batch drawn uniformly, preferring a different set
  (:func:`~medtoolkit_dpr.sampling.sample_other_rows`; torch's global generator in training
  mode, one seeded with ``sample_seed`` in eval mode), for ``package_bpr`` (Eq. 15);
* ``edge_types`` (``ag`` only): ``(e_vu^T Q [E', 3], labels [E'])`` over the batch graphs' edges
  with a known label (``edge_label >= 0``), for ``edge_type`` (Eq. 21).

At test time the task calls :meth:`DPRRecommender.score_packages` on candidate graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import Field

from medtoolkit.components.base import ModelOutput
from medtoolkit_dpr.layers import scatter_visits
from medtoolkit_dpr.names import EDGE_TYPES, PACKAGE_GRAPHS, PACKAGE_SCORES
from medtoolkit_dpr.ncf import NCFRecommender
from medtoolkit_dpr.package_gnn import PackageGraphs, PackageScorer
from medtoolkit_dpr.sampling import eval_generator, sample_other_rows, set_groups

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


def graph_sets(graphs: PackageGraphs, n_drugs: int) -> torch.Tensor:
    """``[G, n_drugs]`` bool drug set of every graph (from its nodes)."""
    graph_of_node = torch.searchsorted(graphs.ptr, torch.arange(graphs.x.shape[0], device=graphs.x.device),
                                       right=True) - 1
    sets = torch.zeros((graphs.n_graphs, n_drugs), dtype=torch.bool, device=graphs.x.device)
    sets[graph_of_node, graphs.x] = True
    return sets


class DPRRecommender(NCFRecommender):
    """DPR-WG / DPR-AG / GNN package scoring over NCF's patient and drug embeddings.

    Shapes: ``forward(batch) -> [B, T, n_drugs]`` (NCF's ``r``, zeros at padding);
    ``forward(batch, extras=("package_scores", ...))`` -> a
    :class:`~medtoolkit.components.base.ModelOutput`; ``score_packages(...) -> [n_pairs]``.
    """

    head_modules = ("package",)
    scores_packages: ClassVar[bool] = True

    class Params(NCFRecommender.Params):
        variant: Literal["gnn", "wg", "ag"] = Field(
            "wg", description="gnn (no edge attributes), wg (DPR-WG, weighted graph) or ag (DPR-AG, attributed graph)")
        mask: bool = Field(True, description="the patient mask layer sigmoid(MLP(u)) (wg, ag; gnn: never)")
        context: bool = Field(True, description="wg: the contextual impact factor c_vu (else c = 1)")
        edge_prior: bool = Field(True, description="wg: prior edge weights (+1 synergy, -1 antagonism, else "
                                                    "co-occurrence proportion; else 1)")
        layers: int = Field(1, ge=1, description="message-passing layers (the paper: 1)")
        negatives: int = Field(10, ge=0, description="other packages of the batch scored per visit (package_scores)")
        sample_seed: int = Field(0, ge=0, description="seed of the other packages drawn in eval mode (deterministic "
                                                      "validation loss)")

    params: Params

    @classmethod
    def extras_provided(cls, params: Params) -> frozenset[str]:
        """``package_scores``; ``edge_types`` too for ``variant: ag``."""
        return frozenset({PACKAGE_SCORES, EDGE_TYPES} if params.variant == "ag" else {PACKAGE_SCORES})

    @classmethod
    def batch_items_needed(cls, params: Params) -> frozenset[str]:
        """``package_graphs``: the package graph of every real visit of a batch."""
        return frozenset({PACKAGE_GRAPHS})

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        p = self.params
        self.package = PackageScorer(p.variant, p.dim, p.hidden, p.layers, mask=p.mask, context=p.context,
                                     edge_prior=p.edge_prior)

    def forward(self, batch: "PaddedBatch", extras: Sequence[str] = ()) -> Any:  # type: ignore[override]
        """NCF logits, and the requested extras.

        Args:
            batch: a padded batch; extras need ``batch.items["package_graphs"]``.
            extras: names among :meth:`extras_provided` (empty: plain logits).

        Returns:
            ``[B, T, n_drugs]`` logits, or a ``ModelOutput`` when ``extras`` is non-empty.

        Raises:
            ValueError: an unknown extra is asked for, or the graphs do not match the visits.
            KeyError: the batch lacks the ``package_graphs`` item.
        """
        wanted = tuple(extras)
        provided = self.extras_provided(self.params)
        unknown = sorted(set(wanted) - provided)
        if unknown:
            raise ValueError(f"dpr (variant {self.params.variant}) provides the extras {sorted(provided)}, "
                             f"not {unknown}")
        patients = self.patient(batch)
        logits = scatter_visits(self.drug_scores(patients), batch.visit_mask)
        if not wanted:
            return logits
        graphs = self._visit_graphs(batch, patients.shape[0])
        edge_vectors = self.package.edge_vectors(self.drugs.weight, graphs) if self.params.variant == "ag" else None
        values: dict[str, Any] = {}
        if PACKAGE_SCORES in wanted:
            values[PACKAGE_SCORES] = self._own_and_other_scores(patients, graphs, edge_vectors)
        if EDGE_TYPES in wanted:
            assert edge_vectors is not None
            labels = batch.items[PACKAGE_GRAPHS].edge_label
            known = labels >= 0
            values[EDGE_TYPES] = (self.package.edge_classifier(edge_vectors[known]), labels[known])
        return ModelOutput(logits=logits, extras=values)

    def _visit_graphs(self, batch: "PaddedBatch", n_visits: int) -> PackageGraphs:
        items = batch.items
        if PACKAGE_GRAPHS not in items:
            raise KeyError(f"dpr needs the batch item {PACKAGE_GRAPHS!r} (the package_recommendation task's "
                           f"collate adds it), got {sorted(items)}")
        graphs = PackageGraphs.of(items[PACKAGE_GRAPHS])
        if graphs.n_graphs != n_visits:
            raise ValueError(f"dpr: batch item {PACKAGE_GRAPHS!r} holds {graphs.n_graphs} graphs for "
                             f"{n_visits} real visits (one per visit expected)")
        return graphs

    def _own_and_other_scores(self, patients: torch.Tensor, graphs: PackageGraphs,
                              edge_vectors: torch.Tensor | None) -> torch.Tensor:
        """``[V, 1 + negatives]``: own graph, then sampled other graphs of the batch."""
        count, negatives = patients.shape[0], self.params.negatives
        device = patients.device
        generator = None if self.training else eval_generator(self.params.sample_seed, device)
        groups = set_groups(graph_sets(graphs, self.drugs.num_embeddings))
        others = sample_other_rows(groups, negatives, generator)
        pair_graph = torch.cat([torch.arange(count, device=device).unsqueeze(1), others], dim=1).reshape(-1)
        pair_visit = torch.arange(count, device=device).repeat_interleave(1 + negatives)
        scores = self.package(patients, self.drugs.weight, graphs, pair_visit, pair_graph, edge_vectors)
        return scores.reshape(count, 1 + negatives)

    def score_packages(self, batch: "PaddedBatch", graphs: Any, pair_visit: torch.Tensor,
                       pair_graph: torch.Tensor) -> torch.Tensor:
        """Scores of (visit, candidate graph) pairs (the task's ``scoring: model``).

        Args:
            batch: the test batch.
            graphs: package graphs (``build_package_graphs`` of the candidate packages).
            pair_visit: ``[n_pairs]`` int64 real visit (row-major ``visit_mask`` order).
            pair_graph: ``[n_pairs]`` int64 graph.

        Returns:
            ``[n_pairs]`` scores ``MLP([u_i || g_ij])`` (higher: better).
        """
        patients = self.patient(batch)
        return self.package(patients, self.drugs.weight, PackageGraphs.of(graphs), pair_visit, pair_graph)
