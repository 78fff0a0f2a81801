"""``finetune`` and ``finetune_freeze``, and :func:`count_parameters` (counts by hand: conftest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import pytest
import torch
from torch import nn

from medtoolkit.components.adapters import (
    FinetuneAdapter,
    FinetuneFreezeAdapter,
    LoRAAdapter,
    count_parameters,
    head_prefixes,
)
from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender
from medtoolkit.plugins import PluginHost
from medtoolkit.testing import fake_ehr, fake_schema

TOTAL = 205776
HEAD = 128 * 15 + 15  # output.3
OUTPUT_1 = 192 * 128 + 128

Build = Callable[[int], GAMENet]


def test_count_parameters_by_hand() -> None:
    module = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4, bias=False))
    assert count_parameters(module) == (3 * 2 + 2 + 2 * 4, 16)
    module[0].weight.requires_grad_(False)
    assert count_parameters(module) == (2 + 8, 16)
    shared = nn.Linear(2, 2)
    assert count_parameters(nn.Sequential(shared, shared)) == (6, 6)  # a shared parameter counts once


def test_gamenet_total_matches_the_hand_count(make_gamenet: Build) -> None:
    assert count_parameters(make_gamenet(0)) == (TOTAL, TOTAL)


def test_the_core_registers_the_three_adapters() -> None:
    host = PluginHost(load_entry_points=False)
    assert host.get("adapter", "finetune") is FinetuneAdapter
    assert host.get("adapter", "finetune_freeze") is FinetuneFreezeAdapter
    assert host.get("adapter", "lora") is LoRAAdapter


def test_finetune_trains_everything_even_what_was_frozen(make_gamenet: Build, gradient_owners: Callable) -> None:
    model = make_gamenet(0)
    model.encoder.requires_grad_(False)
    assert count_parameters(model)[0] < TOTAL
    adapted = FinetuneAdapter().attach(model)
    assert adapted is model
    assert count_parameters(adapted) == (TOTAL, TOTAL)
    got, trains = gradient_owners(adapted)
    assert got == trains == {name for name, _ in model.named_parameters()}


def test_head_is_the_last_linear_or_the_declared_modules(make_gamenet: Build) -> None:
    assert head_prefixes(make_gamenet(0)) == ("output.3",)

    class DeclaredHead(GAMENet):
        head_modules: ClassVar[tuple[str, ...]] = ("output",)

    torch.manual_seed(0)
    declared = DeclaredHead(GAMENet.Params(), fake_schema(fake_ehr()))
    assert head_prefixes(declared) == ("output",)
    FinetuneFreezeAdapter().attach(declared)
    assert count_parameters(declared) == (OUTPUT_1 + HEAD, TOTAL)


def test_finetune_freeze_trains_only_the_head(
    make_gamenet: Build, eval_logits: Callable, gradient_owners: Callable,
) -> None:
    model = make_gamenet(0)
    before = eval_logits(model)
    adapted = FinetuneFreezeAdapter().attach(model)
    assert adapted is model
    assert count_parameters(adapted) == (HEAD, TOTAL)
    assert torch.equal(eval_logits(adapted), before)
    got, trains = gradient_owners(adapted)
    assert got == trains == {"output.3.weight", "output.3.bias"}


@pytest.mark.parametrize(
    ("patterns", "trainable"),
    [
        (["output.*"], OUTPUT_1 + HEAD),
        (["encoder.query.*", "output.3.bias"], 256 * 64 + 64 + 15),
        # query, output.1, output.3 (the GCNs' bias1/bias2 and the GRUs' bias_ih_l0... do not end in ".bias")
        (["*.bias"], 64 + 128 + 15),
    ],
)
def test_finetune_freeze_patterns_override_the_head(make_gamenet: Build, patterns: list[str], trainable: int) -> None:
    model = FinetuneFreezeAdapter(FinetuneFreezeAdapter.Params(trainable=patterns)).attach(make_gamenet(0))
    assert count_parameters(model) == (trainable, TOTAL)


def test_finetune_freeze_refuses_to_train_nothing(make_gamenet: Build) -> None:
    adapter = FinetuneFreezeAdapter(FinetuneFreezeAdapter.Params(trainable=["decoder.*"]))
    with pytest.raises(ValueError, match=r"'finetune_freeze' would train nothing in 'gamenet' \(GAMENet\): "
                                         r"no parameter name matches trainable=\['decoder\.\*'\]"):
        adapter.attach(make_gamenet(0))
    logistic = LogisticRegressionRecommender(LogisticRegressionRecommender.Params(), fake_schema(fake_ehr()))
    with pytest.raises(ValueError, match=r"in 'logistic_regression' \(LogisticRegressionRecommender\): "
                                         r"it names no head_modules and has no nn\.Linear layer"):
        FinetuneFreezeAdapter().attach(logistic)
    # with a pattern the same model can be tuned
    FinetuneFreezeAdapter(FinetuneFreezeAdapter.Params(trainable=["bias"])).attach(logistic)
    assert count_parameters(logistic) == (15, 15 + 31 * 15 + 21 * 15)


@pytest.mark.parametrize("adapter", [FinetuneAdapter(), FinetuneFreezeAdapter(), LoRAAdapter()],
                         ids=["finetune", "finetune_freeze", "lora"])
def test_adapters_refuse_what_is_not_a_recommender(adapter) -> None:  # noqa: ANN001
    with pytest.raises(TypeError, match=r"adapts a Recommender, got Linear"):
        adapter.attach(nn.Linear(2, 2))


def test_finetune_freeze_state_dict_keys_are_the_plain_models(make_gamenet: Build) -> None:
    plain = make_gamenet(0)
    adapted = FinetuneFreezeAdapter().attach(make_gamenet(1))
    assert list(adapted.state_dict()) == list(plain.state_dict())
