"""``dnmdr``: DNMDR (Liu et al.), every visit of a batch in one pass (Eq. 28-31).

Per visit t (B patients, T visits, D query width, N drugs):

* ``q = encoder(batch)`` ``[B, T, D]`` (default ``evolvegat``: snapshot graphs, EvolveGAT, GRUs);
* ``[o_ed, o_kv] = memory(q, batch)`` ``[B, T, 2 D]`` (default ``gat_views``: EHR and DDI GATs,
  static and key-value history reads);
* internal view (Eq. 28): ``o_s = sigmoid(q M_s^T)`` ``[B, T, N]`` with ``M_s = drug_encoder()``
  ``[N, D]`` (default ``mpnn`` of ``medtoolkit-molecule``, atoms averaged per molecule, Eq. 21);
* Eq. 31: ``logits = Linear(ReLU(Linear(ReLU([q, o_ed, o_kv, o_s]))))``, ``[B, T, N]``.

``internal_view: false`` (ablation ``DNMDR_internal``) drops ``o_s`` and the drug encoder.
Causality comes from the parts: the query sees codes of visits <= t and medications of
visits < t; the memory reads medications of visits < t; the drug side does not depend on
the patient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch import nn

from medtoolkit.components.base import Recommender
from medtoolkit.components.params import Node, Params, build_drug_encoder, drug_encoder_slot, slot

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


class DNMDR(Recommender):
    """Dynamic networks (visit side) and multi-view drug representations (drug side).

    Example (Python, without a config file)::

        model = DNMDR(DNMDR.Params(), schema)   # evolvegat + gat_views + mpnn, via the plugin host
        logits = model(batch)                    # [B, T, n_drugs]
    """

    class Params(Params):
        encoder: Node = slot("encoder", "evolvegat", description="visit encoder producing the query q")
        memory: Node = slot("memory", "gat_views", description="drug memory read with q ([o_ed, o_kv])")
        drug_encoder: Node = drug_encoder_slot(
            "mpnn", description="drug encoder giving M_s [n_drugs, D] (the internal view)",
            dim=64, layers=2, radius=2, explicit_hydrogens=True, atom_pooling="mean",
        )
        internal_view: bool = Field(True, description="o_s = sigmoid(q M_s^T) from the drug encoder (false: "
                                    "ablation DNMDR_internal)")
        hidden_dim: int = Field(128, ge=1, description="width of the output MLP's hidden layer")

    params: Params

    @classmethod
    def knowledge_needed(cls, params: Params) -> frozenset[str]:  # type: ignore[override]
        """What the drug encoder needs, when the internal view is on (molecules for ``mpnn``)."""
        node = params.drug_encoder
        if not params.internal_view or node._component is None:
            return frozenset()
        needs = getattr(node.component, "knowledge_needed", None)
        return frozenset(needs(node.params)) if needs is not None else frozenset()

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        assert schema is not None  # checked by Recommender
        p = self.params
        self.encoder = p.encoder.resolve("encoder").build(schema)
        width = int(self.encoder.output_dim)
        self.memory = p.memory.resolve("memory").build(schema, query_dim=width)
        features = width + int(self.memory.output_dim)
        if p.internal_view:
            self.drug_encoder = build_drug_encoder(p.drug_encoder, schema, query_dim=width,
                                                   use="the internal view is sigmoid(q M_s^T)")
            features += schema.n_drugs
        self.output = nn.Sequential(
            nn.ReLU(), nn.Linear(features, p.hidden_dim), nn.ReLU(), nn.Linear(p.hidden_dim, schema.n_drugs),
        )

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """Logits ``[B, T, n_drugs]`` for every visit (values at padding visits are meaningless)."""
        query = self.encoder(batch)  # [B, T, D]
        parts = [query, self.memory(query, batch)]  # [B, T, D], [B, T, 2D]
        if self.params.internal_view:
            parts.append(torch.sigmoid(query @ self.drug_encoder().T))  # o_s [B, T, N]
        return self.output(torch.cat(parts, dim=-1))
