"""``tempt``: logits, extras (masked views, pair representations), determinism, gradients, conformance."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from medtoolkit.components.base import ModelOutput
from medtoolkit.components.encoders.gru import GRUEncoder
from medtoolkit.components.params import ComponentBuildError, Node
from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.testing import check_component
from medtoolkit_tempt import ContrastiveLoss, MaskedCodeLoss, SetTransformerEncoder, TEMPTRecommender

Factory = Callable[..., TEMPTRecommender]
BOTH_EXTRAS = ("masked_codes", "pair_representations")


def test_logits_shape_and_padding(schema: DataSchema, batch: PaddedBatch, small_tempt: Factory) -> None:
    model = small_tempt().eval()
    with torch.no_grad():
        logits = model(batch)
        same = model(batch, extras=())
    b, t = batch.visit_mask.shape
    assert logits.shape == (b, t, schema.n_drugs) and torch.equal(logits, same)
    assert bool((logits[~batch.visit_mask] == 0).all())
    # Eq. 12: the head on r_d || r_p
    with torch.no_grad():
        expected = model.head(model.encoder(batch))
    assert torch.allclose(logits[batch.visit_mask], expected[batch.visit_mask], atol=1e-6)


def test_extras_shapes_and_contents(schema: DataSchema, batch: PaddedBatch, small_tempt: Factory) -> None:
    model = small_tempt().eval()
    n = batch.n_visits
    with torch.no_grad():
        output = model(batch, extras=BOTH_EXTRAS)
        logits = model(batch)
    assert isinstance(output, ModelOutput) and torch.equal(output.logits, logits)  # logits: unmasked views
    masked = output.extras["masked_codes"]
    assert set(masked) == {"diagnoses", "procedures"}
    for name, item in masked.items():
        size = schema.vocab_sizes[name]
        assert item.logits.shape == item.targets.shape == item.included.shape == (n, size)
        assert item.valid.shape == (n,) and bool(item.valid.all())  # fake visits all have codes
        assert bool((item.targets.sum(dim=1) >= 1).all())  # at least one masked code per set
        assert not bool((item.targets.bool() & ~item.included).any())  # positives are always scored
    pair = output.extras["pair_representations"]
    assert pair.names == ("diagnoses", "procedures") and pair.first.shape == pair.second.shape == (n, 16)
    # from the original (unmasked) views: u = MLP(r)
    with torch.no_grad():
        encoded = model.encoder.encode(batch)
        expected = model.projectors["procedures"](encoded["procedures"][batch.visit_mask])
    assert torch.allclose(pair.second, expected, atol=1e-6)


def test_masked_contrastive_view(batch: PaddedBatch, small_tempt: Factory) -> None:
    torch.manual_seed(0)
    original = small_tempt().eval()
    masked = small_tempt(contrastive_view="masked").eval()
    masked.load_state_dict(original.state_dict())
    with torch.no_grad():
        a = original(batch, extras=("pair_representations",)).extras["pair_representations"]
        b = masked(batch, extras=("pair_representations",)).extras["pair_representations"]
    assert not torch.allclose(a.first, b.first, atol=1e-4)


def test_eval_masks_are_fixed_train_masks_are_not(batch: PaddedBatch, small_tempt: Factory) -> None:
    model = small_tempt().eval()

    def targets() -> torch.Tensor:
        with torch.no_grad():
            return model(batch, extras=("masked_codes",)).extras["masked_codes"]["diagnoses"].targets

    first = targets()
    torch.manual_seed(123)  # the global stream does not matter in eval mode
    assert torch.equal(first, targets())
    model.train()
    draws = [targets() for _ in range(3)]
    assert not all(torch.equal(draws[0], other) for other in draws[1:])


def test_unknown_extra_and_extras_provided(
    batch: PaddedBatch, small_tempt: Factory, small_encoder: Callable[..., Node]
) -> None:
    model = small_tempt()
    with pytest.raises(ValueError, match="not \\['hidden'\\]"):
        model(batch, extras=("hidden",))
    assert TEMPTRecommender.extras_provided(model.params) == frozenset(BOTH_EXTRAS)
    one = TEMPTRecommender.Params(encoder=small_encoder(vocabularies=("diagnoses",)))
    assert TEMPTRecommender.extras_provided(one) == frozenset({"masked_codes"})
    assert TEMPTRecommender.extras_provided(TEMPTRecommender.Params()) == frozenset(BOTH_EXTRAS)


def test_every_parameter_learns_from_the_three_objectives(batch: PaddedBatch, small_tempt: Factory) -> None:
    model = small_tempt().train()
    output = model(batch, extras=BOTH_EXTRAS)
    total = (F.binary_cross_entropy_with_logits(output.logits[batch.visit_mask], batch.medications[batch.visit_mask])
             + MaskedCodeLoss()(output.logits, batch, dict(output.extras))
             + ContrastiveLoss()(output.logits, batch, dict(output.extras)))
    total.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing


def test_head_shapes(schema: DataSchema, small_tempt: Factory) -> None:
    linear = small_tempt()
    assert isinstance(linear.head, torch.nn.Linear) and linear.head.in_features == 32
    hidden = small_tempt(head_hidden=24)
    assert [m.out_features for m in hidden.head if isinstance(m, torch.nn.Linear)] == [24, schema.n_drugs]
    assert TEMPTRecommender.head_modules == ("head",)
    heads = small_tempt(pretrain_heads="linear")
    assert isinstance(heads.mask_heads["diagnoses"], torch.nn.Linear)


def test_refuses_other_encoders(schema: DataSchema) -> None:
    with pytest.raises((TypeError, ComponentBuildError), match="set_transformer"):
        TEMPTRecommender(TEMPTRecommender.Params(encoder=Node.of(GRUEncoder)), schema)


def test_parameter_validation() -> None:
    with pytest.raises(ValueError, match="mask_share \\+ random_share"):
        TEMPTRecommender.Params(mask_share=0.95, random_share=0.1)


def test_default_widths_are_the_papers() -> None:
    encoder = SetTransformerEncoder.Params()
    assert (encoder.dim, encoder.layers, encoder.heads, encoder.max_codes) == (300, 2, 2, 100)
    assert TEMPTRecommender.Params().mask_rate == 0.15


@pytest.mark.parametrize("extra", [{}, {"contrastive_view": "masked", "head_hidden": 8}])
def test_conformance(small_encoder: Callable[..., Node], extra: dict[str, object]) -> None:
    check_component(TEMPTRecommender, TEMPTRecommender.Params(encoder=small_encoder(), **extra))
