"""``evolvegat``: DNMDR's longitudinal patient representation (Eq. 5-18), every visit at once.

Shapes (B patients, T visits, V real visits of the batch, N snapshot nodes, E = ``embedding_dim``,
H = ``hidden_dim``):

1. the snapshot of visit t holds the codes ``d_t``, ``p_t`` and ``m_{t-1}`` (the previous visit's
   medications; none at the first visit), packed real nodes first
   (:func:`~medtoolkit_dnmdr.snapshots.pack_nodes`) and embedded with three tables (Eq. 5-7,
   GAMENet's ``U(-0.1, 0.1)`` initialisation) and dropout: ``[V, N, E]``; its weighted adjacency
   ``[V, N, N]`` comes from :func:`~medtoolkit_dnmdr.snapshots.snapshot_weights` (Eq. 2-4);
2. EvolveGAT (Eq. 8-11): ``layers`` graph-attention layers; layer l at visit position t uses
   the weight ``W_t^(l)`` ``[E, E]``, evolved over positions by an LSTM cell whose input and
   hidden state are the previous weight's columns (``W_t = LSTM(W_{t-1})``, ``W_1`` learned);
   ``h' = h + ELU(alpha (h W_t))`` (``residual``; :func:`~medtoolkit_dnmdr.attention.weighted_attention`);
3. mean pooling per code type (Eq. 12-14) ``[V, E]`` x 3, scattered back to ``[B, T, E]``;
4. one GRU per type over the visits (Eq. 15-17) ``[B, T, H]`` x 3;
5. ``q_t = Linear(ReLU([h_d', h_p', h_m']))`` (Eq. 18; ``h_m'`` only with ``medication_state``).

Causality: visit t reads the codes of visit t and the medication codes of visit t - 1; the
GRUs run forward in time. The weights depend on the visit position only, not on the patient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field
from torch import nn

from medtoolkit.components.base import Encoder
from medtoolkit.components.encoders.gru import code_embedding_tables, reset_code_embeddings
from medtoolkit.components.params import Params
from medtoolkit_dnmdr.attention import edge_bias, weighted_attention
from medtoolkit_dnmdr.snapshots import (
    DIAGNOSES, MEDICATIONS, PROCEDURES, SNAPSHOT_STATISTICS, conditional_table, pack_nodes, snapshot_weights,
)

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch

_TYPES = (DIAGNOSES, PROCEDURES, MEDICATIONS)


def inverted_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``nn.functional.dropout(x, p, training)`` with the mask drawn by ``torch.rand``.

    The same distribution (each element kept with probability ``1 - p`` and scaled by
    ``1 / (1 - p)``); on CPU a uniform draw and a comparison are about twice as fast as the
    Bernoulli sampler torch's dropout uses, and the snapshot nodes are the largest tensor
    dropout touches in a DNMDR step.
    """
    if not training or p == 0.0:
        return x
    keep = torch.rand(x.shape, device=x.device) >= p
    return x * keep.to(x.dtype) * (1.0 / (1.0 - p))


class EvolvingWeights(nn.Module):
    """The GAT weights of one layer at every visit position: ``[T, E, E]`` (Eq. 8-9).

    ``W_1`` is a learned matrix; ``W_t = h_t^T`` with ``(h_t, c_t) = LSTMCell(W_{t-1}^T,
    (W_{t-1}^T, c_{t-1}))``: the E columns of the weight are a batch of E vectors of width E
    run through one shared LSTM cell (EvolveGCN-O's scheme). ``evolve=False`` repeats ``W_1``.
    """

    def __init__(self, dim: int, evolve: bool) -> None:
        super().__init__()
        self.initial = nn.Parameter(torch.empty(dim, dim))
        nn.init.xavier_uniform_(self.initial)
        self.evolve = evolve
        self.cell = nn.LSTMCell(dim, dim) if evolve else None

    def forward(self, n_positions: int) -> torch.Tensor:
        """``[n_positions, E, E]``: the weight at each visit position."""
        if self.cell is None:
            return self.initial.unsqueeze(0).expand(n_positions, -1, -1)
        columns = self.initial.t()  # [E columns, E]
        state = torch.zeros_like(columns)
        # input and hidden state are the same matrix, so the cell's two products are one
        weight = self.cell.weight_ih + self.cell.weight_hh  # [4E, E]
        bias = self.cell.bias_ih + self.cell.bias_hh
        weights = [self.initial]
        for _ in range(1, n_positions):
            gate_in, gate_forget, candidate, gate_out = nn.functional.linear(columns, weight, bias).chunk(4, dim=1)
            state = torch.sigmoid(gate_forget) * state + torch.sigmoid(gate_in) * torch.tanh(candidate)
            columns = torch.sigmoid(gate_out) * torch.tanh(state)
            weights.append(columns.t())
        return torch.stack(weights)


class EvolveGATEncoder(Encoder):
    """Patient queries from weighted snapshot graphs and an evolving GAT (DNMDR Eq. 1-18).

    Example::

        encoder = EvolveGATEncoder(EvolveGATEncoder.Params(), schema)
        query = encoder(batch)  # [B, T, output_dim]

    The schema must carry the training-split statistics of :meth:`statistics_needed`
    (a task's schema computes them on request).
    """

    class Params(Params):
        embedding_dim: int = Field(64, ge=1, description="code embedding width E (also the GAT width)")
        hidden_dim: int = Field(64, ge=1, description="width of the per-type GRUs")
        output_dim: int = Field(64, ge=1, description="width of the visit query")
        dropout: float = Field(0.4, ge=0.0, lt=1.0, description="dropout on the input code embeddings")
        layers: int = Field(2, ge=1, le=8, description="graph-attention layers per snapshot")
        conditional_probability: bool = Field(
            True, description="weight edges by training-split conditional probabilities (false: fully "
            "connected snapshots, ablation DNMDR_prob)")
        evolve: bool = Field(True, description="evolve the GAT weights over visits with an LSTM (false: one "
                             "weight for every visit, ablation DNMDR_lstm)")
        pooling: Literal["mean", "sum"] = Field("mean", description="pooling of a type's nodes per visit")
        medication_state: bool = Field(True, description="add the medication GRU's state (Eq. 17) to the query")
        residual: bool = Field(True, description="add each GAT layer's input to its output (h' = h + ELU(alpha h W))")
        buckets: int = Field(8, ge=1, le=64, description="visits of a batch are cut into this many groups of "
                             "similar snapshot size, each padded on its own (speed only; results are the same)")

    params: Params

    @classmethod
    def statistics_needed(cls, params: Params) -> frozenset[str]:  # type: ignore[override]
        """Diagnosis-, procedure- and drug-drug co-occurrence counts and per-code counts."""
        return SNAPSHOT_STATISTICS if getattr(params, "conditional_probability", True) else frozenset()

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        if schema is None:
            raise ValueError("EvolveGATEncoder needs a DataSchema (vocabulary sizes, co-occurrence counts)")
        p = self.params
        dim = p.embedding_dim
        self.embeddings = code_embedding_tables(schema, _TYPES, dim)
        # row of each type's padding row in the concatenated table (code c of type k: offset_k + c)
        sizes = [schema.vocab_size(name) + 1 for name in _TYPES]
        offsets = torch.tensor([sum(sizes[:k]) for k in range(len(_TYPES))])
        self.register_buffer("table_offsets", offsets, persistent=False)
        reset_code_embeddings(self.embeddings)  # U(-0.1, 0.1) as GAMENet's; torch's N(0, 1) trains far slower
        self.weights = nn.ModuleList([EvolvingWeights(dim, p.evolve) for _ in range(p.layers)])
        self.att_dst = nn.Parameter(torch.empty(p.layers, dim).uniform_(-0.1, 0.1))
        self.att_src = nn.Parameter(torch.empty(p.layers, dim).uniform_(-0.1, 0.1))
        states = _TYPES if p.medication_state else (DIAGNOSES, PROCEDURES)
        self.state_types = states
        self.rnns = nn.ModuleDict({name: nn.GRU(dim, p.hidden_dim, batch_first=True) for name in states})
        self.query = nn.Linear(len(states) * p.hidden_dim, p.output_dim)
        if p.conditional_probability:
            who = "encoder 'evolvegat'"
            from medtoolkit.components.statistics import code_counts, pair_counts

            medication_pairs = schema.require_statistic(pair_counts(MEDICATIONS, MEDICATIONS), who)
            tables = (
                conditional_table(schema.require_statistic(pair_counts(DIAGNOSES, MEDICATIONS), who),
                                  schema.require_statistic(code_counts(DIAGNOSES), who)),
                conditional_table(schema.require_statistic(pair_counts(PROCEDURES, MEDICATIONS), who),
                                  schema.require_statistic(code_counts(PROCEDURES), who)),
                conditional_table(medication_pairs, medication_pairs.diagonal()),
            )
            for name, table in zip(("given_diagnosis", "given_procedure", "given_medication"), tables):
                self.register_buffer(name, table, persistent=False)

    @property
    def output_dim(self) -> int:
        return self.params.output_dim

    def _tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        if not self.params.conditional_probability:
            return None
        return self.given_diagnosis, self.given_procedure, self.given_medication

    def snapshot_embeddings(self, batch: "PaddedBatch") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled node embeddings of every real visit after EvolveGAT (Eq. 8-14).

        The visits are sorted by node count and cut into ``buckets`` groups of similar size,
        each packed to its own largest snapshot (padding to the batch's largest snapshot
        would make the ``[V, N, N]`` attention several times larger): a loop over a few size
        groups, never over patients or visits.

        Returns:
            ``(pooled [V, 3, E], visit_batch [V], visit_position [V])``: per real visit, the
            pooled diagnosis, procedure and previous-medication nodes, and where it sits in the batch.
        """
        missing = [name for name in _TYPES if name not in batch.codes]
        if missing:
            raise KeyError(f"encoder 'evolvegat' reads {missing} codes but the batch has {sorted(batch.codes)}")
        visit_batch, visit_position = batch.visit_mask.nonzero(as_tuple=True)  # [V], [V]
        medications = batch.codes[MEDICATIONS]
        previous = torch.cat([torch.zeros_like(medications[:, :1]), medications[:, :-1]], dim=1)  # m_{t-1}
        codes = [batch.codes[DIAGNOSES][visit_batch, visit_position],
                 batch.codes[PROCEDURES][visit_batch, visit_position],
                 previous[visit_batch, visit_position]]  # [V, L_type] each
        weights = [evolving(batch.max_visits) for evolving in self.weights]  # per layer [T, E, E]
        table = torch.cat([self.embeddings[name].weight for name in _TYPES])  # one lookup for all types
        lengths = torch.stack([(c > 0).sum(dim=1) for c in codes], dim=1)  # [V, 3]
        order = torch.argsort(lengths.sum(dim=1))
        pooled = codes[0].new_zeros((len(order), len(_TYPES), self.params.embedding_dim), dtype=torch.float32)
        for group in torch.tensor_split(order, min(self.params.buckets, max(len(order), 1))):
            if len(group) == 0:
                continue
            widths = lengths[group].amax(dim=0).clamp_min(1).tolist()
            group_codes = [c[group, :width] for c, width in zip(codes, widths)]
            pooled = pooled.index_put((group,), self._snapshot_group(group_codes, visit_position[group], weights, table))
        return pooled, visit_batch, visit_position

    def _snapshot_group(
        self, codes: list[torch.Tensor], position: torch.Tensor, weights: list[torch.Tensor], table: torch.Tensor
    ) -> torch.Tensor:
        """EvolveGAT and pooling for one group of visits: codes ``[v, L_type]`` x 3 -> ``[v, 3, E]``.

        ``weights``: per layer ``[T, E, E]``; ``table``: the three embedding tables stacked (row
        ``table_offsets[k] + c`` is code ``c`` of type ``k``), built once per forward pass.
        """
        node_codes, node_types = pack_nodes(*codes)  # [v, N] x 2
        rows = torch.where(node_codes > 0, node_codes + self.table_offsets[node_types], 0)
        nodes = nn.functional.embedding(rows, table)
        hidden = inverted_dropout(nodes, self.params.dropout, self.training)  # [v, N, E]
        bias = edge_bias(snapshot_weights(node_codes, node_types, self._tables()))  # [v, N, N] x 2
        for layer, weight in enumerate(weights):
            z = torch.bmm(hidden, weight[position])  # W_t of each visit's position
            alpha = weighted_attention(z, bias, self.att_dst[layer], self.att_src[layer])
            update = nn.functional.elu(alpha @ z)
            hidden = hidden + update if self.params.residual else update
        pooled = []
        for node_type in range(len(_TYPES)):
            member = ((node_types == node_type) & (node_codes > 0)).unsqueeze(-1).to(hidden.dtype)  # [v, N, 1]
            total = (hidden * member).sum(dim=1)
            if self.params.pooling == "mean":
                total = total / member.sum(dim=1).clamp_min(1.0)
            pooled.append(total)
        return torch.stack(pooled, dim=1)

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """Queries ``[B, T, output_dim]`` for every visit (values at padding visits are meaningless)."""
        pooled, visit_batch, visit_position = self.snapshot_embeddings(batch)
        grid = pooled.new_zeros((batch.batch_size, batch.max_visits, len(_TYPES), pooled.shape[-1]))
        grid[visit_batch, visit_position] = pooled
        states = []
        for name in self.state_types:
            hidden, _ = self.rnns[name](grid[:, :, _TYPES.index(name)])  # [B, T, H]
            states.append(hidden)
        return self.query(torch.relu(torch.cat(states, dim=-1)))
