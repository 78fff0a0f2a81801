"""Unit tests of :class:`medtoolkit.registry.Registry`: one typed registry per component kind."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import Field

from medtoolkit.components.base import Encoder, Loss, Memory
from medtoolkit.components.params import Params
from medtoolkit.registry import (
    KNOWN_PLUGIN_NAMES,
    PLUGIN_STATUS,
    DuplicateComponentError,
    InvalidComponentError,
    Registry,
    RegistryError,
    UnknownComponentError,
)


class ToyEncoder(Encoder):
    class Params(Params):
        width: int = Field(4, ge=1)

    @property
    def output_dim(self) -> int:
        return self.params.width

    def forward(self, batch: Any) -> torch.Tensor:
        return torch.zeros(*batch.visit_mask.shape, self.output_dim)


class ToyEncoderVariant(ToyEncoder):
    """Inherits ``Params``: a subclass of a registered class is a legitimate component."""


class ToyMemory(Memory):
    class Params(Params):
        pass

    @property
    def output_dim(self) -> int:
        return 1

    def forward(self, query: torch.Tensor, batch: Any) -> torch.Tensor:
        return query[..., :1]


class ToyLoss(Loss):
    class Params(Params):
        weight: float = 1.0

    def forward(self, logits: torch.Tensor, batch: Any) -> torch.Tensor:
        return logits.sum()


@pytest.fixture
def encoders() -> Registry:
    registry = Registry("encoder", Encoder)
    registry.register("toy_encoder", ToyEncoder, plugin="medtoolkit-toy", version="1.2.3")
    return registry


def test_entries_record_name_kind_plugin_and_version(encoders: Registry) -> None:
    entry = encoders.get("toy_encoder")
    assert (entry.name, entry.kind, entry.obj) == ("toy_encoder", "encoder", ToyEncoder)
    assert (entry.plugin, entry.version) == ("medtoolkit-toy", "1.2.3")
    assert ToyEncoder.registered_name == "toy_encoder"


def test_registered_name_is_per_class_not_inherited(encoders: Registry) -> None:
    encoders.register("toy_variant", ToyEncoderVariant, plugin="medtoolkit-toy", version="1.2.3")
    assert ToyEncoderVariant.registered_name == "toy_variant"
    assert ToyEncoder.registered_name == "toy_encoder"


def test_iteration_is_sorted_and_sized(encoders: Registry) -> None:
    encoders.register("a_first", ToyEncoderVariant)
    assert encoders.names() == ["a_first", "toy_encoder"]
    assert [entry.name for entry in encoders] == ["a_first", "toy_encoder"]
    assert len(encoders) == 2
    assert "toy_encoder" in encoders and "nope" not in encoders


def test_duplicate_name_names_both_plugins_and_versions(encoders: Registry) -> None:
    with pytest.raises(DuplicateComponentError) as caught:
        encoders.register("toy_encoder", ToyEncoderVariant, plugin="medtoolkit-rival", version="0.9")
    message = str(caught.value)
    assert "encoder 'toy_encoder' is registered twice" in message
    assert "by medtoolkit-toy 1.2.3 and by medtoolkit-rival 0.9" in message
    assert "MEDTOOLKIT_DISABLE_PLUGINS=medtoolkit-rival" in message
    assert encoders.get("toy_encoder").obj is ToyEncoder  # the first registration stays
    assert isinstance(caught.value, RegistryError)


def test_wrong_base_class_is_rejected_with_the_expected_base(encoders: Registry) -> None:
    with pytest.raises(InvalidComponentError) as caught:
        encoders.register("toy_memory", ToyMemory, plugin="medtoolkit-toy")
    message = str(caught.value)
    assert "encoder 'toy_memory' from plugin 'medtoolkit-toy'" in message
    assert "must be a subclass of medtoolkit.components.base.Encoder" in message
    assert "toy_memory" not in encoders
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize("obj", [ToyEncoder(), lambda params, schema: None, "ToyEncoder"])
def test_non_classes_are_rejected(encoders: Registry, obj: object) -> None:
    with pytest.raises(InvalidComponentError, match="must be a subclass of"):
        encoders.register("not_a_class", obj)


@pytest.mark.parametrize("params", [None, dict, object])
def test_component_without_a_params_model_is_rejected(params: object) -> None:
    broken = type("NoParamsLoss", (ToyLoss,), {"Params": params})
    registry = Registry("loss", Loss)
    with pytest.raises(InvalidComponentError) as caught:
        registry.register("no_params", broken, plugin="medtoolkit-toy")
    assert "loss 'no_params' from plugin 'medtoolkit-toy' has no nested Params" in str(caught.value)
    assert "no_params" not in registry


@pytest.mark.parametrize("name", ["bag-of-codes", "", "1st", "a.b", 3])
def test_names_must_be_identifiers(encoders: Registry, name: Any) -> None:
    with pytest.raises(InvalidComponentError, match="must be a Python identifier"):
        encoders.register(name, ToyEncoderVariant, plugin="medtoolkit-toy")


def test_unknown_name_suggests_close_matches(encoders: Registry) -> None:
    with pytest.raises(UnknownComponentError) as caught:
        encoders.get("toy_encodr")
    assert str(caught.value) == (
        "unknown encoder 'toy_encodr'. Did you mean 'toy_encoder'? Known encoders: toy_encoder."
    )
    assert isinstance(caught.value, KeyError)  # dict-like lookups keep working


def test_unknown_name_without_close_match_lists_what_exists(encoders: Registry) -> None:
    message = encoders.unknown_message("zzz")
    assert "Did you mean" not in message
    assert message.endswith("Known encoders: toy_encoder.")


@pytest.mark.parametrize(
    ("name", "extra"),
    [("mpnn", "molecule"), ("lightgcn", "algnet"), ("set_transformer", "tempt"), ("package_bpr", "dpr")],
)
def test_unknown_plugin_name_points_to_the_extra(encoders: Registry, name: str, extra: str) -> None:
    assert encoders.unknown_message(name) == (
        f"unknown encoder {name!r}. It is provided by a plugin: pip install \"medtoolkit[{extra}]\""
        f' (from a checkout: pip install -e ".[{extra}]" -e plugins/{extra}). Known encoders: toy_encoder.'
    )


@pytest.mark.parametrize(("name", "plugin"), [("dpr_wg", "dpr"), ("bpr", "dpr")])
def test_a_planned_plugin_name_prints_no_command(
    encoders: Registry, name: str, plugin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PLUGIN_STATUS, plugin, "planned")
    assert encoders.unknown_message(name) == (
        f"unknown encoder {name!r}. It belongs to the plugin medtoolkit-{plugin} (planned, not released yet)."
        " Known encoders: toy_encoder."
    )


def test_core_loaders_get_no_plugin_hint() -> None:
    datasets = Registry("dataset")
    assert datasets.unknown_message("mimic4") == "unknown dataset 'mimic4'. Known datasets: none."


def test_known_plugin_names_cover_the_published_plugins() -> None:
    assert {"algnet", "dnmdr", "molecule", "dpr", "tempt"} <= set(KNOWN_PLUGIN_NAMES.values())
    assert KNOWN_PLUGIN_NAMES["safedrug"] == "molecule"


@pytest.mark.parametrize(
    ("kind", "base", "cls", "plural"),
    [("memory", Memory, ToyMemory, "memories"), ("loss", Loss, ToyLoss, "losses")],
)
def test_unknown_message_uses_proper_plurals(kind: str, base: type, cls: type, plural: str) -> None:
    registry = Registry(kind, base)
    registry.register("toy_thing", cls)
    assert registry.unknown_message("other").endswith(f"Known {plural}: toy_thing.")


def test_empty_registry_says_none() -> None:
    assert Registry("adapter").unknown_message("lora").endswith("Known adapters: none.")


def test_registry_without_base_class_accepts_any_object() -> None:
    presets = Registry("preset")
    presets.register("paper", {"model": {"type": "gamenet"}}, plugin="medtoolkit-toy", version="2")
    assert presets.get("paper").obj == {"model": {"type": "gamenet"}}


class ToyCommand:
    help = "say hello"

    @staticmethod
    def add_arguments(parser: Any) -> None:
        parser.add_argument("--name")

    @staticmethod
    def run(args: Any, host: Any) -> int:
        return 0


def test_commands_need_add_arguments_and_run() -> None:
    commands = Registry("command")
    commands.register("hello", ToyCommand, plugin="medtoolkit-toy")
    with pytest.raises(InvalidComponentError) as caught:
        commands.register("broken", type("NoRun", (), {"add_arguments": staticmethod(print)}), plugin="medtoolkit-toy")
    assert "command 'broken' from plugin 'medtoolkit-toy' must have run " in str(caught.value)
    with pytest.raises(InvalidComponentError, match="must have add_arguments and run"):
        commands.register("nothing", object, plugin="medtoolkit-toy")


@pytest.mark.parametrize("preset", [{"model": {"type": "gru"}}, "presets/x.yaml"])
def test_presets_are_mappings_or_paths(preset: Any) -> None:
    Registry("preset").register("ok", preset)


def test_preset_of_another_type_is_rejected() -> None:
    with pytest.raises(InvalidComponentError, match="preset 'bad' from plugin 'p' must be a run-config mapping"):
        Registry("preset").register("bad", ["model"], plugin="p")
