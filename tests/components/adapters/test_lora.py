"""``lora``: low-rank updates of the linear layers (counts by hand: conftest)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from medtoolkit.components.adapters import LoRAAdapter, LoRALinear, count_parameters
from medtoolkit.components.adapters.lora import adaptable_linears
from medtoolkit.components.base import Recommender
from medtoolkit.components.params import Params
from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender
from medtoolkit.testing import fake_ehr, fake_schema

TOTAL = 205776
HEAD = 128 * 15 + 15  # output.3, kept fully trainable
QUERY_UPDATE = 8 * (256 + 64)  # encoder.query: rank 8, in 256, out 64
OUTPUT_1_UPDATE = 8 * (192 + 128)  # output.1: in 192, out 128

Build = Callable[[int], GAMENet]


def lora(**params: object) -> LoRAAdapter:
    return LoRAAdapter(LoRAAdapter.Params(**params))


def test_lora_linear_by_hand() -> None:
    base = nn.Linear(2, 3)
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        base.bias.copy_(torch.tensor([0.5, -0.5, 0.0]))
    layer = LoRALinear(base, rank=1, alpha=4.0)
    assert layer.weight is base.weight and not layer.weight.requires_grad and not layer.bias.requires_grad
    assert layer.lora_A.shape == (1, 2) and layer.lora_B.shape == (3, 1)
    assert torch.equal(layer.lora_B, torch.zeros(3, 1))
    x = torch.tensor([[2.0, 3.0]])
    assert torch.equal(layer(x), torch.tensor([[2.5, 2.5, 5.0]]))  # B = 0: the base layer's output
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, -1.0]]))  # x A^T = 2 - 3 = -1
        layer.lora_B.copy_(torch.tensor([[1.0], [0.0], [2.0]]))  # -> [-1, 0, -2], times alpha / r = 4
    assert torch.equal(layer(x), torch.tensor([[2.5 - 4.0, 2.5, 5.0 - 8.0]]))
    assert "rank=1" in repr(layer)


def test_lora_a_is_initialised_like_a_linear_weight() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(400, 5), rank=64, alpha=1.0)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert float(layer.lora_A.detach().abs().max()) <= bound
    assert float(layer.lora_A.detach().abs().max()) > 0.9 * bound


def test_lora_counts_on_gamenet_by_hand(make_gamenet: Build) -> None:
    model = lora().attach(make_gamenet(0))
    assert isinstance(model.encoder.query, LoRALinear) and isinstance(model.output[1], LoRALinear)
    assert type(model.output[3]) is nn.Linear  # the head is not wrapped
    assert count_parameters(model) == (QUERY_UPDATE + OUTPUT_1_UPDATE + HEAD,
                                       TOTAL + QUERY_UPDATE + OUTPUT_1_UPDATE)  # 7055 of 210896


@pytest.mark.parametrize(
    ("params", "trainable"),
    [
        ({"rank": 2}, 2 * (256 + 64) + 2 * (192 + 128) + HEAD),
        ({"targets": ["encoder.*"]}, QUERY_UPDATE + HEAD),
        ({"targets": ["output.*"]}, OUTPUT_1_UPDATE + HEAD),
        ({"train_head": False}, QUERY_UPDATE + OUTPUT_1_UPDATE + 8 * (128 + 15)),  # the head wrapped too
    ],
)
def test_lora_options_change_what_trains(make_gamenet: Build, params: dict, trainable: int) -> None:
    assert count_parameters(lora(**params).attach(make_gamenet(0)))[0] == trainable


def test_attach_leaves_the_outputs_unchanged(make_gamenet: Build, eval_logits: Callable) -> None:
    model = make_gamenet(0)
    before = eval_logits(model)
    adapted = lora(dropout=0.5, alpha=3.0, rank=4).attach(model)
    assert adapted is model
    assert torch.equal(eval_logits(adapted), before)


def test_gradients_reach_only_the_trainable_parameters(make_gamenet: Build, gradient_owners: Callable) -> None:
    model = lora().attach(make_gamenet(0))
    got, trains = gradient_owners(model)
    assert got == trains == {
        "encoder.query.lora_A", "encoder.query.lora_B", "output.1.lora_A", "output.1.lora_B",
        "output.3.weight", "output.3.bias",
    }
    assert float(model.output[1].lora_B.grad.abs().sum()) > 0  # B starts at 0; A's gradient is 0 then


def test_state_dict_round_trips_into_a_fresh_model_and_attach(make_gamenet: Build, eval_logits: Callable) -> None:
    trained = lora(rank=4).attach(make_gamenet(0))
    with torch.no_grad():  # stand-in for training: move every trainable parameter
        for parameter in trained.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn_like(parameter))
    keys = list(trained.state_dict())
    assert {"encoder.query.weight", "encoder.query.lora_A", "output.1.lora_B", "output.3.weight"} <= set(keys)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    fresh = lora(rank=4).attach(make_gamenet(5))
    assert list(fresh.state_dict()) == keys
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    assert torch.equal(eval_logits(fresh), eval_logits(trained))


def test_the_plain_models_weights_keep_their_names(make_gamenet: Build) -> None:
    plain = make_gamenet(0).state_dict()
    adapted = lora().attach(make_gamenet(1)).state_dict()
    assert set(plain) <= set(adapted)
    assert set(adapted) - set(plain) == {"encoder.query.lora_A", "encoder.query.lora_B",
                                         "output.1.lora_A", "output.1.lora_B"}


def test_lora_refuses_a_model_without_a_matching_linear(make_gamenet: Build) -> None:
    with pytest.raises(ValueError, match=r"'lora' found no nn\.Linear to adapt in 'gamenet' \(GAMENet\): "
                                         r"targets=\['memory\.\*'\] match none of its linear layers "
                                         r"\['encoder\.query', 'output\.1', 'output\.3'\] outside the head "
                                         r"\['output\.3'\]"):
        lora(targets=["memory.*"]).attach(make_gamenet(0))
    logistic = LogisticRegressionRecommender(LogisticRegressionRecommender.Params(), fake_schema(fake_ehr()))
    with pytest.raises(ValueError, match=r"match none of its linear layers \(none\)"):
        lora().attach(logistic)


def test_lora_params_are_validated() -> None:
    with pytest.raises(ValueError, match="rank"):
        LoRAAdapter.Params(rank=0)
    with pytest.raises(ValueError, match="alpha"):
        LoRAAdapter.Params(alpha=0)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        LoRALinear(nn.Linear(2, 2), rank=0, alpha=1.0)


class WithAttention(Recommender):
    """A toy whose attention's ``out_proj`` (an ``nn.Linear`` subclass) must not be wrapped."""

    class Params(Params):
        pass

    def __init__(self, params: Params | None = None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.attention = nn.MultiheadAttention(4, 1, batch_first=True)
        self.mix = nn.Linear(4, 4)
        self.head = nn.Linear(4, schema.n_drugs)

    def forward(self, batch):  # noqa: ANN001, ANN201
        x = batch.medications.new_zeros(*batch.visit_mask.shape, 4)
        return self.head(self.mix(self.attention(x, x, x)[0]))


def test_attention_projections_are_left_alone() -> None:
    model = WithAttention(WithAttention.Params(), fake_schema(fake_ehr()))
    assert adaptable_linears(model) == ["mix", "head"]
    lora().attach(model)
    assert isinstance(model.mix, LoRALinear) and type(model.attention.out_proj) is not LoRALinear
