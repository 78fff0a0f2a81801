"""Tests of the ``gru`` encoder (GAMENet's dual GRU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from medtoolkit.components.encoders.gru import GRUEncoder, pool_codes
from medtoolkit.data.batching import make_batch
from medtoolkit.testing import check_component, fake_batch, fake_ehr, fake_schema


@pytest.mark.parametrize(
    "params",
    [GRUEncoder.Params(), GRUEncoder.Params(rnn="lstm", pooling="sum"), GRUEncoder.Params(vocabularies=("diagnoses",))],
)
def test_conformance(params: GRUEncoder.Params) -> None:
    assert "causality" in check_component(GRUEncoder, params)


def test_defaults_are_gamenet() -> None:
    p = GRUEncoder.Params()
    assert (p.embedding_dim, p.hidden_dim, p.output_dim, p.dropout) == (64, 128, 64, 0.4)
    assert p.vocabularies == ("diagnoses", "procedures") and p.rnn == "gru" and p.pooling == "mean"


def test_embedding_init_and_padding_row() -> None:
    schema = fake_schema()
    torch.manual_seed(0)
    encoder = GRUEncoder(GRUEncoder.Params(), schema)
    for name, table in encoder.embeddings.items():
        assert table.weight.shape == (schema.vocab_sizes[name] + 1, 64)
        assert torch.equal(table.weight[0], torch.zeros(64))
        assert float(table.weight.detach()[1:].abs().max()) <= 0.1
    batch = fake_batch()
    encoder(batch).sum().backward()
    assert torch.equal(encoder.embeddings["diagnoses"].weight.grad[0], torch.zeros(64))


def test_pool_codes_hand_values() -> None:
    table = torch.nn.Embedding(4, 2, padding_idx=0)
    with torch.no_grad():
        table.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    codes = torch.tensor([[[1, 3, 0], [2, 0, 0], [0, 0, 0]]])  # one patient, 3 visits
    mean = pool_codes(table, codes, None, "mean")
    total = pool_codes(table, codes, None, "sum")
    assert torch.allclose(mean, torch.tensor([[[3.0, 4.0], [3.0, 4.0], [0.0, 0.0]]]))
    assert torch.allclose(total, torch.tensor([[[6.0, 8.0], [3.0, 4.0], [0.0, 0.0]]]))


def _reference_gamenet_queries(encoder: GRUEncoder, data, patient: int) -> torch.Tensor:
    """GAMENet's per-visit loop: embed, mean, GRU over the prefix, ReLU, Linear."""
    per_vocab = []
    for name in encoder.vocabularies:
        vectors = []
        for visit in data.patient_visits(patient):
            idx = torch.as_tensor(data.visit_codes(name, visit), dtype=torch.long) + 1
            vectors.append(encoder.embeddings[name](idx).mean(dim=0))
        sequence = torch.stack(vectors).unsqueeze(0)  # [1, T, E]
        outputs = []
        hidden = None
        for t in range(sequence.shape[1]):  # one step at a time, carrying the state
            out, hidden = encoder.rnns[name](sequence[:, t : t + 1], hidden)
            outputs.append(out)
        per_vocab.append(torch.cat(outputs, dim=1))
    return encoder.query(torch.relu(torch.cat(per_vocab, dim=-1)))[0]


def test_matches_per_visit_reference_loop() -> None:
    data = fake_ehr()
    torch.manual_seed(1)
    encoder = GRUEncoder(GRUEncoder.Params(embedding_dim=8, hidden_dim=6, output_dim=5), fake_schema(data)).eval()
    batch = fake_batch(data)
    with torch.no_grad():
        output = encoder(batch)
        for patient in range(data.n_patients):
            expected = _reference_gamenet_queries(encoder, data, patient)
            assert torch.allclose(output[patient, : len(expected)], expected, atol=1e-6)


def test_padding_does_not_change_outputs() -> None:
    data = fake_ehr()
    encoder = GRUEncoder(GRUEncoder.Params(), fake_schema(data)).eval()
    full = encoder(fake_batch(data))
    lengths = data.visits_per_patient
    short = int(lengths.argmin())
    alone = encoder(make_batch(data, [short]))
    assert alone.shape[1] == lengths[short] < full.shape[1]
    assert torch.allclose(full[short, : lengths[short]], alone[0], atol=1e-6)


def test_output_dim_and_errors() -> None:
    schema = fake_schema()
    encoder = GRUEncoder(GRUEncoder.Params(output_dim=7), schema)
    assert encoder.output_dim == 7
    with pytest.raises(ValueError, match="DataSchema"):
        GRUEncoder(GRUEncoder.Params(), None)
    with pytest.raises(KeyError, match="no 'labs' vocabulary"):
        GRUEncoder(GRUEncoder.Params(vocabularies=("labs",)), schema)
    batch = fake_batch()
    without = dataclasses.replace(batch, codes={"diagnoses": batch.codes["diagnoses"]})
    with pytest.raises(KeyError, match="procedures"):
        encoder(without)


def test_lstm_variant_has_lstm_cells() -> None:
    encoder = GRUEncoder(GRUEncoder.Params(rnn="lstm"), fake_schema())
    assert all(isinstance(rnn, torch.nn.LSTM) for rnn in encoder.rnns.values())


# ---------------------------------------------------------------------------- speed paths
def _padded_reference(table: torch.nn.Embedding, codes: torch.Tensor, pooling: str) -> torch.Tensor:
    """The padded formula: embed [B, T, L, E], sum over L, divide by the real-code count."""
    pooled = table(codes).sum(dim=2)
    if pooling == "mean":
        pooled = pooled / (codes > 0).sum(dim=2, keepdim=True).clamp(min=1).to(pooled.dtype)
    return pooled


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_flat_pooling_equals_padded_pooling_values_and_gradients(pooling: str) -> None:
    from medtoolkit.components.encoders.gru import pool_codes_flat, pool_codes_padded

    torch.manual_seed(3)
    table = torch.nn.Embedding(9, 5, padding_idx=0).double()
    codes = torch.randint(1, 9, (4, 3, 6))
    codes[torch.rand(4, 3, 6) < 0.5] = 0  # padding inside and at the end of visits
    codes[1, 2] = 0  # a visit without codes
    weights = torch.randn(4, 3, 5, dtype=torch.float64)
    results = []
    for pool in (pool_codes_flat, pool_codes_padded, lambda t, c, d, p: _padded_reference(t, c, p), pool_codes):
        table.zero_grad()
        pooled = pool(table, codes, None, pooling)
        (pooled * weights).sum().backward()
        results.append((pooled.detach(), table.weight.grad.clone()))
    for pooled, grad in results[1:]:
        assert torch.allclose(pooled, results[0][0], atol=1e-12)
        assert torch.allclose(grad, results[0][1], atol=1e-12)
    assert torch.equal(results[0][0][1, 2], torch.zeros(5, dtype=torch.float64))
    assert torch.equal(results[0][1][0], torch.zeros(5, dtype=torch.float64))  # padding row: no gradient


def test_pool_codes_refuses_an_unknown_pooling() -> None:
    with pytest.raises(ValueError, match="pooling must be 'mean' or 'sum'"):
        pool_codes(torch.nn.Embedding(3, 2, padding_idx=0), torch.ones(1, 1, 1, dtype=torch.long), None, "max")


@pytest.mark.parametrize("n_steps", [1, 2, 4])
def test_stacked_gru_equals_torch_gru_values_and_gradients(n_steps: int) -> None:
    from medtoolkit.components.encoders.gru import stackable, stacked_gru

    torch.manual_seed(5)
    rnns = [torch.nn.GRU(4, 3, batch_first=True).double() for _ in range(2)]
    inputs = [torch.randn(5, n_steps, 4, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    assert stackable(rnns, torch.stack(inputs))
    weights = [torch.randn(5, n_steps, 3, dtype=torch.float64) for _ in range(2)]
    parameters = [p for rnn in rnns for p in rnn.parameters()]

    def values_and_gradients(outputs: list[torch.Tensor]) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
        objective = sum((out * w).sum() for out, w in zip(outputs, weights))
        return [out.detach() for out in outputs], torch.autograd.grad(objective, inputs + parameters)

    expected = values_and_gradients([rnn(x)[0] for rnn, x in zip(rnns, inputs)])
    actual = values_and_gradients(list(stacked_gru(rnns, torch.stack(inputs)).unbind(0)))
    for a, b in zip(expected[0] + list(expected[1]), actual[0] + list(actual[1])):
        assert torch.allclose(a, b, atol=1e-12)
    assert not stackable([torch.nn.LSTM(4, 3, batch_first=True)] * 2, torch.stack(inputs))
    assert not stackable(rnns, torch.stack(inputs)[:1])  # fewer inputs than GRUs
    assert not stackable(rnns, torch.stack(inputs).float())  # not the GRUs' dtype


def test_stacked_gru_without_gradients_saves_nothing_and_gives_the_same_values() -> None:
    from medtoolkit.components.encoders.gru import stacked_gru

    torch.manual_seed(6)
    rnns = [torch.nn.GRU(4, 3, batch_first=True).double() for _ in range(2)]
    inputs = [torch.randn(2, 3, 4, dtype=torch.float64) for _ in range(2)]
    with torch.no_grad():
        outputs = stacked_gru(rnns, torch.stack(inputs))
        expected = [rnn(x)[0] for rnn, x in zip(rnns, inputs)]
    assert all(not out.requires_grad for out in outputs)
    for out, ref in zip(outputs, expected):
        assert torch.allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_fused_pooling_with_dropout_equals_the_module_path(pooling: str) -> None:
    """The one-node pooling draws the same dropout mask and gives the same values and gradients."""
    from medtoolkit.components.dropout import apply_dropout
    from medtoolkit.components.encoders.gru import flat_codes, pool_codes_flat

    torch.manual_seed(3)
    table = torch.nn.Embedding(40, 6, padding_idx=0).double()
    codes = torch.randint(1, 40, (4, 3, 5))
    codes[torch.rand(4, 3, 5) < 0.5] = 0
    codes[2, 1] = 0
    dropout = torch.nn.Dropout(0.4)
    weights = torch.randn(4, 3, 6, dtype=torch.float64)

    torch.manual_seed(11)
    fused = pool_codes_flat(table, codes, dropout, pooling)
    (fused * weights).sum().backward()
    fused_grad = table.weight.grad.clone()
    table.zero_grad()
    torch.manual_seed(11)
    values, slot, counts = flat_codes(codes)
    vectors = apply_dropout(dropout, table(values))
    reference = vectors.new_zeros(12, 6).index_add_(0, slot, vectors).view(4, 3, 6)
    if pooling == "mean":
        reference = reference / counts.clamp(min=1).unsqueeze(-1).to(reference.dtype)
    (reference * weights).sum().backward()
    assert torch.equal(fused, reference)
    assert torch.allclose(fused_grad, table.weight.grad, atol=1e-12)
    assert torch.equal(fused_grad[0], torch.zeros(6, dtype=torch.float64))
    # some rows were dropped: the mask was drawn (values differ from pooling without dropout)
    assert not torch.allclose(fused, pool_codes_flat(table, codes, None, pooling))


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_pooling_vocabularies_in_one_node_equals_pooling_them_one_by_one(pooling: str) -> None:
    """One node and one draw for two vocabularies: the same masks, values and gradients, bit for bit."""
    from medtoolkit.components.encoders.gru import pool_vocabularies, pool_vocabulary
    from medtoolkit.data.batching import PaddedBatch

    torch.manual_seed(4)
    tables = torch.nn.ModuleDict({"diagnoses": torch.nn.Embedding(30, 5, padding_idx=0),
                                  "procedures": torch.nn.Embedding(12, 5, padding_idx=0)})
    codes = {"diagnoses": torch.randint(1, 30, (3, 4, 6)), "procedures": torch.randint(1, 12, (3, 4, 2))}
    for table in codes.values():
        table[torch.rand(table.shape) < 0.4] = 0
    codes["procedures"][1, 2] = 0  # a visit without procedures
    batch = PaddedBatch(codes=codes, visit_mask=torch.ones(3, 4, dtype=torch.bool),
                        medications=torch.zeros(3, 4, 2), patient_index=torch.arange(3))
    dropout = torch.nn.Dropout(0.5)
    names = ("diagnoses", "procedures")
    weights = torch.randn(2, 3, 4, 5)

    def pooled_and_gradients(pool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        tables.zero_grad()
        torch.manual_seed(21)
        pooled = pool()
        (pooled * weights).sum().backward()
        return pooled.detach(), [tables[name].weight.grad.clone() for name in names]

    together, together_grads = pooled_and_gradients(
        lambda: pool_vocabularies("test", tables, batch, names, dropout, pooling))
    one_by_one, one_by_one_grads = pooled_and_gradients(
        lambda: torch.stack([pool_vocabulary("test", tables, batch, name, dropout, pooling) for name in names]))
    assert together.shape == (2, 3, 4, 5)
    assert torch.equal(together, one_by_one)
    for fused, reference in zip(together_grads, one_by_one_grads):
        assert torch.equal(fused, reference)
    assert torch.equal(together[1, 1, 2], torch.zeros(5))  # no procedures: mean and sum are 0
    with pytest.raises(KeyError, match="test reads 'medications' codes"):
        pool_vocabularies("test", tables, batch, ("diagnoses", "medications"), dropout, pooling)


def test_flat_codes_lists_real_codes_row_major_with_their_slots() -> None:
    from medtoolkit.components.encoders.gru import flat_codes

    codes = torch.tensor([[[3, 0, 5], [0, 0, 0]], [[0, 2, 0], [7, 1, 4]]])  # [B=2, T=2, L=3]
    values, slot, counts = flat_codes(codes)
    assert values.tolist() == [3, 5, 2, 7, 1, 4]
    assert slot.tolist() == [0, 0, 2, 3, 3, 3]
    assert counts.tolist() == [[2, 0], [1, 3]]


def test_pooling_falls_back_for_embeddings_and_dropouts_it_does_not_fuse() -> None:
    """A max-norm table or a dropout subclass goes through the modules themselves."""
    from medtoolkit.components.encoders.gru import plain_embedding, pool_codes_flat

    class HalfDropout(torch.nn.Dropout):
        def forward(self, values: torch.Tensor) -> torch.Tensor:
            return values * 0.5

    codes = torch.tensor([[[1, 2], [3, 0]]])
    table = torch.nn.Embedding(4, 2, padding_idx=0)
    assert plain_embedding(table)
    assert not plain_embedding(torch.nn.Embedding(4, 2, max_norm=1.0))
    halved = pool_codes_flat(table, codes, HalfDropout(0.3), "sum")
    assert torch.allclose(halved, 0.5 * pool_codes_flat(table, codes, None, "sum"))


def test_encoder_stacked_path_equals_one_gru_per_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    from medtoolkit.components.encoders import gru as gru_module

    schema = fake_schema()
    torch.manual_seed(2)
    encoder = GRUEncoder(GRUEncoder.Params(), schema).double().eval()
    batch = fake_batch()
    stacked = encoder(batch)
    monkeypatch.setattr(gru_module, "stackable", lambda rnns, inputs: False)
    separate = encoder(batch)
    assert torch.allclose(stacked, separate, atol=1e-12)
