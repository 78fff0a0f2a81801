"""``set_transformer``: Eq. 1-4 by hand, set semantics, [MASK], prompts, truncation, conformance."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from medtoolkit.components.params import Node
from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.testing import check_component
from medtoolkit_tempt import SetTransformerEncoder
from medtoolkit_tempt.encoder import CLS, MASK, SetTransformerLayer


def build(node: Node, schema: DataSchema) -> SetTransformerEncoder:
    encoder = node.build(schema)
    encoder.eval()
    return encoder


def layer_by_hand(layer: SetTransformerLayer, x: torch.Tensor, keep: torch.Tensor, heads: int) -> torch.Tensor:
    """Eq. 1-4 written out with the layer's weights (post-LN, ReLU FFN)."""
    n, s, c = x.shape
    width = c // heads
    att = layer.attention
    q, k, v = (x @ lin.weight.T + lin.bias for lin in (att.query, att.key, att.value))
    outputs = []
    for h in range(heads):
        part = slice(h * width, (h + 1) * width)
        scores = q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(width)  # Eq. 1
        scores = scores.masked_fill(~keep[:, None, :], float("-inf"))
        outputs.append(torch.softmax(scores, dim=-1) @ v[..., part])
    multi = torch.cat(outputs, dim=-1) @ att.output.weight.T + att.output.bias  # Eq. 2
    middle = F.layer_norm(x + multi, (c,), layer.attention_norm.weight, layer.attention_norm.bias)  # Eq. 3
    first, second = layer.feed_forward[0], layer.feed_forward[2]
    ffn = torch.relu(middle @ first.weight.T + first.bias) @ second.weight.T + second.bias
    return F.layer_norm(middle + ffn, (c,), layer.output_norm.weight, layer.output_norm.bias)  # Eq. 4


@pytest.mark.parametrize("heads", [1, 2])
def test_layer_is_eq_1_to_4(heads: int) -> None:
    torch.manual_seed(0)
    layer = SetTransformerLayer(dim=4, heads=heads, dropout=0.0, attention_dropout=0.0).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters
        layer.attention_norm.weight.uniform_(0.5, 1.5)
        layer.output_norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 4)
    keep = torch.tensor([[True, True, False], [True, True, True]])
    expected = layer_by_hand(layer, x, keep, heads)
    with torch.no_grad():
        got = layer(x, keep)
        first = layer(x, keep, first_only=True)
    assert torch.allclose(got, expected, atol=1e-5)
    assert first.shape == (2, 1, 4) and torch.allclose(first, expected[:, :1], atol=1e-5)


def test_pre_norm_layer_and_first_row_shortcut() -> None:
    torch.manual_seed(1)
    layer = SetTransformerLayer(dim=6, heads=2, dropout=0.0, attention_dropout=0.0, pre_norm=True).eval()
    x, keep = torch.randn(3, 5, 6), torch.ones(3, 5, dtype=torch.bool)
    with torch.no_grad():
        normed = layer.attention_norm(x)
        middle = x + layer.attention(normed, normed, keep)
        expected = middle + layer.feed_forward(layer.output_norm(middle))
        assert torch.allclose(layer(x, keep), expected, atol=1e-5)
        assert torch.allclose(layer(x, keep, first_only=True), expected[:, :1], atol=1e-5)


def test_forward_shape_padding_and_concatenation(
    schema: DataSchema, batch: PaddedBatch, small_encoder: Callable[..., Node]
) -> None:
    encoder = build(small_encoder(), schema)
    with torch.no_grad():
        output = encoder(batch)
        parts = encoder.encode(batch)
    b, t = batch.visit_mask.shape
    assert encoder.output_dim == 32 and output.shape == (b, t, 32)
    assert torch.equal(output, torch.cat([parts["diagnoses"], parts["procedures"]], dim=-1))
    assert bool((output[~batch.visit_mask] == 0).all())
    assert bool(output[batch.visit_mask].abs().sum(dim=-1).gt(0).all())


def test_sets_have_no_order(schema: DataSchema, small_encoder: Callable[..., Node]) -> None:
    encoder = build(small_encoder(), schema)
    codes = torch.tensor([[3, 7, 1, 9, 0], [4, 2, 0, 0, 0]])
    shuffled = torch.tensor([[9, 1, 3, 7, 0], [2, 4, 0, 0, 0]])
    wider = torch.cat([codes, torch.zeros(2, 3, dtype=torch.long)], dim=1)  # more padding
    with torch.no_grad():
        reference = encoder.encode_sets("diagnoses", codes)
        assert torch.allclose(encoder.encode_sets("diagnoses", shuffled), reference, atol=1e-5)
        assert torch.allclose(encoder.encode_sets("diagnoses", wider), reference, atol=1e-5)
        # a set is encoded alone: the other rows do not matter
        assert torch.allclose(encoder.encode_sets("diagnoses", codes[1:]), reference[1:], atol=1e-5)


def test_mask_positions_use_the_mask_embedding(schema: DataSchema, small_encoder: Callable[..., Node]) -> None:
    encoder = build(small_encoder(), schema)
    codes = torch.tensor([[3, 5, 8]])
    with torch.no_grad():
        masked = encoder.encode_sets("diagnoses", codes, mask_positions=torch.tensor([[False, True, False]]))
        assert not torch.allclose(masked, encoder.encode_sets("diagnoses", codes))
        # the same as a code whose embedding is [MASK]'s
        encoder.embeddings["diagnoses"].weight[5] = encoder.special_tokens.weight[MASK]
        assert torch.allclose(encoder.encode_sets("diagnoses", codes), masked, atol=1e-6)


def test_prompts_are_extra_tokens_after_cls(schema: DataSchema, small_encoder: Callable[..., Node]) -> None:
    encoder = build(small_encoder(), schema)
    codes = torch.tensor([[3, 5, 0], [2, 0, 0]])
    table = encoder.embeddings["diagnoses"].weight
    with torch.no_grad():
        prompts = table[[7, 9]].clone()  # [b=2, c]: the embeddings of codes 7 and 9
        prompted = encoder.encode_sets("diagnoses", codes, prompts=prompts)
        per_set = encoder.encode_sets("diagnoses", codes, prompts=prompts.expand(2, -1, -1))
        assert torch.allclose(prompted, per_set)
        # no positional embeddings: a prompt equal to a code's embedding acts as that code
        with_codes = encoder.encode_sets("diagnoses", torch.tensor([[3, 5, 7, 9], [2, 7, 9, 0]]))
        assert torch.allclose(prompted, with_codes, atol=1e-5)
        assert not torch.allclose(prompted, encoder.encode_sets("diagnoses", codes), atol=1e-3)
        with pytest.raises(ValueError, match="prompts must be"):
            encoder.encode_sets("diagnoses", codes, prompts=torch.zeros(3, 2, 16))


def test_cls_is_read_and_empty_sets_are_finite(schema: DataSchema, small_encoder: Callable[..., Node]) -> None:
    encoder = build(small_encoder(layers=1), schema)
    with torch.no_grad():
        empty = encoder.encode_sets("procedures", torch.zeros(2, 3, dtype=torch.long))
        assert torch.isfinite(empty).all() and torch.allclose(empty[0], empty[1])
        # one layer over [CLS] alone: attention returns V(cls), then the two norms
        stack = encoder.stack("procedures")
        cls = stack.input_norm(encoder.special_tokens.weight[CLS]).view(1, 1, -1)
        assert torch.allclose(empty[:1], stack.layers[0](cls, torch.ones(1, 1, dtype=torch.bool))[:, 0], atol=1e-5)


def test_truncation_keeps_the_first_codes_and_counts(
    schema: DataSchema, batch: PaddedBatch, small_encoder: Callable[..., Node]
) -> None:
    encoder = build(small_encoder(max_codes=2), schema)
    codes = batch.codes["diagnoses"][batch.visit_mask]
    long_sets = int(((codes > 0).sum(dim=1) > 2).sum())
    assert long_sets > 0
    with pytest.warns(UserWarning, match="max_codes=2"):
        cut = encoder.real_codes(batch, "diagnoses")
    assert cut.shape[1] == 2 and torch.equal(cut, codes[:, :2])
    assert encoder.truncated_sets == long_sets
    with warnings.catch_warnings():  # warned once: the second call only counts
        warnings.simplefilter("error")
        encoder.real_codes(batch, "diagnoses")
    assert encoder.truncated_sets == 2 * long_sets


def test_shared_or_separate_layers(schema: DataSchema, small_encoder: Callable[..., Node]) -> None:
    shared = build(small_encoder(), schema)
    separate = build(small_encoder(shared=False), schema)
    assert shared.stack("diagnoses") is shared.stack("procedures")
    assert separate.stack("diagnoses") is not separate.stack("procedures")
    per_stack = sum(p.numel() for p in shared.stacks.parameters())
    assert sum(p.numel() for p in separate.stacks.parameters()) == 2 * per_stack
    # per layer: 4 (c^2 + c) attention, 2 (c^2 + c) FFN, 2 x 2c LayerNorm; input LayerNorm 2c
    c = 16
    assert per_stack == 2 * (6 * (c * c + c) + 4 * c) + 2 * c
    plain = build(small_encoder(input_norm=False), schema)
    assert sum(p.numel() for p in plain.stacks.parameters()) == per_stack - 2 * c


def test_parameter_validation() -> None:
    with pytest.raises(ValidationError, match="divisible by heads"):
        SetTransformerEncoder.Params(dim=10, heads=3)
    with pytest.raises(ValidationError, match="medications"):
        SetTransformerEncoder.Params(vocabularies=("diagnoses", "medications"))


def test_missing_vocabulary_is_named(
    schema: DataSchema, batch: PaddedBatch, small_encoder: Callable[..., Node]
) -> None:
    encoder = build(small_encoder(), schema)
    del batch.codes["procedures"]
    with pytest.raises(KeyError, match="procedures"):
        encoder(batch)


@pytest.mark.parametrize(
    "extra", [{}, {"norm": "pre", "input_norm": False}, {"shared": False, "layers": 1, "heads": 4}]
)
def test_conformance(extra: dict[str, object]) -> None:
    params = {"dim": 16, "heads": 2, "layers": 2, **extra}
    check_component(SetTransformerEncoder, SetTransformerEncoder.Params(**params))


def test_fits_any_visit_encoder_slot() -> None:
    """A visit encoder like any other: GAMENet with ``set_transformer`` in its encoder slot conforms."""
    from medtoolkit.components.memories.gcn import GCNMemory
    from medtoolkit.components.recommenders.gamenet import GAMENet

    encoder = Node.of(SetTransformerEncoder, dim=16, heads=2)
    check_component(GAMENet, GAMENet.Params(encoder=encoder, memory=Node.of(GCNMemory), hidden_dim=16))
