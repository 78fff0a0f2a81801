"""``safedrug``: SafeDrug (Yang et al., IJCAI 2021), every visit of a batch in one pass.

Per visit t (B patients, T visits, D query width, N drugs, S substructures):

* ``q = encoder(batch)`` ``[B, T, D]``: the visit query (default core ``gru``: code
  embeddings 64 with dropout 0.5 summed per visit, one GRU 64 -> 64 per vocabulary, concat,
  ReLU, Linear(128 -> 64); SafeDrug's patient encoder);
* ``E_mol = drug_encoder()`` ``[N, D]`` (default ``mpnn``), run once per forward;
* global view: ``s = sigmoid(q E_mol^T)``, ``g = LayerNorm_N(s + W_g s + b_g)`` ``[B, T, N]``;
* local view: ``u = sigmoid(W_u q + b_u)`` ``[B, T, S]``, ``l = u (W_b * H^T)`` ``[B, T, N]`` with
  ``H`` the ``[N, S]`` drug-substructure mask and ``W_b`` ``[S, N]`` (no bias);
* ``logits = l * g``.

SafeDrug's probabilities are ``sigmoid(l * g)`` (reference notes 4.2), so the product is
returned as the logits and ``predict_proba`` / the losses apply the sigmoid.

The reference runs one visit prefix per step; here all visits are computed at once.
Causality comes from the parts: visit t's query sees codes of visits <= t and no
medications, and the drug side does not depend on the patient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from medtoolkit.components.base import Recommender
from medtoolkit.components.params import Node, Params, build_drug_encoder, drug_encoder_slot, slot

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


def private_substructure_mask(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Give every drug with an empty mask row a private extra substructure column.

    A drug without substructures would get ``l = 0`` from the local view, hence the constant
    logit 0 (probability 0.5) whatever the patient, and would always be predicted.

    Args:
        mask: ``[N, S]`` 0/1 drug-substructure mask.

    Returns:
        ``([N, S + k] float32 mask, the k drugs given a private column)``; the mask is
        unchanged when every row has a substructure.

    Example: ``[[1, 0], [0, 0]]`` gives ``[[1, 0, 0], [0, 0, 1]]`` and ``(1,)``.
    """
    mask = np.asarray(mask, dtype=np.float32)
    empty = tuple(int(i) for i in np.flatnonzero(mask.sum(axis=1) == 0))
    extra = np.zeros((mask.shape[0], len(empty)), dtype=np.float32)
    extra[list(empty), np.arange(len(empty))] = 1.0
    return np.concatenate([mask, extra], axis=1), empty


class SafeDrug(Recommender):
    """SafeDrug: a global (molecule) view and a local (substructure) view of every drug.

    Example (Python, without a config file)::

        model = SafeDrug(SafeDrug.Params(), schema)   # gru + mpnn, resolved through the plugin host
        logits = model(batch)                          # [B, T, n_drugs]

    Attributes:
        private_substructures: drugs whose substructure row was empty and that got a private
            extra column (see :func:`private_substructure_mask`).
    """

    class Params(Params):
        encoder: Node = slot(
            "encoder", "gru", description="visit encoder producing the query q of every visit",
            embedding_dim=64, hidden_dim=64, output_dim=64, dropout=0.5, pooling="sum",
        )
        drug_encoder: Node = drug_encoder_slot("mpnn", description="drug encoder giving E_mol [n_drugs, D]")
        global_view: bool = Field(
            True, description="the molecule view g = LayerNorm(s + W_g s), s = sigmoid(q E_mol^T)"
        )
        local_view: bool = Field(True, description="the substructure view l = sigmoid(W_u q) (W_b * H^T)")

        @model_validator(mode="after")
        def _one_view(self) -> "SafeDrug.Params":
            if not (self.global_view or self.local_view):
                raise ValueError("global_view and local_view cannot both be false")
            return self

    params: Params

    @classmethod
    def knowledge_needed(cls, params: Params) -> frozenset[str]:  # type: ignore[override]
        """``substructures`` for the local view, and the drug encoder's needs for the global view."""
        needed: set[str] = set()
        if params.local_view:
            needed.add("substructures")
        node = params.drug_encoder
        if params.global_view and node._component is not None:
            needs = getattr(node.component, "knowledge_needed", None)
            if needs is not None:
                needed |= set(needs(node.params))
        return frozenset(needed)

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        assert schema is not None  # checked by Recommender
        p = self.params
        n_drugs = schema.n_drugs
        self.encoder = p.encoder.resolve("encoder").build(schema)
        width = int(self.encoder.output_dim)
        self.private_substructures: tuple[int, ...] = ()
        if p.global_view:
            self.drug_encoder = build_drug_encoder(p.drug_encoder, schema, query_dim=width,
                                                   use="the global view is q E_mol^T")
            self.global_linear = nn.Linear(n_drugs, n_drugs)  # W_g, b_g
            self.global_norm = nn.LayerNorm(n_drugs)
        if p.local_view:
            mask, self.private_substructures = private_substructure_mask(
                schema.require_substructures("recommender 'safedrug'")
            )
            n_sub = mask.shape[1]
            self.register_buffer("substructure_mask_t", torch.as_tensor(mask.T.copy()), persistent=False)  # H^T [S, N]
            self.substructure_query = nn.Linear(width, n_sub)  # W_u, b_u
            bound = 1.0 / float(np.sqrt(n_drugs))  # SafeDrug's MaskLinear: U(+-1/sqrt(N))
            self.substructure_weight = nn.Parameter(torch.empty(n_sub, n_drugs).uniform_(-bound, bound))  # W_b

    def global_scores(self, query: torch.Tensor) -> torch.Tensor:
        """``g = LayerNorm(s + W_g s + b_g)``, ``s = sigmoid(q E_mol^T)``: ``[B, T, D] -> [B, T, N]``."""
        drugs = self.drug_encoder()  # [N, D], once per forward
        similarity = torch.sigmoid(query @ drugs.T)
        return self.global_norm(similarity + self.global_linear(similarity))

    def local_scores(self, query: torch.Tensor) -> torch.Tensor:
        """``l = sigmoid(W_u q + b_u) (W_b * H^T)``: ``[B, T, D] -> [B, T, N]``."""
        substructures = torch.sigmoid(self.substructure_query(query))  # [B, T, S]
        return substructures @ (self.substructure_weight * self.substructure_mask_t)

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """Logits ``[B, T, n_drugs]`` for every visit (values at padding visits are meaningless)."""
        query = self.encoder(batch)  # [B, T, D]
        if not self.params.global_view:
            return self.local_scores(query)
        if not self.params.local_view:
            return self.global_scores(query)
        return self.local_scores(query) * self.global_scores(query)
