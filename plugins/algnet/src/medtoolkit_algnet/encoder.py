"""``dual_self_attention``: ALGNet's patient representation embedding (PRE, Eq. 4-8).

Per code vocabulary (diagnoses, procedures): embed every code and mean-pool them per visit
(``e_t``, 64-d in the paper); run a recurrent network over the visits (``l_t``, Eq. 6) and
a *causal* multi-head self-attention over the visit history (``s_t``, Eq. 4-5: visit t
attends to visits <= t of the same patient; ``Q = eW_Q, K = eW_K, V = eW_V``, heads of width
``head_dim``, concat, ``W_O``, then a linear map to the RNN width); combine
``PRE = l_t + gamma * s_t`` (Eq. 7). The modalities are concatenated and transformed,
``a_t = Linear(ReLU([PRE_d, PRE_p]))`` (Eq. 8), giving one query per visit.

All visits of all patients of a batch are computed in one pass. Unlike the public code,
the attention runs across visits (not across heads), each modality has its own attention,
and the code embeddings are the attention's input (not a position encoding alone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from medtoolkit.components.base import Encoder
from medtoolkit.components.encoders.gru import code_embedding_tables, pool_vocabulary, reset_code_embeddings
from medtoolkit.components.params import InputVocabularies, Params

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention over visits, visit t attending to visits <= t (Eq. 4-5).

    ``s = concat(head_1..head_h) W_O W_P``: ``W_O`` is Eq. 5's output matrix and ``W_P`` the
    paper's "linear layer to match the RNN" width. Two linear maps in a row are one linear
    map, so by default (``separate_output=False``) they are a single ``[h d_k, output_dim]``
    layer: the same family of functions with ``(h d_k)^2`` fewer weights and a third less
    time per step; ``separate_output=True`` keeps both matrices as written.

    Args:
        input_dim: width of the visit embeddings ``e``.
        heads: number of heads h.
        head_dim: width of each head's queries/keys/values (``d_k``; the paper: 64).
        output_dim: width of ``s`` (the RNN width, so that Eq. 7 can add them).
        dropout: dropout on the attention weights.
        separate_output: keep ``W_O`` and ``W_P`` as two layers.
    """

    def __init__(
        self, input_dim: int, heads: int, head_dim: int, output_dim: int, dropout: float, separate_output: bool = False
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, head_dim, dropout
        self.qkv = nn.Linear(input_dim, 3 * heads * head_dim)  # W_Q, W_K, W_V of every head
        width = heads * head_dim
        if separate_output:  # W_O, then the linear map to the RNN width
            self.project = nn.Sequential(nn.Linear(width, width), nn.Linear(width, output_dim))
        else:  # W_O W_P as one matrix
            self.project = nn.Linear(width, output_dim)

    def forward(self, visits: torch.Tensor) -> torch.Tensor:
        """``[B, T, input_dim]`` -> ``[B, T, output_dim]``.

        Padding visits come after the real ones, so the causal mask alone keeps them out of
        every real visit's context; every row has at least itself to attend to (no NaN).
        Scores are ``Q K^T / sqrt(d_k)`` (``torch``'s fused scaled dot-product attention).
        """
        batch, n_visits, _ = visits.shape
        qkv = self.qkv(visits).view(batch, n_visits, 3, self.heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each [B, h, T, d_k]
        heads = F.scaled_dot_product_attention(
            query, key, value, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # [B, h, T, d_k]
        heads = heads.transpose(1, 2).reshape(batch, n_visits, self.heads * self.head_dim)
        return self.project(heads)


class DualSelfAttentionEncoder(Encoder):
    """ALGNet's PRE encoder: per vocabulary an RNN and a causal self-attention, ``l + gamma s``.

    Shapes: ``forward(batch) -> [B, T, output_dim]``; the output at visit t depends on the
    codes of visits <= t only. ``rnn="none"`` keeps the attention alone (``PRE = gamma s``),
    ``gamma=0`` the RNN alone (the attention is then not built).
    """

    class Params(Params):
        embedding_dim: int = Field(64, ge=1, description="code embedding width (the paper: 64)")
        hidden_dim: int = Field(128, ge=1, description="RNN / attention output width per vocabulary (GAMENet: 128)")
        heads: int = Field(8, ge=1, description="attention heads h (the paper: 8)")
        head_dim: int = Field(64, ge=1, description="per-head query/key/value width d_k (the paper: 64)")
        gamma: float = Field(1.0, ge=0.0, description="weight of the attention in PRE = l + gamma * s (Eq. 7)")
        dropout: float = Field(0.4, ge=0.0, lt=1.0, description="dropout on code embeddings (as GAMENet)")
        attention_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on attention weights")
        separate_output: bool = Field(
            False, description="keep the attention's W_O and the projection to hidden_dim as two layers "
            "(their product is one linear map: the default fuses them)"
        )
        output_dim: int = Field(64, ge=1, description="width of the visit representation a_t")
        rnn: Literal["gru", "lstm", "none"] = Field("gru", description="recurrent module over visits (Eq. 6)")
        vocabularies: InputVocabularies = Field(
            ("diagnoses", "procedures"), min_length=1, description="code vocabularies to encode"
        )

        @model_validator(mode="after")
        def _something_encodes(self) -> "DualSelfAttentionEncoder.Params":
            if self.rnn == "none" and self.gamma == 0.0:
                raise ValueError("rnn='none' with gamma=0 leaves nothing to encode the visits")
            return self

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        if schema is None:
            raise ValueError("DualSelfAttentionEncoder needs a DataSchema (vocabulary sizes)")
        p = self.params
        self.vocabularies = tuple(p.vocabularies)
        self.embeddings = code_embedding_tables(schema, self.vocabularies, p.embedding_dim)
        if p.rnn != "none":
            rnn_class = nn.GRU if p.rnn == "gru" else nn.LSTM
            self.rnns = nn.ModuleDict(
                {name: rnn_class(p.embedding_dim, p.hidden_dim, batch_first=True) for name in self.vocabularies}
            )
        if p.gamma > 0.0:
            self.attentions = nn.ModuleDict(
                {
                    name: CausalSelfAttention(
                        p.embedding_dim, p.heads, p.head_dim, p.hidden_dim, p.attention_dropout, p.separate_output
                    )
                    for name in self.vocabularies
                }
            )
        self.dropout = nn.Dropout(p.dropout)
        self.query = nn.Linear(len(self.vocabularies) * p.hidden_dim, p.output_dim)
        reset_code_embeddings(self.embeddings)  # GAMENet's initialisation

    @property
    def output_dim(self) -> int:
        return self.params.output_dim

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """Visit representations ``a_t`` for every visit.

        Args:
            batch: padded batch; reads ``batch.codes[v]`` (``[B, T, L_v]``) per vocabulary.

        Returns:
            ``[B, T, output_dim]`` (values at padding visits are meaningless).
        """
        p = self.params
        streams = []
        for name in self.vocabularies:
            visits = pool_vocabulary(type(self).__name__, self.embeddings, batch, name, self.dropout, "mean")  # e_t
            pre = 0.0
            if p.rnn != "none":
                pre, _ = self.rnns[name](visits)  # l_t, [B, T, H]
            if p.gamma > 0.0:
                pre = pre + p.gamma * self.attentions[name](visits)  # + gamma * s_t
            streams.append(pre)
        return self.query(torch.relu(torch.cat(streams, dim=-1)))  # a_t, [B, T, output_dim]
