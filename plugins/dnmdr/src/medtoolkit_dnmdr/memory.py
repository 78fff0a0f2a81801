"""``gat_views``: DNMDR's interactive and temporal drug views (Eq. 22-30), batched.

The drug memory ``M_ed`` ``[N drugs, D]`` (Eq. 24) combines two two-layer graph-attention
networks over learned drug embeddings ``X`` ``[N, D]``:

* ``E_ehr = GAT_ehr(X, A_ehr + I)``: the training split's co-prescription graph;
* ``E_ddi = GAT_ddi(X, A_ddi + I)``: the DDI graph;
* ``M_ed = E_ehr + W E_ddi`` (``W`` a learned ``[D, D]`` map, Eq. 24).

Each GAT (Eq. 22-23): ``ELU(alpha (X W1))``, dropout, then ``alpha (H W2)`` (linear last layer,
as a GCN's). ``views`` chooses the graphs: ``[]`` (ablation ``DNMDR_interactive``) leaves
``M_ed = X``. The memory is read like GAMENet's (:class:`~medtoolkit.components.memories.gcn.DrugBankMemory`):

* ``o_ed = softmax(q M_ed^T) M_ed`` (Eq. 29; the paper's activation sigma read as a softmax);
* ``o_kv = softmax_{s<t}(q_t q_s^T) m_s M_ed`` (Eq. 25-27, 30): keys are the queries of the
  strictly earlier visits, values their multi-hot medications; a first visit reads ``o_ed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from medtoolkit.components.memories.gcn import DrugBankMemory
from medtoolkit.components.params import Params
from medtoolkit_dnmdr.attention import DenseGATLayer

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema


def with_self_loops(adjacency: np.ndarray) -> torch.Tensor:
    """``A + I`` as 0/1 float32 edge weights (``[N, N]``)."""
    matrix = (np.asarray(adjacency, dtype=np.float32) > 0).astype(np.float32)
    np.fill_diagonal(matrix, 1.0)
    return torch.from_numpy(matrix)


class TwoLayerGAT(nn.Module):
    """Two GAT layers over one fixed graph: ``[N, D] -> [N, D]``.

    ``H = ELU(alpha (X W1))``, dropout, ``out = alpha (H W2)``; with ``residual`` each layer adds
    its input (``H = X + ELU(...)``, ``out = H + alpha (H W2)``), so a node keeps its own
    embedding on a dense graph (the training co-prescription graph links about 90 % of drug
    pairs on MIMIC-III, and averaging over it alone makes the rows nearly identical).
    """

    def __init__(self, dim: int, dropout: float, residual: bool = True) -> None:
        super().__init__()
        self.first = DenseGATLayer(dim, dim, activation=True)
        self.second = DenseGATLayer(dim, dim, activation=False)
        self.dropout = nn.Dropout(dropout)
        self.residual = residual

    def forward(self, features: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        hidden = self.first(features, edge_weight)
        if self.residual:
            hidden = features + hidden
        out = self.second(self.dropout(hidden), edge_weight)
        return hidden + out if self.residual else out


class GATViewsMemory(DrugBankMemory):
    """DNMDR's drug memory: GATs over the EHR and DDI graphs, read statically and over history.

    Constructed as ``GATViewsMemory(params, schema, query_dim=D)``. Shapes:
    ``forward(query [B, T, D], batch) -> [B, T, 2 D]`` (``[o_ed, o_kv]``; ``D`` without
    ``history``). Visit t reads the medications of visits ``< t`` only.
    """

    class Params(Params):
        dim: int | None = Field(None, ge=1, description="memory width (None: the query width)")
        views: tuple[Literal["ehr", "ddi"], ...] = Field(
            ("ehr", "ddi"), description="drug graphs read by a GAT each ([]: plain learned drug embeddings, "
            "ablation DNMDR_interactive)")
        dropout: float = Field(0.3, ge=0.0, lt=1.0, description="dropout between the two GAT layers")
        residual: bool = Field(True, description="each GAT layer adds its input to its output")
        history: bool = Field(True, description="add the key-value read over earlier visits (o_kv)")

        @field_validator("views")
        @classmethod
        def _distinct(cls, views: tuple[str, ...]) -> tuple[str, ...]:
            if len(set(views)) != len(views):
                raise ValueError(f"views must be distinct, got {list(views)}")
            return views

    params: Params

    @classmethod
    def knowledge_needed(cls, params: Params) -> frozenset[str]:  # type: ignore[override]
        """The DDI matrix when the ``ddi`` view is on."""
        return frozenset({"ddi"}) if "ddi" in getattr(params, "views", ()) else frozenset()

    def __init__(
        self, params: Params | None = None, schema: "DataSchema | None" = None, query_dim: int = 64
    ) -> None:
        super().__init__(params, schema, query_dim)
        assert schema is not None and schema.cooccurrence_adjacency is not None  # checked by DrugBankMemory
        p = self.params
        self.drug_embedding = nn.Parameter(torch.empty(schema.n_drugs, self.dim))
        nn.init.xavier_uniform_(self.drug_embedding)
        if "ehr" in p.views:
            self.register_buffer("ehr_edges", with_self_loops(schema.cooccurrence_adjacency), persistent=False)
            self.ehr_gat = TwoLayerGAT(self.dim, p.dropout, p.residual)
        if "ddi" in p.views:
            ddi = schema.require_ddi("memory 'gat_views' with the ddi view (views: [ehr] drops it)")
            self.register_buffer("ddi_edges", with_self_loops(ddi), persistent=False)
            self.ddi_gat = TwoLayerGAT(self.dim, p.dropout, p.residual)
            self.ddi_map = nn.Linear(self.dim, self.dim, bias=False)  # W of Eq. 24

    def memory_bank(self) -> torch.Tensor:
        """``M_ed`` ``[N, D]`` (Eq. 24), computed once per forward pass."""
        views = self.params.views
        if not views:
            return self.drug_embedding
        bank = self.ehr_gat(self.drug_embedding, self.ehr_edges) if "ehr" in views else 0.0
        if "ddi" in views:
            bank = bank + self.ddi_map(self.ddi_gat(self.drug_embedding, self.ddi_edges))
        return bank  # type: ignore[return-value]
