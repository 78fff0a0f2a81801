"""``lightgcn``: ALGNet's light-graph-convolution drug memory (Eq. 1-3, 9-11).

The memory bank ``M`` ([N drugs, dim]) is built from learnable initial drug embeddings
``E0`` propagated by weight-free, non-linearity-free light graph convolutions
(``torch_geometric.nn.LGConv``: ``E_{k+1} = D^-1/2 A D^-1/2 E_k``, Eq. 1) over the
co-prescription (EHR, training split only) graph and the DDI graph. Layers are combined as
``E = sum_k alpha_k E_k`` (Eq. 2) and ``M = E_ehr - beta * E_ddi`` (Eq. 3, ``beta`` learnable
by default; the paper writes ``+ beta`` — with a learnable signed ``beta`` both describe the
same family).

The default ``alpha`` is LightGCN's ``1/(K+1)`` for every layer *including* ``E_0``: the text
combines "all layers", while Eq. 2 as printed (``alpha E_1 + alpha E_2``) leaves ``E_0`` out.
Without ``E_0`` every memory row is a neighbourhood average, and the benchmark's
co-prescription graph is 90 % dense, so the rows become nearly alike (over-smoothing);
measured on the legacy MIMIC-III split (seed 1203), keeping ``E_0`` raised test Jaccard from
0.5036 to 0.5123 (``docs/benchmarks.rst``). ``alpha: [0, 0.5, 0.5]`` gives Eq. 2 as printed.

``M`` is read twice per visit with the visit query ``a_t`` (as GAMENet's ``gcn`` memory, so
``lightgcn`` can replace ``gcn`` inside ``gamenet`` too):

* ``o_b = M^T softmax(M a_t)`` (Eq. 10), i.e. ``softmax(a_t M^T) M`` for row vectors;
* ``o_d = M^T H_v^T softmax(H_k a_t)`` (Eq. 11): keys ``H_k`` are the queries of the
  strictly earlier visits, values ``H_v`` their true multi-hot medications (Eq. 9).

All visits of a batch are computed at once; ``M`` is computed once per forward pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn
from torch_geometric.nn import LGConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from medtoolkit.components.memories.gcn import DrugBankMemory
from medtoolkit.components.params import Params

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema


def adjacency_to_edges(adjacency: np.ndarray | torch.Tensor, self_loops: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense adjacency -> COO edge list for torch-geometric.

    Args:
        adjacency: ``[N, N]`` non-negative (0/1 or co-occurrence counts).
        self_loops: add ``A + I`` before extracting the edges.

    Returns:
        ``edge_index`` ``[2, E]`` int64 (row = source, col = target) and ``edge_weight`` ``[E]`` float32.
    """
    matrix = torch.as_tensor(np.asarray(adjacency, dtype=np.float32)).clone()
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {tuple(matrix.shape)}")
    if (matrix < 0).any():
        raise ValueError("adjacency must be non-negative")
    if self_loops:
        matrix = matrix + torch.eye(matrix.shape[0])
    index = matrix.nonzero(as_tuple=False).t().contiguous()  # [2, E]
    return index.to(torch.long), matrix[index[0], index[1]]


class LightGraph(nn.Module):
    """``K`` LGConv layers and the layer combination of Eq. 2 over one fixed graph.

    Light graph convolutions have no weights and no non-linearity, so over a fixed graph
    ``sum_k alpha_k E_k = (sum_k alpha_k A_hat^k) E_0 = P E_0`` with a constant ``[N, N]``
    operator ``P``. ``propagation="precomputed"`` (default) builds the powers
    ``A_hat^0 .. A_hat^K`` once, by running the LGConv layers on the identity matrix, and then
    applies ``P`` with one dense matmul per call (exact, ~20x faster for drug graphs of a few
    hundred nodes, whose co-prescription graphs are dense; memory ``(K + 1) N^2`` floats).
    ``propagation="layerwise"`` runs the K LGConv layers (message passing over the edge
    list) at every call: use it for graphs of many thousand nodes.

    Args:
        adjacency: ``[N, N]`` graph.
        layers: number of propagation layers K.
        alpha: ``K + 1`` layer weights (for ``E_0 .. E_K``).
        self_loops: propagate over ``A + I`` instead of ``A``.
        weighted: use the adjacency values as edge weights (else every edge weighs 1).
        propagation: ``"precomputed"`` or ``"layerwise"`` (same result up to float rounding).
    """

    def __init__(
        self,
        adjacency: np.ndarray | torch.Tensor,
        layers: int,
        alpha: list[float],
        self_loops: bool,
        weighted: bool,
        propagation: Literal["precomputed", "layerwise"] = "precomputed",
    ) -> None:
        super().__init__()
        if len(alpha) != layers + 1:
            raise ValueError(f"alpha needs layers + 1 = {layers + 1} weights (E_0..E_K), got {len(alpha)}")
        edge_index, edge_weight = adjacency_to_edges(adjacency, self_loops)
        if not weighted:
            edge_weight = torch.ones_like(edge_weight)
        n_nodes = int(adjacency.shape[0])
        # LGConv's symmetric normalisation D^-1/2 A D^-1/2 is a constant of the fixed graph:
        # compute it once instead of at every call (LGConv then runs with normalize=False).
        edge_index, edge_weight = gcn_norm(edge_index, edge_weight, n_nodes, add_self_loops=False)
        self.layers = layers
        self.propagation = propagation
        self.conv = LGConv(normalize=False)  # no parameters
        self.register_buffer("alpha", torch.tensor(alpha, dtype=torch.float32), persistent=False)
        if propagation == "precomputed":
            powers = [torch.eye(n_nodes)]  # A_hat^0 .. A_hat^K, each [N, N]
            with torch.no_grad():
                for _ in range(layers):
                    powers.append(self.conv(powers[-1], edge_index, edge_weight))
            self.register_buffer("powers", torch.stack(powers), persistent=False)  # [K + 1, N, N]
        elif propagation == "layerwise":
            self.register_buffer("edge_index", edge_index, persistent=False)
            self.register_buffer("edge_weight", edge_weight, persistent=False)
        else:
            raise ValueError(f"propagation must be 'precomputed' or 'layerwise', got {propagation!r}")

    def operator(self) -> torch.Tensor:
        """``P = sum_k alpha_k A_hat^k``: ``[N, N]`` (precomputed propagation only)."""
        return torch.einsum("k,kij->ij", self.alpha, self.powers)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """``E_0`` ``[N, dim]`` -> ``sum_k alpha_k E_k`` ``[N, dim]``."""
        if self.propagation == "precomputed":
            return self.operator() @ embedding
        current = embedding
        combined = self.alpha[0] * current
        for k in range(1, self.layers + 1):
            current = self.conv(current, self.edge_index, self.edge_weight)
            combined = combined + self.alpha[k] * current
        return combined


class LightGCNMemory(DrugBankMemory):
    """ALGNet's augmentation memory: light graph convolutions plus a visit-history read.

    Constructed as ``LightGCNMemory(params, schema, query_dim=D)``. Shapes:
    ``forward(query [B, T, D], batch) -> [B, T, output_dim]`` with ``output_dim = 2 * D``
    (``[o_b, o_d]``) or ``D`` without ``history``. Visit t reads the medications of visits
    ``< t`` only. Learnable: ``E0`` per graph (``[N, D]`` each, or one shared) and ``beta``.
    """

    class Params(Params):
        dim: int | None = Field(None, ge=1, description="memory width (None: the query width)")
        layers: int = Field(2, ge=1, description="light graph convolution layers K (paper: 2)")
        alpha: list[float] | None = Field(
            None,
            description="K+1 weights of E_0..E_K (Eq. 2); None: 1/(K+1) each, LightGCN's combination of "
            "all layers ([0, 1/K, ..., 1/K] is Eq. 2 as printed, without E_0)",
        )
        beta: float = Field(0.1, description="initial DDI mixture weight in M = E_ehr - beta * E_ddi (Eq. 3)")
        learn_beta: bool = Field(True, description="train beta (else a fixed buffer)")
        ddi_in_memory: bool = Field(True, description="subtract the DDI graph embedding (else M = E_ehr)")
        shared_embedding: bool = Field(False, description="one E_0 for both graphs (else one per graph)")
        self_loops: bool = Field(False, description="propagate over A + I (the paper: A, as LightGCN)")
        weighted: bool = Field(False, description="co-occurrence counts as edge weights (else 0/1 edges)")
        propagation: Literal["precomputed", "layerwise"] = Field(
            "precomputed",
            description="precomputed: apply sum_k alpha_k A_hat^k as one [N, N] matrix built once with "
            "LGConv (fast for drug graphs); layerwise: K LGConv message-passing layers per call "
            "(for graphs of many thousand nodes)",
        )
        init_std: float = Field(0.1, gt=0.0, description="std of the normal initialisation of E_0")
        history: bool = Field(True, description="add the dynamic read over earlier visits (o_d, Eq. 11)")
        first_visit: Literal["zero", "static"] = Field(
            "zero",
            description="o_d of a visit without history: zero (the paper: H is empty) or the "
            "static read o_b (GAMENet)",
        )

        @model_validator(mode="after")
        def _alpha_length(self) -> "LightGCNMemory.Params":
            if self.alpha is not None and len(self.alpha) != self.layers + 1:
                raise ValueError(f"alpha needs layers + 1 = {self.layers + 1} weights (E_0..E_K), got {len(self.alpha)}")
            return self

    params: Params

    @classmethod
    def knowledge_needed(cls, params: Params) -> frozenset[str]:
        """The DDI matrix when ``ddi_in_memory`` is on."""
        return frozenset({"ddi"}) if getattr(params, "ddi_in_memory", False) else frozenset()

    def __init__(
        self, params: Params | None = None, schema: "DataSchema | None" = None, query_dim: int = 64
    ) -> None:
        super().__init__(params, schema, query_dim)
        assert schema is not None  # checked by DrugBankMemory
        p = self.params
        n_drugs = schema.n_drugs
        alpha = list(p.alpha) if p.alpha is not None else [1.0 / (p.layers + 1)] * (p.layers + 1)
        self.ehr_graph = LightGraph(
            schema.cooccurrence_adjacency, p.layers, alpha, p.self_loops, p.weighted, p.propagation
        )
        self.ehr_embedding = nn.Parameter(torch.randn(n_drugs, self.dim) * p.init_std)
        if p.ddi_in_memory:
            ddi = schema.require_ddi("memory 'lightgcn' with ddi_in_memory=true (set it to false)")
            self.ddi_graph = LightGraph(ddi, p.layers, alpha, p.self_loops, p.weighted, p.propagation)
            if not p.shared_embedding:
                self.ddi_embedding = nn.Parameter(torch.randn(n_drugs, self.dim) * p.init_std)
            beta = torch.tensor([p.beta], dtype=torch.float32)
            if p.learn_beta:
                self.beta = nn.Parameter(beta)
            else:
                self.register_buffer("beta", beta)

    def static_fallback(self) -> bool:
        """``first_visit: static`` reads ``o_b`` where ``H`` is empty (GAMENet); ``zero`` (the paper) zeros."""
        return self.params.first_visit == "static"

    def memory_bank(self) -> torch.Tensor:
        """The drug memory ``M`` (Eq. 3): ``[N, dim]``."""
        bank = self.ehr_graph(self.ehr_embedding)
        if self.params.ddi_in_memory:
            ddi_input = self.ehr_embedding if self.params.shared_embedding else self.ddi_embedding
            bank = bank - self.beta * self.ddi_graph(ddi_input)
        return bank
