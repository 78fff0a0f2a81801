"""``gru``: GAMENet's dual-GRU visit encoder, batched over patients and visits.

Per vocabulary (diagnoses, procedures, ...): embed every code of every visit, apply
dropout to the code embeddings and pool them (mean over the real codes, or sum) into one
vector per visit; run one recurrent network per vocabulary over each patient's visits;
concatenate the hidden states, apply ReLU and a linear layer -> one query per visit.

Reference: GAMENet ``code/models.py`` (Shang et al., AAAI 2019). Differences: every
visit of every patient of a batch is computed in one pass (the reference recomputes a
patient's whole prefix for every visit); embedding tables carry a padding row (index 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field
from torch import nn

from medtoolkit.components.base import Encoder
from medtoolkit.components.params import InputVocabularies, Params

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


def pool_codes(
    embedding: nn.Embedding,
    codes: torch.Tensor,
    dropout: nn.Module | None = None,
    pooling: str = "mean",
) -> torch.Tensor:
    """Embed padded codes and pool them per visit.

    Args:
        embedding: table with a zero padding row 0 (``padding_idx=0``).
        codes: ``[B, T, L]`` int64, vocabulary index + 1, 0 = padding.
        dropout: applied to the code embeddings before pooling (as GAMENet does).
        pooling: ``"mean"`` over the real codes (0 for a visit without codes) or ``"sum"``.

    Returns:
        ``[B, T, embedding_dim]``.
    """
    vectors = embedding(codes)  # [B, T, L, E]; padding rows are zero
    if dropout is not None:
        vectors = dropout(vectors)
    pooled = vectors.sum(dim=2)
    if pooling == "mean":
        count = (codes > 0).sum(dim=2, keepdim=True).clamp(min=1).to(pooled.dtype)
        pooled = pooled / count
    return pooled


def code_embedding_tables(schema: "DataSchema", vocabularies: tuple[str, ...], embedding_dim: int) -> nn.ModuleDict:
    """One embedding table per code vocabulary, with a padding row 0 (``padding_idx=0``).

    Returns:
        ``{vocabulary: nn.Embedding(vocab_size + 1, embedding_dim)}`` (torch's default
        initialisation; :func:`reset_code_embeddings` applies GAMENet's).
    """
    return nn.ModuleDict(
        {name: nn.Embedding(schema.vocab_size(name) + 1, embedding_dim, padding_idx=0) for name in vocabularies}
    )


def reset_code_embeddings(tables: nn.ModuleDict) -> None:
    """GAMENet's initialisation of code tables: U(-0.1, 0.1), padding row kept at zero."""
    with torch.no_grad():
        for table in tables.values():
            table.weight.uniform_(-0.1, 0.1)
            table.weight[0].zero_()


def pool_vocabulary(
    owner: str, tables: nn.ModuleDict, batch: "PaddedBatch", name: str, dropout: nn.Module, pooling: str
) -> torch.Tensor:
    """:func:`pool_codes` of one vocabulary of a batch: ``[B, T, embedding_dim]``.

    Raises:
        KeyError: the batch has no ``name`` codes (the message names ``owner``).
    """
    codes = batch.codes.get(name)
    if codes is None:
        raise KeyError(f"{owner} reads {name!r} codes but the batch has {sorted(batch.codes)}")
    return pool_codes(tables[name], codes, dropout, pooling)


class GRUEncoder(Encoder):
    """GAMENet's dual GRU: one embedding table and one RNN per code vocabulary.

    Shapes: ``forward(batch) -> [B, T, output_dim]``; the output at visit t depends on
    the codes of visits <= t only (the RNN runs forward in time and padding visits
    come after the real ones).
    """

    class Params(Params):
        embedding_dim: int = Field(64, ge=1, description="code embedding width")
        hidden_dim: int = Field(128, ge=1, description="RNN hidden width (per vocabulary)")
        output_dim: int = Field(64, ge=1, description="width of the visit query")
        dropout: float = Field(0.4, ge=0.0, lt=1.0, description="dropout on code embeddings")
        pooling: Literal["mean", "sum"] = Field("mean", description="how codes of a visit are pooled")
        vocabularies: InputVocabularies = Field(
            ("diagnoses", "procedures"), min_length=1, description="code vocabularies to encode"
        )
        rnn: Literal["gru", "lstm"] = Field("gru", description="recurrent cell over visits")

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        if schema is None:
            raise ValueError("GRUEncoder needs a DataSchema (vocabulary sizes)")
        p = self.params
        self.vocabularies = tuple(p.vocabularies)
        self.embeddings = code_embedding_tables(schema, self.vocabularies, p.embedding_dim)
        rnn_class = nn.GRU if p.rnn == "gru" else nn.LSTM
        self.rnns = nn.ModuleDict(
            {name: rnn_class(p.embedding_dim, p.hidden_dim, batch_first=True) for name in self.vocabularies}
        )
        self.dropout = nn.Dropout(p.dropout)
        self.query = nn.Linear(len(self.vocabularies) * p.hidden_dim, p.output_dim)
        self.reset_embeddings()

    def reset_embeddings(self) -> None:
        """GAMENet's initialisation: U(-0.1, 0.1), padding row kept at zero."""
        reset_code_embeddings(self.embeddings)

    @property
    def output_dim(self) -> int:
        return self.params.output_dim

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """Queries for every visit.

        Args:
            batch: padded batch; reads ``batch.codes[v]`` (``[B, T, L_v]``) per vocabulary.

        Returns:
            ``[B, T, output_dim]`` (values at padding visits are meaningless).
        """
        states = []
        for name in self.vocabularies:
            pooled = pool_vocabulary(type(self).__name__, self.embeddings, batch, name, self.dropout, self.params.pooling)
            hidden, _ = self.rnns[name](pooled)  # [B, T, H]
            states.append(hidden)
        return self.query(torch.relu(torch.cat(states, dim=-1)))
