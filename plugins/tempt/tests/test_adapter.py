"""``hospital_prompt``: what it adds, what it freezes, state_dict round trip, conformance."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from medtoolkit.components.encoders.gru import GRUEncoder
from medtoolkit.components.memories.gcn import GCNMemory
from medtoolkit.components.params import Node
from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.testing import check_component
from medtoolkit_tempt import HospitalPromptAdapter, TEMPTRecommender

Factory = Callable[..., TEMPTRecommender]


def attach(model: TEMPTRecommender, **params: object) -> TEMPTRecommender:
    return HospitalPromptAdapter(HospitalPromptAdapter.Params(**params)).attach(model)


def trainable(model: torch.nn.Module) -> dict[str, int]:
    return {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}


def test_prompts_and_head_train_everything_else_is_frozen(
    schema: DataSchema, batch: PaddedBatch, small_tempt: Factory
) -> None:
    model = attach(small_tempt(), n_prompts=3)
    c, n_drugs = 16, schema.n_drugs
    assert trainable(model) == {
        "head.weight": 2 * c * n_drugs, "head.bias": n_drugs,
        "prompts.vectors.diagnoses": 3 * c, "prompts.vectors.procedures": 3 * c,
    }
    model.train()
    loss = F.binary_cross_entropy_with_logits(model(batch)[batch.visit_mask], batch.medications[batch.visit_mask])
    loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), name
        else:
            assert parameter.grad is None, name


def test_without_the_head(small_tempt: Factory) -> None:
    model = attach(small_tempt(), train_head=False)
    assert set(trainable(model)) == {"prompts.vectors.diagnoses", "prompts.vectors.procedures"}


def test_prompts_change_the_outputs(batch: PaddedBatch, small_tempt: Factory) -> None:
    model = small_tempt().eval()
    with torch.no_grad():
        before = model(batch)
        attach(model)
        after = model(batch)
        model.prompts.vectors["diagnoses"].add_(torch.randn(2, 16))  # (a constant shift would not: LayerNorm)
        moved = model(batch)
    real = batch.visit_mask
    assert not torch.allclose(before[real], after[real], atol=1e-4)
    assert not torch.allclose(after[real], moved[real], atol=1e-4)


def test_prompts_enter_the_masked_views_too(batch: PaddedBatch, small_tempt: Factory) -> None:
    model = small_tempt().eval()
    with torch.no_grad():
        before = model(batch, extras=("masked_codes",)).extras["masked_codes"]["procedures"].logits
        attach(model)
        after = model(batch, extras=("masked_codes",)).extras["masked_codes"]["procedures"].logits
    assert not torch.allclose(before, after, atol=1e-4)


def test_initialisation(small_tempt: Factory) -> None:
    torch.manual_seed(0)
    normal = attach(small_tempt(), n_prompts=64)
    values = normal.prompts.vectors["procedures"]
    assert values.shape == (64, 16) and abs(values.std().item() - 0.02) < 0.002
    from_cls = attach(small_tempt(), init="cls")
    cls = from_cls.encoder.cls_embedding
    assert torch.equal(from_cls.prompts.vectors["diagnoses"], cls.expand(2, -1))


def test_state_dict_loads_into_a_fresh_attach(batch: PaddedBatch, small_tempt: Factory) -> None:
    trained = attach(small_tempt())
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.1)
    fresh = attach(small_tempt())
    fresh.load_state_dict(trained.state_dict())
    trained.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(batch), trained(batch))
    assert "prompts.vectors.diagnoses" in trained.state_dict()


def test_refusals(schema: DataSchema, small_tempt: Factory) -> None:
    with pytest.raises(TypeError, match="needs a 'tempt' recommender.*got GAMENet"):
        attach(GAMENet(GAMENet.Params(encoder=Node.of(GRUEncoder), memory=Node.of(GCNMemory)), schema))
    model = attach(small_tempt())
    with pytest.raises(ValueError, match="attached twice"):
        attach(model)
    with pytest.raises(ValueError):
        HospitalPromptAdapter.Params(n_prompts=0)


@pytest.mark.parametrize("extra", [{}, {"train_head": False, "init": "cls", "n_prompts": 1}])
def test_conformance(small_encoder: Callable[..., Node], extra: dict[str, object]) -> None:
    check_component(HospitalPromptAdapter, HospitalPromptAdapter.Params(**extra), recommender=TEMPTRecommender,
                    recommender_params=TEMPTRecommender.Params(encoder=small_encoder()))


def test_validate_refuses_prompts_on_another_recommender() -> None:
    from medtoolkit.config import ConfigValidationError, validate_config
    from medtoolkit.plugins import PluginHost

    import medtoolkit_tempt.plugin

    host = PluginHost(load_entry_points=False,
                      extra_plugins=(("medtoolkit-tempt", "0.1.0", medtoolkit_tempt.plugin),))
    raw = {"dataset": {"type": "synthetic", "n_hospitals": 3}, "model": {"type": "gamenet"},
           "losses": [{"type": "bce"}],
           "stages": [{"name": "a"}, {"name": "b", "init_from": "a", "adapter": {"type": "hospital_prompt"}}]}
    with pytest.raises(ConfigValidationError,
                       match="stages.1.adapter: adapter 'hospital_prompt' cannot adapt recommender 'gamenet'"):
        validate_config(raw, host)
