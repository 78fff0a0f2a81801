"""``set_transformer``: TEMPT's medical encoder (Eq. 1-4), a transformer over code *sets*.

Per visit and per code vocabulary (diagnoses, procedures): the codes' embeddings (one learnable
table per vocabulary, ``E_d`` and ``E_p``, Sec. 3.2.1) follow a ``[CLS]`` embedding and, when a
prompt is given, the prompt vectors; ``K`` transformer layers encode the sequence and the output
at ``[CLS]`` is the set's representation (``r_d``, ``r_p``). There are **no positional
embeddings**: the codes of a visit form a set, and the output does not depend on their order.

The input tokens first pass a LayerNorm and dropout (``input_norm``, as BERT and the public code
have; the paper feeds the embeddings straight in: ``input_norm: false``). One layer (Eq. 1-4,
post-LN as written; ``norm: pre`` is an option)::

    M   = LayerNorm(X + Dropout(MultiHead(X, X, X)))        # Eq. 3
    X'  = LayerNorm(M + Dropout(ReLU(M W1 + b1) W2 + b2))    # Eq. 4, W1, W2: c x c

``MultiHead`` has ``A`` heads of width ``c / A`` with explicit ``nn.Linear`` projections for the
queries, keys, values and output (so the core ``lora`` adapter can wrap them), scores
``Q K^T / sqrt(c / A)`` (Eq. 1 with ``c`` the width of the head's inputs) and key masks for
padding. By default (``shared=True``, the paper) the same layers encode every vocabulary;
``shared=False`` gives each vocabulary its own layers (the paper's TEMPT-DE ablation).

Speed: the visits of a batch are flattened to the ``N`` real visits once (padding visits are
never encoded), and the last layer computes its attention query, residuals and feed-forward
network at ``[CLS]`` only (the only row that is read): the same ``r`` as the full layer, with a
last layer ``L`` times cheaper.

Long sets: each set keeps its first ``max_codes`` codes (the paper's maximum input length 100;
eICU has sets of up to 133 procedures); every truncated set is counted in
:attr:`SetTransformerEncoder.truncated_sets` and the first truncation warns once.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from medtoolkit.components.base import Encoder
from medtoolkit.components.encoders.gru import code_embedding_tables
from medtoolkit.components.params import InputVocabularies, Params

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch

#: standard deviation of the initial code, [CLS] and [MASK] embeddings (BERT's)
EMBEDDING_INIT_STD = 0.02
#: the key of the single layer stack when the vocabularies share it
SHARED = "shared"
#: rows of :attr:`SetTransformerEncoder.special_tokens`
CLS, MASK = 0, 1


class SetAttention(nn.Module):
    """Multi-head attention of Eq. 1-2 with explicit query/key/value/output projections.

    Args:
        dim: model width ``c`` (divisible by ``heads``).
        heads: number of heads ``A``.
        dropout: dropout on the attention weights.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)  # W^Q of every head
        self.key = nn.Linear(dim, dim)  # W^K
        self.value = nn.Linear(dim, dim)  # W^V
        self.output = nn.Linear(dim, dim)  # W^O

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Attend from ``queries`` to ``tokens``.

        Args:
            queries: ``[N, S_q, c]`` the rows that attend (all tokens, or ``[CLS]`` only).
            tokens: ``[N, S, c]`` keys and values.
            keep: ``[N, S]`` bool, True for real tokens (padding is never attended to).

        Returns:
            ``[N, S_q, c]``.
        """
        n, s_q, width = queries.shape
        s = tokens.shape[1]

        def split(x: torch.Tensor, length: int) -> torch.Tensor:
            return x.view(n, length, self.heads, self.head_dim).transpose(1, 2)  # [N, A, len, c/A]

        heads = F.scaled_dot_product_attention(
            split(self.query(queries), s_q), split(self.key(tokens), s), split(self.value(tokens), s),
            attn_mask=keep[:, None, None, :], dropout_p=self.dropout if self.training else 0.0,
        )  # [N, A, S_q, c/A]
        return self.output(heads.transpose(1, 2).reshape(n, s_q, width))


class SetTransformerLayer(nn.Module):
    """One transformer layer (Eq. 3-4), FFN ``c -> c -> c`` with ReLU.

    Post-LN (the paper's Eq. 3-4): ``M = LN(X + MH(X))``, ``X' = LN(M + FFN(M))``. Pre-LN (an
    option; the public code's BERT): ``M = X + MH(LN(X))``, ``X' = M + FFN(LN(M))``.

    Args:
        dim: width ``c``.
        heads: attention heads ``A``.
        dropout: dropout on the attention and feed-forward outputs before each residual sum.
        attention_dropout: dropout on the attention weights.
        pre_norm: pre-LN instead of post-LN.
    """

    def __init__(self, dim: int, heads: int, dropout: float, attention_dropout: float, pre_norm: bool = False) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.attention = SetAttention(dim, heads, attention_dropout)
        self.attention_norm = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.output_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor, first_only: bool = False) -> torch.Tensor:
        """``[N, S, c] -> [N, S, c]`` (``[N, 1, c]``, the first row only, with ``first_only``).

        Args:
            tokens: ``[N, S, c]`` token vectors, ``[CLS]`` first.
            keep: ``[N, S]`` bool key mask (True: a real token).
            first_only: compute the output at the first token only (the last layer: the
                other rows are never read); equal to ``forward(tokens, keep)[:, :1]``.
        """
        if self.pre_norm:
            normed = self.attention_norm(tokens)
            queries = normed[:, :1] if first_only else normed
            middle = (tokens[:, :1] if first_only else tokens) + self.dropout(self.attention(queries, normed, keep))
            return middle + self.dropout(self.feed_forward(self.output_norm(middle)))
        queries = tokens[:, :1] if first_only else tokens
        middle = self.attention_norm(queries + self.dropout(self.attention(queries, tokens, keep)))  # Eq. 3
        return self.output_norm(middle + self.dropout(self.feed_forward(middle)))  # Eq. 4


class SetTransformerStack(nn.Module):
    """LayerNorm (``input_norm``) and dropout on the input tokens, ``K`` layers; the output at ``[CLS]``.

    With pre-LN layers a final LayerNorm follows the last layer (so ``r`` is normalised either way).
    """

    def __init__(
        self, layers: int, dim: int, heads: int, dropout: float, attention_dropout: float, pre_norm: bool = False,
        input_norm: bool = True,
    ) -> None:
        super().__init__()
        self.input_norm: nn.Module = nn.LayerNorm(dim) if input_norm else nn.Identity()
        self.input_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            [SetTransformerLayer(dim, heads, dropout, attention_dropout, pre_norm) for _ in range(layers)]
        )
        self.final_norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``[N, S, c]``, ``[N, S]`` -> ``[N, c]`` (the last layer's output at ``[CLS]``).

        Args:
            tokens: the input embeddings (``[CLS]``, prompts, codes), before normalisation.
            keep: ``[N, S]`` bool key mask (True: a real token).
        """
        tokens = self.input_dropout(self.input_norm(tokens))
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            tokens = layer(tokens, keep, first_only=index == last)
        return self.final_norm(tokens[:, 0])


class SetTransformerEncoder(Encoder):
    """TEMPT's medical encoder: one ``[CLS]`` representation per visit and code vocabulary.

    ``forward(batch) -> [B, T, V * dim]`` (the vocabularies' ``r`` concatenated, ``r_d || r_p``;
    zeros at padding visits). Visit ``t`` reads its own codes only (causal). The recommender
    ``tempt`` uses the richer :meth:`real_codes` / :meth:`encode_sets` (masked views, prompts)
    and :meth:`encode` (``[B, T, dim]`` per vocabulary).
    """

    class Params(Params):
        dim: int = Field(300, ge=1, description="width c of the code embeddings and of the transformer")
        layers: int = Field(2, ge=1, le=24, description="transformer layers K")
        heads: int = Field(2, ge=1, description="attention heads A (dim must be divisible by heads)")
        dropout: float = Field(0.1, ge=0.0, lt=1.0,
                               description="dropout on the input tokens and on each sublayer's output")
        attention_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on the attention weights")
        max_codes: int = Field(100, ge=1, description="codes kept per set (its first ones); longer sets are cut")
        norm: Literal["post", "pre"] = Field(
            "post", description="LayerNorm after each residual sum (post, Eq. 3-4) or before each sublayer (pre)"
        )
        input_norm: bool = Field(
            True, description="LayerNorm on the input tokens (as BERT; shortens the pre-training plateau at c = 300)"
        )
        shared: bool = Field(True, description="one layer stack for every vocabulary (False: TEMPT-DE)")
        vocabularies: InputVocabularies = Field(
            ("diagnoses", "procedures"), min_length=1, description="code vocabularies, each encoded as a set"
        )

        @model_validator(mode="after")
        def _heads_divide_dim(self) -> "SetTransformerEncoder.Params":
            if self.dim % self.heads:
                raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
            return self

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        if schema is None:
            raise ValueError("SetTransformerEncoder needs a DataSchema (vocabulary sizes)")
        p = self.params
        self.vocabularies: tuple[str, ...] = tuple(p.vocabularies)
        self.vocab_sizes: dict[str, int] = {name: schema.vocab_size(name) for name in self.vocabularies}
        self.embeddings = code_embedding_tables(schema, self.vocabularies, p.dim)  # E_d, E_p (+ padding row 0)
        #: row 0: the [CLS] embedding, row 1: the [MASK] embedding (e_k)
        self.special_tokens = nn.Embedding(2, p.dim)
        names = (SHARED,) if p.shared else self.vocabularies
        self.stacks = nn.ModuleDict(
            {name: SetTransformerStack(p.layers, p.dim, p.heads, p.dropout, p.attention_dropout, p.norm == "pre",
                                        p.input_norm)
             for name in names}
        )
        #: sets cut to ``max_codes`` so far (a plain count, for reports)
        self.truncated_sets = 0
        self.reset_embeddings()

    def reset_embeddings(self) -> None:
        """Code, ``[CLS]`` and ``[MASK]`` embeddings ~ N(0, 0.02) (BERT's), padding rows zero."""
        with torch.no_grad():
            for table in self.embeddings.values():
                table.weight.normal_(0.0, EMBEDDING_INIT_STD)
                table.weight[0].zero_()
            self.special_tokens.weight.normal_(0.0, EMBEDDING_INIT_STD)

    @property
    def cls_embedding(self) -> torch.Tensor:
        """``[c]`` the ``[CLS]`` embedding (a row of :attr:`special_tokens`)."""
        return self.special_tokens.weight[CLS]

    @property
    def dim(self) -> int:
        """Width ``c`` of one vocabulary's representation."""
        return self.params.dim

    @property
    def output_dim(self) -> int:
        return len(self.vocabularies) * self.params.dim

    def stack(self, vocabulary: str) -> SetTransformerStack:
        """The layer stack encoding ``vocabulary`` (the shared one unless ``shared=False``)."""
        return self.stacks[SHARED if self.params.shared else vocabulary]

    # ------------------------------------------------------------------ inputs
    def real_codes(self, batch: "PaddedBatch", vocabulary: str) -> torch.Tensor:
        """The codes of the batch's real visits, cut to ``max_codes`` per set.

        Args:
            batch: a padded batch.
            vocabulary: which codes.

        Returns:
            ``[N, L]`` int64 (vocabulary index + 1, 0 = padding), the ``N`` real visits in
            row-major ``(b, t)`` order (``batch.visit_mask``'s ``True`` entries).

        Raises:
            KeyError: the batch has no such codes.
        """
        codes = batch.codes.get(vocabulary)
        if codes is None:
            raise KeyError(f"set_transformer reads {vocabulary!r} codes but the batch has {sorted(batch.codes)}")
        flat = codes[batch.visit_mask]  # [N, L]
        limit = self.params.max_codes
        if flat.shape[1] > limit:
            cut = int((flat[:, limit:] > 0).any(dim=1).sum())
            if cut:
                if self.truncated_sets == 0:
                    warnings.warn(
                        f"set_transformer: {cut} {vocabulary} set(s) longer than max_codes={limit} keep their "
                        f"first {limit} codes (further cuts are counted in encoder.truncated_sets, not warned)",
                        stacklevel=2,
                    )
                self.truncated_sets += cut
            flat = flat[:, :limit]
        return flat

    # ------------------------------------------------------------------ encoding
    def encode_sets(
        self,
        vocabulary: str,
        codes: torch.Tensor,
        mask_positions: torch.Tensor | None = None,
        prompts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode ``N`` sets of one vocabulary: ``[CLS], prompts..., codes...`` -> ``r`` at ``[CLS]``.

        Args:
            vocabulary: which embedding table (and layer stack with ``shared=False``).
            codes: ``[N, L]`` int64, vocabulary index + 1, 0 = padding (see :meth:`real_codes`).
            mask_positions: ``[N, L]`` bool, True where a code's embedding is replaced by the
                ``[MASK]`` embedding (the code still counts as a real token); None: none.
            prompts: ``[b, c]`` (the same prompts for every set) or ``[N, b, c]``, placed
                right after ``[CLS]``; None: no prompts.

        Returns:
            ``[N, c]`` the representations ``r`` (``r'`` for masked views).
        """
        n = codes.shape[0]
        vectors = self.embeddings[vocabulary](codes)  # [N, L, c]
        specials = self.special_tokens.weight
        if mask_positions is not None:
            vectors = torch.where(mask_positions.unsqueeze(-1), specials[MASK].to(vectors.dtype), vectors)
        parts = [specials[CLS].expand(n, 1, -1)]
        keep = [torch.ones(n, 1, dtype=torch.bool, device=codes.device)]
        if prompts is not None:
            if prompts.dim() == 2:
                prompts = prompts.unsqueeze(0).expand(n, -1, -1)
            if prompts.dim() != 3 or prompts.shape[0] != n or prompts.shape[2] != self.dim:
                raise ValueError(f"prompts must be [b, {self.dim}] or [{n}, b, {self.dim}], got {tuple(prompts.shape)}")
            parts.append(prompts.to(vectors.dtype))
            keep.append(torch.ones(n, prompts.shape[1], dtype=torch.bool, device=codes.device))
        parts.append(vectors)
        keep.append(codes > 0)
        return self.stack(vocabulary)(torch.cat(parts, dim=1), torch.cat(keep, dim=1))

    def encode(
        self, batch: "PaddedBatch", prompts: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Every vocabulary's representation at every visit.

        Args:
            batch: a padded batch.
            prompts: per vocabulary ``[b, c]`` or ``[B, T, b, c]`` prompt vectors (None: none).

        Returns:
            ``{vocabulary: [B, T, c]}`` (zeros at padding visits).
        """
        mask = batch.visit_mask
        result = {}
        for name in self.vocabularies:
            prompt = None if prompts is None else prompts.get(name)
            if prompt is not None and prompt.dim() == 4:
                prompt = prompt[mask]
            flat = self.encode_sets(name, self.real_codes(batch, name), prompts=prompt)
            result[name] = scatter_visits(flat, mask)
        return result

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """``[B, T, V * c]``: ``r_d || r_p`` per visit (zeros at padding visits)."""
        encoded = self.encode(batch)
        return torch.cat([encoded[name] for name in self.vocabularies], dim=-1)


def scatter_visits(flat: torch.Tensor, visit_mask: torch.Tensor) -> torch.Tensor:
    """Place per-real-visit rows back on the batch grid.

    Args:
        flat: ``[N, D]`` rows of the real visits in row-major order.
        visit_mask: ``[B, T]`` bool with ``N`` True entries.

    Returns:
        ``[B, T, D]`` with zeros at padding visits (differentiable w.r.t. ``flat``).
    """
    grid = flat.new_zeros(*visit_mask.shape, flat.shape[-1])
    return grid.index_put((visit_mask,), flat)
