"""``gcn``: GAMENet's graph-augmented memory, batched over patients and visits.

The memory bank ``M`` ([N drugs, dim]) comes from two 2-layer graph convolutional networks
over the drugs with identity node features, one on the co-prescription (EHR) graph and one
on the DDI graph: ``M = GCN_ehr - theta * GCN_ddi`` (``theta`` a learned scalar). It is
read twice per visit with the visit's query ``q``:

* read 1 (static memory): ``softmax(q M^T) M``;
* read 2 (dynamic history memory): keys are the queries of the *strictly earlier* visits
  of the same patient, values their true multi-hot medications:
  ``softmax_{s<t}(q_t q_s^T) V M``. A first visit (no history) uses read 1 instead.

Both are computed for every visit of a batch at once: the history read is a causal
``[B, T, T]`` attention (never a ``[B, T, T, N]`` tensor), and ``M`` is computed once per
forward pass. Reference: GAMENet ``code/models.py`` (``GCN``, ``GraphConvolution``,
``GAMENet.forward``).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import Field
from torch import nn

from medtoolkit.components.base import Memory
from medtoolkit.components.dropout import apply_dropout
from medtoolkit.components.params import Params

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


def normalize_adjacency(adjacency: np.ndarray | torch.Tensor) -> torch.Tensor:
    """GAMENet's graph normalisation ``D^-1 (A + I)`` (row-normalised, self loops added).

    Args:
        adjacency: ``[N, N]`` 0/1 (or weighted, non-negative) adjacency.

    Returns:
        ``[N, N]`` float32 whose rows sum to 1.
    """
    matrix = torch.tensor(np.asarray(adjacency, dtype=np.float32))
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {tuple(matrix.shape)}")
    matrix = matrix + torch.eye(matrix.shape[0])
    row_sum = matrix.sum(dim=1, keepdim=True)
    inverse = torch.where(row_sum > 0, 1.0 / row_sum, torch.zeros_like(row_sum))
    return matrix * inverse


class TwoLayerGCN(nn.Module):
    """Kipf-style 2-layer GCN with identity node features (GAMENet's ``GCN``).

    ``H1 = dropout(relu(A W1 + b1))`` (``A I W1 = A W1``), ``out = A (H1 W2) + b2``.
    Initialisation as GAMENet's ``GraphConvolution``: weights and biases
    ``U(-1/sqrt(out), 1/sqrt(out))``.

    Args:
        n_nodes: number of graph nodes N (input width of layer 1).
        dim: output width.
        dropout: dropout between the layers.
    """

    def __init__(self, n_nodes: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.weight1 = nn.Parameter(torch.empty(n_nodes, dim))
        self.bias1 = nn.Parameter(torch.empty(dim))
        self.weight2 = nn.Parameter(torch.empty(dim, dim))
        self.bias2 = nn.Parameter(torch.empty(dim))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.weight1.shape[1])
        for parameter in (self.weight1, self.bias1, self.weight2, self.bias2):
            nn.init.uniform_(parameter, -bound, bound)

    def forward(self, adjacency: torch.Tensor) -> torch.Tensor:
        """``[N, N]`` normalised adjacency -> ``[N, dim]`` node embeddings."""
        hidden = torch.relu(torch.addmm(self.bias1, adjacency, self.weight1))
        hidden = apply_dropout(self.dropout, hidden)
        return torch.addmm(self.bias2, adjacency, hidden @ self.weight2)


def history_read(
    query: torch.Tensor, bank: torch.Tensor, batch: "PaddedBatch", fallback: torch.Tensor | None
) -> torch.Tensor:
    """GAMENet's dynamic (visit-history) memory read (ALGNet Eq. 9 and 11), all visits at once.

    Visit t attends over the strictly earlier real visits s < t of the same patient with
    scores ``a_t . a_s`` and reads their multi-hot medications through the bank.

    Args:
        query: ``[B, T, D]`` visit queries (the keys are the same queries).
        bank: ``[N, D]`` memory ``M``.
        batch: reads ``visit_mask`` ``[B, T]`` and ``medications`` ``[B, T, N]``.
        fallback: ``[B, T, D]`` used for visits without history (GAMENet uses the static
            read); None gives zeros (the paper: ``H`` is empty at t = 1, the read is an empty sum).

    Returns:
        ``[B, T, D]``.
    """
    n_visits = query.shape[1]
    earlier = torch.ones(n_visits, n_visits, dtype=torch.bool, device=query.device).tril(-1)
    allowed = earlier.unsqueeze(0) & batch.visit_mask.unsqueeze(1)  # [B, T(t), T(s)]
    scores = query @ query.transpose(1, 2)  # [B, T, T]
    # a finite fill keeps first visits (no allowed key) NaN-free in both passes
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1) * allowed  # rows without history become 0
    read = (weights @ batch.medications.to(query.dtype)) @ bank  # [B, T, N] -> [B, T, D]
    if fallback is not None:
        read = torch.where(allowed.any(dim=-1, keepdim=True), read, fallback)
    return read


class DrugBankMemory(Memory):
    """Base of the memories that read an ``[N drugs, dim]`` bank twice per visit (GAMENet, ALGNet).

    Subclasses build their learnable parts and implement :meth:`memory_bank`; this class
    checks the schema and widths and reads the bank for every visit of a batch:

    * read 1 (static): ``softmax(q M^T) M``;
    * read 2 (history, with ``params.history``): :func:`history_read` over the strictly
      earlier visits; a visit without history gets read 1 when :meth:`static_fallback`
      is true (GAMENet), zeros otherwise.

    Subclass ``Params`` must define ``dim: int | None`` and ``history: bool``. Shapes:
    ``forward(query [B, T, dim], batch) -> [B, T, output_dim]``, ``output_dim = 2 * dim``
    (``[read1, read2]``) or ``dim`` without ``history``.
    """

    def __init__(
        self, params: Params | None = None, schema: "DataSchema | None" = None, query_dim: int = 64
    ) -> None:
        super().__init__(params, schema, query_dim)
        name = type(self).__name__
        if schema is None:
            raise ValueError(f"{name} needs a DataSchema (co-occurrence and DDI graphs)")
        if self.params.dim is not None and self.params.dim != query_dim:
            raise ValueError(
                f"{name} dim={self.params.dim} differs from the query width {query_dim}; the memory is "
                "read by dot products with the query, so leave dim unset or make them equal"
            )
        if schema.cooccurrence_adjacency is None:
            raise ValueError(
                f"{name} needs schema.cooccurrence_adjacency (the drug co-prescription graph of "
                "the training split); build the schema through a task after splitting the data"
            )
        self.dim = query_dim

    @property
    def output_dim(self) -> int:
        return 2 * self.dim if self.params.history else self.dim

    @abstractmethod
    def memory_bank(self) -> torch.Tensor:
        """The drug memory ``M``: ``[N, dim]``."""

    def static_fallback(self) -> bool:
        """Whether a visit without history reads the static read 1 (else zeros)."""
        return True

    def forward(self, query: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """Read the memory for every visit.

        Args:
            query: ``[B, T, dim]`` visit queries.
            batch: reads ``visit_mask`` ``[B, T]`` and ``medications`` ``[B, T, N]``.

        Returns:
            ``[B, T, output_dim]``: ``[read1, read2]`` concatenated (read 1 alone without history).
        """
        if query.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__} expects queries of width {self.dim}, got {tuple(query.shape)}")
        bank = self.memory_bank()  # [N, D], computed once per forward pass
        static = torch.softmax(query @ bank.t(), dim=-1) @ bank  # read 1, [B, T, D]
        if not self.params.history:
            return static
        fallback = static if self.static_fallback() else None
        dynamic = history_read(query, bank, batch, fallback)  # read 2, [B, T, D]
        return torch.cat([static, dynamic], dim=-1)


class GCNMemory(DrugBankMemory):
    """GAMENet's graph-augmented memory with a dynamic (history) read.

    Constructed as ``GCNMemory(params, schema, query_dim=D)``. Shapes:
    ``forward(query [B, T, dim], batch) -> [B, T, output_dim]`` with
    ``output_dim = 2 * dim`` (``[read1, read2]``) or ``dim`` without ``history``.
    Visit t reads the medications of visits ``< t`` only.

    Without ``ddi_in_memory`` the DDI GCN and ``theta`` are not created at all (the
    reference builds them and leaves them without gradients).
    """

    class Params(Params):
        dim: int | None = Field(None, ge=1, description="memory width (None: the query width)")
        dropout: float = Field(0.3, ge=0.0, lt=1.0, description="dropout between the GCN layers")
        ddi_in_memory: bool = Field(True, description="M = GCN_ehr - theta * GCN_ddi (else GCN_ehr)")
        history: bool = Field(True, description="add the dynamic read over earlier visits")

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
        self.register_buffer(
            "ehr_adjacency", normalize_adjacency(schema.cooccurrence_adjacency), persistent=False
        )
        self.ehr_gcn = TwoLayerGCN(n_drugs, self.dim, p.dropout)
        if p.ddi_in_memory:
            self.register_buffer(
                "ddi_adjacency",
                normalize_adjacency(schema.require_ddi("memory 'gcn' with ddi_in_memory=true (set it to false)")),
                persistent=False,
            )
            self.ddi_gcn = TwoLayerGCN(n_drugs, self.dim, p.dropout)
            self.theta = nn.Parameter(torch.empty(1).uniform_(-0.1, 0.1))

    def memory_bank(self) -> torch.Tensor:
        """The drug memory ``M``: ``[N, dim]``."""
        bank = self.ehr_gcn(self.ehr_adjacency)
        if self.params.ddi_in_memory:
            bank = bank - self.theta * self.ddi_gcn(self.ddi_adjacency)
        return bank
