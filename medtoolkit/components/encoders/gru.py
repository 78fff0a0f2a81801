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
from medtoolkit.components.dropout import apply_dropout, plain_dropout_keep
from medtoolkit.components.params import InputVocabularies, Params

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


def flat_codes(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The real (non-padding) codes of a padded code tensor, flat, with the visit slot of each.

    Args:
        codes: ``[B, T, L]`` int64, vocabulary index + 1, 0 = padding.

    Returns:
        ``(values [N], slot [N], counts [B, T])``: the N real codes in row-major order, the
        flat visit slot ``b * T + t`` of each, and the number of real codes per visit.
    """
    width = codes.shape[-1]
    present = codes > 0
    positions = present.view(-1).nonzero().squeeze(1)  # flat positions of the real codes, row-major
    values = codes.reshape(-1).index_select(0, positions)
    slot = torch.div(positions, max(width, 1), rounding_mode="floor")
    return values, slot, present.sum(dim=2)


class PooledEmbeddingFunction(torch.autograd.Function):
    """Embedding rows of flat codes, times a dropout mask, summed into visit slots, in one node.

    ``pooled[s] = sum_{i: slot[i] = s} weight[values[i]] * keep[i]`` (divided by ``divisor[s]``
    when one is given); the backward pass scatters the slots' gradients back into the rows
    of ``weight`` without the intermediate ``[N, E]`` autograd nodes.

    Several tables (one per vocabulary) go through one node: the flat codes are the tables'
    codes one after the other, ``sizes[g]`` of them for table ``g`` (their ``values`` index
    that table), and the slots of table ``g`` are numbered after those of the tables before it.

    Shapes: ``apply(values [N], slot [N], keep [N, E] or None, divisor [S, 1] or None,
    n_slots S, sizes (N_0, N_1, ...), weight_0 [V_0, E], weight_1 [V_1, E], ...) -> [S, E]``.
    """

    @staticmethod
    def forward(ctx, values, slot, keep, divisor, n_slots, sizes, *weights):  # type: ignore[override]
        if len(weights) == 1:
            vectors = weights[0].index_select(0, values)  # [N, E]
        else:
            vectors = weights[0].new_empty(values.shape[0], weights[0].shape[1])
            for weight, rows, out in zip(weights, values.split(sizes), vectors.split(sizes)):
                torch.index_select(weight, 0, rows, out=out)
        if keep is not None:
            vectors.mul_(keep)
        pooled = vectors.new_zeros(n_slots, vectors.shape[1]).index_add_(0, slot, vectors)
        if divisor is not None:
            pooled = pooled / divisor
        ctx.save_for_backward(values, slot, keep, divisor)
        ctx.sizes = sizes
        ctx.table_rows = [weight.shape[0] for weight in weights]
        return pooled

    @staticmethod
    def backward(ctx, grad_pooled):  # type: ignore[override]
        values, slot, keep, divisor = ctx.saved_tensors
        if divisor is not None:
            grad_pooled = grad_pooled / divisor
        rows = grad_pooled.index_select(0, slot)  # [N, E]
        if keep is not None:
            rows = rows * keep
        grads = [
            rows.new_zeros(n_rows, rows.shape[1]).index_add_(0, table_values, table_rows)
            for n_rows, table_values, table_rows in zip(ctx.table_rows, values.split(ctx.sizes), rows.split(ctx.sizes))
        ]
        return (None, None, None, None, None, None, *grads)


def plain_embedding(embedding: nn.Module) -> bool:
    """Whether ``embedding`` is a plain dense ``nn.Embedding`` (no max norm, frequency scaling or sparse gradient)."""
    return (type(embedding) is nn.Embedding and embedding.max_norm is None
            and not embedding.scale_grad_by_freq and not embedding.sparse)


def check_pooling(pooling: str) -> None:
    """Refuse a pooling mode other than ``"mean"`` and ``"sum"`` (``ValueError`` naming it)."""
    if pooling not in ("mean", "sum"):
        raise ValueError(f"pooling must be 'mean' or 'sum', got {pooling!r}")


def pool_codes(
    embedding: nn.Embedding,
    codes: torch.Tensor,
    dropout: nn.Module | None = None,
    pooling: str = "mean",
) -> torch.Tensor:
    """Embed padded codes and pool them per visit.

    On the CPU only the real codes are embedded, dropped out and summed into their visits
    (:func:`flat_codes`, ``index_add_``): the padding (often more than half of ``[B, T, L]``)
    is never materialised. On other devices the padded ``[B, T, L, E]`` embeddings are pooled
    (no host synchronisation for the number of real codes). Both give the same values; a
    plain ``nn.Dropout`` is applied with :func:`mask_dropout`.

    Args:
        embedding: table with a zero padding row 0 (``padding_idx=0``).
        codes: ``[B, T, L]`` int64, vocabulary index + 1, 0 = padding.
        dropout: applied to the code embeddings before pooling (as GAMENet does).
        pooling: ``"mean"`` over the real codes (0 for a visit without codes) or ``"sum"``.

    Returns:
        ``[B, T, embedding_dim]``.
    """
    check_pooling(pooling)
    if codes.device.type == "cpu":
        return pool_codes_flat(embedding, codes, dropout, pooling)
    return pool_codes_padded(embedding, codes, dropout, pooling)


def poolable_in_one_node(embeddings: list[nn.Module]) -> bool:
    """Whether :func:`pool_in_one_node` can take these tables: plain ``nn.Embedding`` s of one width, dtype and device."""
    return (all(plain_embedding(embedding) for embedding in embeddings)
            and len({(embedding.weight.shape[1], embedding.weight.dtype, embedding.weight.device)
                     for embedding in embeddings}) == 1)


def pool_in_one_node(
    embeddings: list[nn.Module], flats: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    slots_per_table: int, dropout: nn.Module | None, pooling: str,
) -> torch.Tensor | None:
    """Pool the flat codes of G tables through one :class:`PooledEmbeddingFunction` node.

    One dropout draw covers every table's codes, table after table: a draw of ``N_0 + N_1``
    rows is the two draws in a row, so each table gets the mask it would get alone.

    Args:
        embeddings: G tables accepted by :func:`poolable_in_one_node`.
        flats: :func:`flat_codes` of each table's ``[B, T, L_g]`` codes.
        slots_per_table: ``B * T``.
        dropout: a plain ``nn.Dropout`` or None; any other module is not handled here.
        pooling: ``"mean"`` or ``"sum"``.

    Returns:
        ``[G * B * T, E]`` (table after table), or None when ``dropout`` is another module
        (nothing is drawn then).
    """
    weights = [embedding.weight for embedding in embeddings]
    sizes = tuple(int(values.shape[0]) for values, _, _ in flats)
    handled, keep = plain_dropout_keep(dropout, (sum(sizes), weights[0].shape[1]), weights[0].dtype, weights[0].device)
    if not handled:
        return None

    def joined(parts: list[torch.Tensor]) -> torch.Tensor:
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    values = joined([table_values for table_values, _, _ in flats])
    # table g's slots are numbered after those of the tables before it
    slots = joined([table_slots if group == 0 else table_slots + group * slots_per_table
                    for group, (_, table_slots, _) in enumerate(flats)])
    divisor = (mean_divisor(joined([counts.reshape(-1) for _, _, counts in flats]), weights[0].dtype).view(-1, 1)
               if pooling == "mean" else None)
    return PooledEmbeddingFunction.apply(values, slots, keep, divisor, len(flats) * slots_per_table, sizes, *weights)


def pool_codes_flat(
    embedding: nn.Embedding, codes: torch.Tensor, dropout: nn.Module | None = None, pooling: str = "mean"
) -> torch.Tensor:
    """:func:`pool_codes` over the real codes only: ``[N, E]`` embeddings summed into visit slots.

    A plain table with a plain dropout takes one autograd node for the lookup, the dropout,
    the pooling and the mean (:func:`pool_in_one_node`).

    Shapes: ``codes [B, T, L] -> [B, T, E]``.
    """
    batch_size, n_visits, _ = codes.shape
    values, slot, counts = flat_codes(codes)
    if poolable_in_one_node([embedding]):
        pooled = pool_in_one_node([embedding], [(values, slot, counts)], batch_size * n_visits, dropout, pooling)
        if pooled is not None:
            return pooled.view(batch_size, n_visits, -1)
    vectors = apply_dropout(dropout, embedding(values))  # [N, E]
    pooled = vectors.new_zeros(batch_size * n_visits, vectors.shape[-1]).index_add_(0, slot, vectors)
    return _mean_if_asked(pooled.view(batch_size, n_visits, -1), counts, pooling)


def pool_codes_padded(
    embedding: nn.Embedding, codes: torch.Tensor, dropout: nn.Module | None = None, pooling: str = "mean"
) -> torch.Tensor:
    """:func:`pool_codes` through the padded ``[B, T, L, E]`` embeddings (no host synchronisation).

    Shapes: ``codes [B, T, L] -> [B, T, E]``.
    """
    pooled = apply_dropout(dropout, embedding(codes)).sum(dim=2)  # padding rows are zero
    return _mean_if_asked(pooled, (codes > 0).sum(dim=2), pooling)


def mean_divisor(counts: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """What mean pooling divides each visit's sum by: its code count, at least 1 (same shape, ``dtype``)."""
    return counts.clamp(min=1).to(dtype)


def _mean_if_asked(pooled: torch.Tensor, counts: torch.Tensor, pooling: str) -> torch.Tensor:
    """``pooled [B, T, E]`` divided by the code counts ``[B, T]`` (at least 1) for ``"mean"``."""
    if pooling == "mean":
        return pooled / mean_divisor(counts, pooled.dtype).unsqueeze(-1)
    return pooled


class StackedGRUFunction(torch.autograd.Function):
    """Several independent single-layer GRUs (torch's ``nn.GRU`` equations) run together.

    Every step does one batched matrix product for all the GRUs, and the backward pass
    computes each weight gradient with one matrix product over all time steps (autograd
    through ``torch.gru`` on the CPU does one per step and GRU). Gate order ``(r, z, n)``:
    ``r = sigma(x W_ir + b_ir + h W_hr + b_hr)``, ``z`` likewise,
    ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``, ``h' = (1 - z) n + z h``; ``h_0 = 0``,
    so the first step's hidden gates are the bias alone (no product).

    The forward pass keeps, per step, only what the recurrence needs; the local derivatives
    of all steps are formed at once afterwards (only when a gradient is wanted), so the
    backward loop does one product and three elementwise operations per step.

    Shapes: ``apply(inputs [G, B, T, E], weight_ih [G, 3H, E], weight_hh [G, 3H, H],
    bias_ih [G, 3H], bias_hh [G, 3H]) -> [G, B, T, H]`` (every step's hidden state).
    """

    @staticmethod
    def forward(ctx, inputs, weight_ih, weight_hh, bias_ih, bias_hh):  # type: ignore[override]
        groups, batch_size, n_steps, width = inputs.shape
        hidden_size = weight_hh.shape[-1]
        two = 2 * hidden_size
        x_gates = torch.baddbmm(bias_ih.unsqueeze(1), inputs.reshape(groups, batch_size * n_steps, width),
                                weight_ih.transpose(1, 2)).view(groups, batch_size, n_steps, 3 * hidden_size)
        weight_hh_t = weight_hh.transpose(1, 2)
        bias_hh = bias_hh.unsqueeze(1)  # [G, 1, 3H]
        hidden: torch.Tensor | None = None
        outputs, gates, candidates, hidden_n = [], [], [], []
        for x_step in x_gates.unbind(2):  # [G, B, 3H] per step
            h_gates = bias_hh if hidden is None else torch.baddbmm(bias_hh, hidden, weight_hh_t)
            rz = torch.sigmoid(x_step[..., :two] + h_gates[..., :two])  # [G, B, 2H]: r | z
            reset, update = rz[..., :hidden_size], rz[..., hidden_size:]
            h_n = h_gates[..., two:]
            candidate = torch.tanh(torch.addcmul(x_step[..., two:], reset, h_n))
            # (1 - z) n + z h, with h = 0 at the first step
            hidden = candidate - update * candidate if hidden is None else torch.addcmul(
                candidate, update, hidden - candidate)
            outputs.append(hidden)
            gates.append(rz)
            candidates.append(candidate)
            hidden_n.append(h_n.expand_as(candidate))
        output = torch.stack(outputs, dim=2)  # [G, B, T, H]
        if any(ctx.needs_input_grad):
            rz = torch.stack(gates, dim=2)
            reset, update = rz[..., :hidden_size], rz[..., hidden_size:]
            candidate, h_n = torch.stack(candidates, dim=2), torch.stack(hidden_n, dim=2)
            previous = torch.cat([output.new_zeros(groups, batch_size, 1, hidden_size), output[:, :, :-1]], dim=2)
            # with g = dL/dh': dL/dn_pre = g (1 - z)(1 - n^2), dL/dz_pre = g (h - n) z (1 - z),
            # dL/dr_pre = dL/dn_pre h_n r (1 - r); the hidden gates' n part also carries the factor r
            to_candidate = (1 - update) * (1 - candidate * candidate)
            to_reset = to_candidate * h_n * reset * (1 - reset)
            to_update = (previous - candidate) * update * (1 - update)
            to_x = torch.cat([to_reset, to_update, to_candidate], dim=-1)  # [G, B, T, 3H]
            to_h = torch.cat([to_reset, to_update, to_candidate * reset], dim=-1)
            ctx.save_for_backward(inputs, weight_ih, weight_hh, output, update, to_x, to_h)
        return output

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        inputs, weight_ih, weight_hh, output, update, to_x, to_h = ctx.saved_tensors
        groups, batch_size, n_steps, width = inputs.shape
        hidden_size = weight_hh.shape[-1]
        three = 3 * hidden_size
        # the factors as [..., 3, H], so that dL/dh ([..., 1, H]) broadcasts over the three gates
        to_h = to_h.view(groups, batch_size, n_steps, 3, hidden_size)
        incoming, to_h_steps, update_steps = grad_output.unbind(2), to_h.unbind(2), update.unbind(2)
        grads: list[torch.Tensor] = [grad_output[:, :, 0]] * n_steps
        carry: torch.Tensor | None = None
        for step in range(n_steps - 1, -1, -1):
            grad_hidden = incoming[step] if carry is None else carry + incoming[step]  # dL/dh at this step
            grads[step] = grad_hidden
            if step > 0:
                d_h = (grad_hidden.unsqueeze(2) * to_h_steps[step]).view(groups, batch_size, three)
                carry = torch.baddbmm(grad_hidden * update_steps[step], d_h, weight_hh)
        grad_all = torch.stack(grads, dim=2).unsqueeze(3)  # [G, B, T, 1, H]
        d_x = (grad_all * to_x.view(to_h.shape)).view(groups, batch_size * n_steps, three)
        d_h = (grad_all * to_h).view(groups, batch_size, n_steps, three)
        grad_inputs = grad_weight_ih = grad_weight_hh = grad_bias_ih = grad_bias_hh = None
        if ctx.needs_input_grad[0]:
            grad_inputs = torch.bmm(d_x, weight_ih).view(groups, batch_size, n_steps, width)
        if ctx.needs_input_grad[1]:
            grad_weight_ih = torch.bmm(d_x.transpose(1, 2), inputs.reshape(groups, -1, width))
        if ctx.needs_input_grad[2]:  # the first step's hidden state is 0: only later steps count
            grad_weight_hh = (
                torch.bmm(d_h[:, :, 1:].reshape(groups, -1, three).transpose(1, 2),
                          output[:, :, :-1].reshape(groups, -1, hidden_size))
                if n_steps > 1 else torch.zeros_like(weight_hh)
            )
        if ctx.needs_input_grad[3]:
            grad_bias_ih = d_x.sum(dim=1)
        if ctx.needs_input_grad[4]:
            grad_bias_hh = d_h.sum(dim=(1, 2))
        return grad_inputs, grad_weight_ih, grad_weight_hh, grad_bias_ih, grad_bias_hh


def stacked_gru(rnns: list[nn.GRU], inputs: torch.Tensor) -> torch.Tensor:
    """Run single-layer, batch-first, unidirectional ``nn.GRU`` s on their inputs together.

    The same values as ``torch.stack([rnn(x)[0] for rnn, x in zip(rnns, inputs)])`` (zero
    initial state), computed by :class:`StackedGRUFunction`.

    Args:
        rnns: G GRUs of equal input and hidden sizes (one layer, bias, batch first, one direction).
        inputs: ``[G, B, T, E]``: GRU g reads ``inputs[g]``.

    Returns:
        ``[G, B, T, H]``: every step's hidden state of every GRU.
    """
    return StackedGRUFunction.apply(
        inputs,
        torch.stack([rnn.weight_ih_l0 for rnn in rnns]),
        torch.stack([rnn.weight_hh_l0 for rnn in rnns]),
        torch.stack([rnn.bias_ih_l0 for rnn in rnns]),
        torch.stack([rnn.bias_hh_l0 for rnn in rnns]),
    )


def stackable(rnns: list[nn.Module], inputs: torch.Tensor) -> bool:
    """Whether :func:`stacked_gru` can run these recurrent modules on ``inputs [G, B, T, E]`` (CPU, plain GRUs)."""
    return (
        inputs.device.type == "cpu" and inputs.dtype in (torch.float32, torch.float64)
        and inputs.shape[0] == len(rnns)
        and all(
            type(rnn) is nn.GRU and rnn.num_layers == 1 and rnn.bias and rnn.batch_first
            and not rnn.bidirectional and getattr(rnn, "proj_size", 0) == 0
            and rnn.weight_ih_l0.dtype == inputs.dtype and rnn.weight_ih_l0.device == inputs.device
            for rnn in rnns
        )
        and len({(rnn.input_size, rnn.hidden_size) for rnn in rnns}) == 1
    )


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


def vocabulary_codes(owner: str, batch: "PaddedBatch", name: str) -> torch.Tensor:
    """``batch.codes[name]`` (``[B, T, L]``).

    Raises:
        KeyError: the batch has no ``name`` codes (the message names ``owner``).
    """
    codes = batch.codes.get(name)
    if codes is None:
        raise KeyError(f"{owner} reads {name!r} codes but the batch has {sorted(batch.codes)}")
    return codes


def pool_vocabulary(
    owner: str, tables: nn.ModuleDict, batch: "PaddedBatch", name: str, dropout: nn.Module, pooling: str
) -> torch.Tensor:
    """:func:`pool_codes` of one vocabulary of a batch: ``[B, T, embedding_dim]``.

    Raises:
        KeyError: the batch has no ``name`` codes (the message names ``owner``).
    """
    return pool_codes(tables[name], vocabulary_codes(owner, batch, name), dropout, pooling)


def pool_vocabularies(
    owner: str, tables: nn.ModuleDict, batch: "PaddedBatch", names: tuple[str, ...], dropout: nn.Module,
    pooling: str,
) -> torch.Tensor:
    """:func:`pool_vocabulary` of several vocabularies, stacked: ``[G, B, T, embedding_dim]``, G = ``len(names)``.

    On the CPU, with plain tables of one width and dtype and a plain ``nn.Dropout`` (or
    none), all vocabularies go through one :class:`PooledEmbeddingFunction` node with one
    dropout draw for all their codes. The values are those of pooling the vocabularies one
    after the other: a draw of ``N_0 + N_1`` rows is the two draws in a row, so every
    vocabulary gets the same mask. Otherwise each is pooled on its own and stacked.

    Raises:
        KeyError: the batch lacks one of the vocabularies (the message names ``owner``).
        ValueError: ``pooling`` is neither ``"mean"`` nor ``"sum"``.
    """
    check_pooling(pooling)
    codes = [vocabulary_codes(owner, batch, name) for name in names]
    embeddings = [tables[name] for name in names]
    if all(vocabulary.device.type == "cpu" for vocabulary in codes) and poolable_in_one_node(embeddings):
        batch_size, n_visits = codes[0].shape[:2]
        pooled = pool_in_one_node(embeddings, [flat_codes(vocabulary) for vocabulary in codes], batch_size * n_visits,
                                  dropout, pooling)
        if pooled is not None:
            return pooled.view(len(names), batch_size, n_visits, -1)
    return torch.stack([pool_codes(embedding, vocabulary, dropout, pooling)
                        for embedding, vocabulary in zip(embeddings, codes)])


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
        pooled = pool_vocabularies(type(self).__name__, self.embeddings, batch, self.vocabularies, self.dropout,
                                   self.params.pooling)  # [G, B, T, E], one per vocabulary
        rnns = [self.rnns[name] for name in self.vocabularies]
        if stackable(rnns, pooled):  # the CPU: every vocabulary's GRU in one recurrence
            states = stacked_gru(rnns, pooled)  # type: ignore[arg-type]
            joined = states.permute(1, 2, 0, 3).flatten(2)  # [B, T, G * H], vocabulary after vocabulary
        else:
            joined = torch.cat([rnn(x)[0] for rnn, x in zip(rnns, pooled.unbind(0))], dim=-1)
        return self.query(torch.relu(joined))
