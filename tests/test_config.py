"""Declarative assembly: whole-config validation with paths, slots, overrides, YAML errors.

A fresh :class:`PluginHost` with toy components (names prefixed ``toy_``) keeps these tests
independent of the built-ins; a few tests at the end use the built-ins on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import Field

import medtoolkit
from medtoolkit.components.base import Adapter, Dataset, Encoder, Loss, Memory, Recommender, Task
from medtoolkit.components.params import Node, Params, slot
from medtoolkit.config import (
    ConfigError,
    ConfigValidationError,
    RunConfig,
    apply_overrides,
    load_yaml,
    parse_override,
    validate_config,
)
from medtoolkit.hookspecs import Register
from medtoolkit.plugins import PluginHost


# ---------------------------------------------------------------------------- toy components
class ToyData(Dataset):
    class Params(Params):
        n_patients: int = Field(10, ge=1)
        path: str | None = None

    def load(self, progress: bool = True) -> Any:
        raise NotImplementedError


class ToyOtherData(Dataset):
    class Params(Params):
        seed: int = 0

    def load(self, progress: bool = True) -> Any:
        raise NotImplementedError


class ToyTask(Task):
    class Params(Params):
        protocol: str = "random"

    def splits(self, data: Any) -> list[Any]:
        return []

    def build_schema(self, data: Any, split: Any) -> Any:
        return None

    def evaluate(self, probabilities: Any, targets: Any, visit_patient: Any, schema: Any) -> dict[str, Any]:
        return {}


class ToyEncoder(Encoder):
    class Params(Params):
        hidden_size: int = Field(8, ge=1)
        vocabularies: tuple[str, ...] = ("diagnoses", "procedures")

    @property
    def output_dim(self) -> int:
        return self.params.hidden_size

    def forward(self, batch: Any) -> torch.Tensor:
        return torch.zeros(*batch.visit_mask.shape, self.output_dim)


class ToyMemory(Memory):
    class Params(Params):
        layers: int = 1
        query: Node = slot("encoder", "toy_encoder", hidden_size=2)  # a slot inside a slot

    @property
    def output_dim(self) -> int:
        return 1

    def forward(self, query: torch.Tensor, batch: Any) -> torch.Tensor:
        return query[..., :1]


class ToyRecommender(Recommender):
    class Params(Params):
        encoder: Node = slot("encoder", "toy_encoder", hidden_size=4)
        memory: Node = slot("memory")  # required
        dropout: float = Field(0.1, ge=0, lt=1)

    def forward(self, batch: Any) -> torch.Tensor:
        return torch.zeros(1)


class ToyBrokenDefault(Recommender):
    class Params(Params):
        encoder: Node = slot("encoder", "no_such_encoder")

    def forward(self, batch: Any) -> torch.Tensor:
        return torch.zeros(1)


class ToyLoss(Loss):
    class Params(Params):
        weight: float = 1.0

    def forward(self, logits: torch.Tensor, batch: Any) -> torch.Tensor:
        return logits.sum()


class ToyMarginLoss(ToyLoss):
    class Params(Params):
        weight: float = 1.0
        margin: float = 0.5


class ToyAdapter(Adapter):
    class Params(Params):
        rank: int = Field(4, ge=1)

    def attach(self, recommender: Recommender) -> Recommender:
        return recommender


class ToyCore:
    @medtoolkit.hookimpl
    def register_adapters(self, register: Register) -> None:
        register("toy_adapter", ToyAdapter)

    @medtoolkit.hookimpl
    def register_datasets(self, register: Register) -> None:
        register("toy_data", ToyData)
        register("toy_csv", ToyOtherData)

    @medtoolkit.hookimpl
    def register_tasks(self, register: Register) -> None:
        register("toy_task", ToyTask)

    @medtoolkit.hookimpl
    def register_memories(self, register: Register) -> None:
        register("toy_memory", ToyMemory)

    @medtoolkit.hookimpl
    def register_recommenders(self, register: Register) -> None:
        register("toy_recommender", ToyRecommender)
        register("toy_broken_default", ToyBrokenDefault)

    @medtoolkit.hookimpl
    def register_losses(self, register: Register) -> None:
        register("toy_bce", ToyLoss)
        register("toy_margin", ToyMarginLoss)


class ToyEncoders:
    @medtoolkit.hookimpl
    def register_encoders(self, register: Register) -> None:
        register("toy_encoder", ToyEncoder)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(
        load_entry_points=False,
        extra_plugins=(("toy-core", "1.0", ToyCore()), ("toy-encoders", "0.2", ToyEncoders())),
    )


def good_config() -> dict[str, Any]:
    return {
        "seed": 3,
        "dataset": {"type": "toy_data", "n_patients": 20},
        "task": {"type": "toy_task"},
        "model": {"type": "toy_recommender", "memory": {"type": "toy_memory", "layers": 2}},
        "losses": [{"type": "toy_bce"}, {"type": "toy_margin", "weight": 0.1}],
        "trainer": {"epochs": 2},
    }


def errors_of(raw: Any, host: PluginHost) -> list[ConfigError]:
    with pytest.raises(ConfigValidationError) as caught:
        validate_config(raw, host, source="run.yaml")
    return caught.value.errors


def paths(errors: list[ConfigError]) -> list[str]:
    return [e.path for e in errors]


# ---------------------------------------------------------------------------- valid configs
def test_valid_config_resolves_every_node(host: PluginHost) -> None:
    config = validate_config(good_config(), host)
    assert isinstance(config, RunConfig)
    assert config.dataset.component is ToyData and config.dataset.params.n_patients == 20
    assert config.model.component is ToyRecommender
    memory = config.model.params.memory
    assert memory.component is ToyMemory and memory.params.layers == 2
    assert [loss.component for loss in config.losses] == [ToyLoss, ToyMarginLoss]
    assert config.losses[1].params.weight == 0.1
    assert config.trainer.epochs == 2 and config.trainer.lr == 2e-4


def test_default_slots_are_resolved_with_their_default_params(host: PluginHost) -> None:
    config = validate_config(good_config(), host)
    encoder = config.model.params.encoder  # not written in the config
    assert encoder.type == "toy_encoder"
    assert encoder.component is ToyEncoder
    assert encoder.params == ToyEncoder.Params(hidden_size=4)
    nested = config.model.params.memory.params.query  # default slot of a written slot
    assert nested.component is ToyEncoder and nested.params.hidden_size == 2


def test_slot_without_type_tweaks_the_default_component(host: PluginHost) -> None:
    raw = good_config()
    raw["model"]["encoder"] = {"vocabularies": ["diagnoses"]}
    encoder = validate_config(raw, host).model.params.encoder
    assert encoder.component is ToyEncoder
    assert encoder.params == ToyEncoder.Params(hidden_size=4, vocabularies=("diagnoses",))


def test_resolved_nodes_build_components(host: PluginHost) -> None:
    config = validate_config(good_config(), host)
    encoder = config.model.params.encoder.build(None)
    assert isinstance(encoder, ToyEncoder) and encoder.output_dim == 4


def test_to_dict_fills_every_default_and_validates_again(host: PluginHost) -> None:
    config = validate_config(good_config(), host)
    resolved = config.to_dict()
    assert resolved["model"] == {
        "type": "toy_recommender",
        "encoder": {"type": "toy_encoder", "hidden_size": 4, "vocabularies": ["diagnoses", "procedures"]},
        "memory": {
            "type": "toy_memory",
            "layers": 2,
            "query": {"type": "toy_encoder", "hidden_size": 2, "vocabularies": ["diagnoses", "procedures"]},
        },
        "dropout": 0.1,
    }
    assert resolved["dataset"] == {"type": "toy_data", "n_patients": 20, "path": None}
    assert resolved["losses"][1] == {"type": "toy_margin", "weight": 0.1, "margin": 0.5}
    assert validate_config(resolved, host).to_dict() == resolved


def test_nodes_built_in_python_are_accepted(host: PluginHost) -> None:
    raw = good_config()
    raw["model"] = Node(type="toy_recommender", memory={"type": "toy_memory"}, dropout=0.2)
    config = validate_config(raw, host)
    assert config.model.params.dropout == 0.2
    assert config.model.params.memory.component is ToyMemory


# ---------------------------------------------------------------------------- errors, all at once
def test_three_mistakes_give_exactly_three_paths(host: PluginHost) -> None:
    raw = good_config()
    raw["dataset"]["type"] = "toy_dta"  # unknown type
    raw["model"]["dropuot"] = 0.3  # misspelled key
    raw["trainer"]["epochs"] = "many"  # wrong value type
    errors = errors_of(raw, host)
    assert sorted(paths(errors)) == ["dataset.type", "model.dropuot", "trainer.epochs"]
    by_path = {e.path: e for e in errors}
    assert "unknown dataset 'toy_dta'. Did you mean 'toy_data'?" in by_path["dataset.type"].message
    assert by_path["model.dropuot"].message.startswith("unknown key 'dropuot'; did you mean 'dropout'?")
    assert by_path["model.dropuot"].plugin == "toy-core"
    assert "valid integer" in by_path["trainer.epochs"].message
    assert "(got 'many')" in by_path["trainer.epochs"].message


def test_error_message_lists_every_problem_with_its_owner(host: PluginHost) -> None:
    raw = good_config()
    raw["model"]["dropout"] = 2
    with pytest.raises(ConfigValidationError) as caught:
        validate_config(raw, host, source="run.yaml")
    text = str(caught.value)
    assert text.startswith("run.yaml: model.dropout: ")
    assert "\n" not in text
    assert text.endswith("(got 2) [toy-core]")


def test_nested_slot_errors_carry_the_full_path_and_the_slot_owner(host: PluginHost) -> None:
    raw = good_config()
    raw["model"]["encoder"] = {"type": "toy_encoder", "hiden_size": 16}
    raw["model"]["memory"]["query"] = {"type": "toy_encoder", "hidden_size": 0}
    errors = sorted(errors_of(raw, host), key=lambda e: e.path)
    assert paths(errors) == ["model.encoder.hiden_size", "model.memory.query.hidden_size"]
    assert errors[0].message.startswith("unknown key 'hiden_size'; did you mean 'hidden_size'?")
    assert "(valid keys: hidden_size, vocabularies)" in errors[0].message
    assert errors[0].plugin == "toy-encoders"  # the encoder's plugin, not the recommender's
    assert "greater than or equal to 1" in errors[1].message


def test_unknown_slot_type_and_bad_parent_param_are_both_reported(host: PluginHost) -> None:
    raw = good_config()
    raw["model"]["encoder"] = {"type": "toy_encodr"}
    raw["model"]["dropout"] = "high"
    errors = errors_of(raw, host)
    assert paths(errors) == ["model.encoder.type", "model.dropout"]
    assert "Did you mean 'toy_encoder'?" in errors[0].message


def test_required_slot_missing(host: PluginHost) -> None:
    raw = good_config()
    del raw["model"]["memory"]
    (error,) = errors_of(raw, host)
    assert (error.path, error.message) == ("model.memory", "Field required")


def test_slot_of_the_wrong_kind_is_rejected(host: PluginHost) -> None:
    raw = good_config()
    raw["model"]["memory"] = {"type": "toy_encoder"}  # an encoder where a memory goes
    (error,) = errors_of(raw, host)
    assert error.path == "model.memory.type"
    assert error.message.startswith("unknown memory 'toy_encoder'.")
    assert "('toy_encoder' is registered as kind 'encoder', not 'memory'.)" in error.message


def test_unknown_name_mentions_plugins_that_did_not_load() -> None:
    class Broken:
        @medtoolkit.hookimpl
        def register_encoders(self, register: Register) -> None:
            raise ImportError("No module named 'torch_scatter'")

    host = PluginHost(
        load_entry_points=False,
        extra_plugins=(("toy-core", "1.0", ToyCore()), ("toy-encoders", "0.2", ToyEncoders()), ("bad", "1", Broken())),
    )
    raw = good_config()
    raw["model"]["encoder"] = {"type": "bag_of_codes"}
    (error,) = errors_of(raw, host)
    assert error.path == "model.encoder.type"
    assert "Plugins not loaded: " in error.message
    assert error.message.endswith("bad (broken) (see `medtoolkit plugins`).")


def test_default_slot_with_an_unknown_name_is_reported(host: PluginHost) -> None:
    raw = good_config()
    raw["model"] = {"type": "toy_broken_default"}
    (error,) = errors_of(raw, host)
    assert error.path == "model.encoder.type"
    assert "unknown encoder 'no_such_encoder'" in error.message


@pytest.mark.parametrize(
    ("node", "path", "message"),
    [
        ({"n_patients": 3}, "dataset", "missing 'type' (a registered dataset name)"),
        ("toy_data", "dataset", "expected a dataset node {type: <name>, ...}, got 'toy_data'"),
        ({"type": 3}, "dataset.type", "must be a registered dataset name, got 3"),
    ],
)
def test_malformed_nodes(host: PluginHost, node: Any, path: str, message: str) -> None:
    raw = good_config()
    raw["dataset"] = node
    (error,) = errors_of(raw, host)
    assert (error.path, error.message) == (path, message)


def test_import_paths_are_never_accepted(host: PluginHost) -> None:
    raw = good_config()
    raw["model"]["memory"] = {"type": "tests.test_config:ToyMemory"}
    (error,) = errors_of(raw, host)
    assert error.path == "model.memory.type"
    assert error.message.startswith("unknown memory 'tests.test_config:ToyMemory'.")


def test_plugin_provided_name_suggests_the_extra(host: PluginHost) -> None:
    raw = good_config()
    raw["model"] = {"type": "safedrug"}
    (error,) = errors_of(raw, host)
    assert 'pip install "medtoolkit[molecule]"' in error.message


def test_losses_are_validated_per_index(host: PluginHost) -> None:
    raw = good_config()
    raw["losses"] = [{"type": "toy_bce", "weight": "heavy"}, {"type": "toy_ddi"}, {"type": "toy_margin"}]
    assert paths(errors_of(raw, host)) == ["losses.0.weight", "losses.1.type"]
    raw["losses"] = {"type": "toy_bce"}
    assert paths(errors_of(raw, host)) == ["losses"]


def test_missing_required_sections_are_reported_once(host: PluginHost) -> None:
    errors = errors_of({"task": {"type": "toy_task"}}, host)
    assert [(e.path, e.message) for e in errors] == [
        ("dataset", "missing required section 'dataset'"),
        ("model", "missing required section 'model'"),
    ]


def test_unknown_top_level_key(host: PluginHost) -> None:
    raw = good_config()
    raw["trainr"] = {"epochs": 3}
    (error,) = errors_of(raw, host)
    assert error.path == "trainr"
    assert error.message.startswith("unknown top-level key 'trainr'; did you mean 'trainer'?")


def test_misspelled_trainer_key_suggests_a_trainer_key(host: PluginHost) -> None:
    raw = good_config()
    raw["trainer"]["lrr"] = 0.1
    raw["eval"] = {"treshold": 0.3}
    errors = errors_of(raw, host)
    assert paths(errors) == ["trainer.lrr", "eval.treshold"]
    assert errors[0].message.startswith("unknown key 'lrr'; did you mean 'lr'? (valid keys: epochs, lr,")
    assert errors[1].message.startswith("unknown key 'treshold'; did you mean 'threshold'? (valid keys: threshold,")


def test_run_file_must_be_a_mapping(host: PluginHost) -> None:
    (error,) = errors_of(["dataset"], host)
    assert (error.path, error.message) == ("", "a run file must be a mapping, got list")
    assert str(error) == "<root>: a run file must be a mapping, got list"


# ---------------------------------------------------------------------------- overrides
def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("trainer.lr=0.001") == (["trainer", "lr"], 0.001)
    assert parse_override("trainer.amp=true") == (["trainer", "amp"], True)
    assert parse_override("model.encoder.vocabularies=[diagnoses]") == (
        ["model", "encoder", "vocabularies"],
        ["diagnoses"],
    )
    assert parse_override("device=cuda:1") == (["device"], "cuda:1")
    assert parse_override("name=a=b") == (["name"], "a=b")
    assert parse_override("name=") == (["name"], "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trainer.lr", "override 'trainer.lr' must look like key.path=value"),
        ("=1", "override '=1' has an empty key"),
        ("trainer..lr=1", "override 'trainer..lr=1' has an empty key"),
        ("trainer.=1", "override 'trainer.=1' has an empty key"),
    ],
)
def test_bad_override_syntax(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        apply_overrides(good_config(), [text])
    assert str(caught.value) == message


def test_override_sets_nested_keys_without_touching_the_input() -> None:
    raw = good_config()
    new, notes = apply_overrides(raw, ["trainer.lr=0.01", "model.memory.layers=3", "eval.bootstrap_rounds=0"])
    assert new["trainer"] == {"epochs": 2, "lr": 0.01}
    assert new["model"]["memory"] == {"type": "toy_memory", "layers": 3}
    assert new["eval"] == {"bootstrap_rounds": 0}
    assert notes == []
    assert raw == good_config()


def test_override_list_index() -> None:
    new, _ = apply_overrides(good_config(), ["losses.0.weight=0.5", "losses.1={type: toy_bce}"])
    assert new["losses"] == [{"type": "toy_bce", "weight": 0.5}, {"type": "toy_bce"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("losses.2.weight=1", "override 'losses.2.weight=1': losses.2 is not an index of a list of 2"),
        ("losses.first.weight=1", "override 'losses.first.weight=1': losses.first is not an index of a list of 2"),
        ("losses.5=1", "override 'losses.5=1': 5 is not an index of a list of 2"),
        ("seed.value=1", "override 'seed.value=1': seed is a value, not a section"),
    ],
)
def test_override_paths_that_do_not_exist(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        apply_overrides(good_config(), [text])
    assert str(caught.value) == message


def test_switching_a_node_type_resets_its_params_with_a_note() -> None:
    new, notes = apply_overrides(good_config(), ["dataset.type=toy_csv", "dataset.seed=7"])
    assert new["dataset"] == {"type": "toy_csv", "seed": 7}
    assert notes == ["dataset: switched type 'toy_data' -> 'toy_csv'; reset parameters n_patients"]


def test_a_switch_keeps_what_the_overrides_set_in_any_order() -> None:
    before, before_notes = apply_overrides(good_config(), ["dataset.seed=7", "dataset.type=toy_csv"])
    after, _ = apply_overrides(good_config(), ["dataset.type=toy_csv", "dataset.seed=7"])
    assert before["dataset"] == after["dataset"] == {"type": "toy_csv", "seed": 7}
    assert before_notes == [
        "dataset: switched type 'toy_data' -> 'toy_csv'; reset parameters n_patients; kept seed (set by an override)"
    ]


def test_a_switch_keeps_only_the_overridden_entries_of_a_section() -> None:
    raw = good_config()
    raw["model"]["hidden_size"] = 64
    new, notes = apply_overrides(raw, ["model.memory.depth=3", "model.type=toy_linear"])
    # the run file's memory type and layers go with the old model; the override's depth stays
    assert new["model"] == {"type": "toy_linear", "memory": {"depth": 3}}
    assert notes == ["model: switched type 'toy_recommender' -> 'toy_linear'; reset parameters hidden_size; "
                     "kept memory (set by an override)"]


def test_a_switch_keeps_a_section_an_override_set_whole_and_list_entries() -> None:
    new, notes = apply_overrides(good_config(), ["model.memory={type: toy_memory, layers: 5}",
                                                 "model.memory.type=toy_other"])
    assert new["model"]["memory"] == {"type": "toy_other", "layers": 5}
    assert notes == ["model.memory: switched type 'toy_memory' -> 'toy_other'; kept layers (set by an override)"]
    new, notes = apply_overrides(good_config(), ["losses.1.weight=0.5", "losses.1.type=toy_bce"])
    assert new["losses"][1] == {"type": "toy_bce", "weight": 0.5}
    assert notes == ["losses.1: switched type 'toy_margin' -> 'toy_bce'; kept weight (set by an override)"]


def test_switching_a_list_node_type_and_setting_the_same_type() -> None:
    new, notes = apply_overrides(good_config(), ["losses.1.type=toy_bce", "dataset.type=toy_data"])
    assert new["losses"][1] == {"type": "toy_bce"}
    assert new["dataset"] == {"type": "toy_data", "n_patients": 20}  # same type: nothing reset
    assert notes == ["losses.1: switched type 'toy_margin' -> 'toy_bce'; reset parameters weight"]


def test_overridden_config_validates_and_switched_node_is_valid(host: PluginHost) -> None:
    raw = good_config()
    raw["dataset"]["path"] = "/data/x"
    new, _ = apply_overrides(raw, ["dataset.type=toy_csv", "model.encoder.hidden_size=32"])
    config = validate_config(new, host)
    assert config.dataset.component is ToyOtherData
    assert config.model.params.encoder.params.hidden_size == 32


def test_override_values_go_through_the_schema(host: PluginHost) -> None:
    new, _ = apply_overrides(good_config(), ["trainer.lr=-1", "model.encoder.hidden_size=wide"])
    assert paths(errors_of(new, host)) == ["model.encoder.hidden_size", "trainer.lr"]


# ---------------------------------------------------------------------------- YAML files
def test_load_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\ndataset: {type: toy_data}\n", encoding="utf-8")
    assert load_yaml(path) == {"seed": 1, "dataset": {"type": "toy_data"}}


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\ndataset:\n  type: toy_data\n  n_patients: [1, 2\nmodel: {}\n", encoding="utf-8")
    with pytest.raises(ConfigValidationError) as caught:
        load_yaml(path)
    (error,) = caught.value.errors
    assert caught.value.source == str(path)
    assert error.message.startswith("invalid YAML (line 5, column 6)")
    assert str(caught.value).startswith(f"{path}: ")


def test_yaml_bad_indentation_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("dataset:\n  type: toy_data\n n_patients: 3\n", encoding="utf-8")
    with pytest.raises(ConfigValidationError, match=r"invalid YAML \(line 3, column 2\)"):
        load_yaml(path)


def test_yaml_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigValidationError, match="a run file must be a YAML mapping"):
        load_yaml(path)
    path.write_text("", encoding="utf-8")
    assert load_yaml(path) == {}


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run file not found: .*nope.yaml"):
        load_yaml(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------- with the built-ins
def test_task_defaults_to_medication_recommendation() -> None:
    host = PluginHost(load_entry_points=False)
    config = validate_config(
        {"dataset": {"type": "synthetic"}, "model": {"type": "gamenet"}}, host
    )
    assert config.task.type == "medication_recommendation"
    assert config.task.component is host.get("task", "medication_recommendation")


def test_builtin_presets_validate() -> None:
    from medtoolkit.presets import preset_config

    host = PluginHost(load_entry_points=False)
    names = host.registry("preset").names()
    assert "gamenet" in names
    for name in names:
        validate_config(preset_config(name, host=host), host, source=name)


def test_three_mistakes_in_the_gamenet_preset() -> None:
    from medtoolkit.presets import preset_config

    host = PluginHost(load_entry_points=False)
    raw, _ = apply_overrides(
        preset_config("gamenet", host=host),
        ["model.memory.type=gcm", "model.encoder.hiden_dim=64", "losses.2.target=low"],
    )
    errors = errors_of(raw, host)
    assert sorted(paths(errors)) == ["losses.2.target", "model.encoder.hiden_dim", "model.memory.type"]
    by_path = {e.path: e for e in errors}
    assert "Did you mean 'gcn'?" in by_path["model.memory.type"].message
    assert "did you mean 'hidden_dim'?" in by_path["model.encoder.hiden_dim"].message
    assert by_path["model.encoder.hiden_dim"].plugin == "medtoolkit"


def test_duplicate_yaml_keys_are_errors_not_silently_dropped(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "dataset: {type: toy_data}\nmodel:\n  type: toy_recommender\n  dropout: 0.1\n  dropout: 0.5\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigValidationError) as caught:
        load_yaml(path)
    (error,) = caught.value.errors
    assert error.message.startswith("invalid YAML (line 5, column 3)")
    assert "found duplicate key 'dropout' (first on line 4)" in error.message


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("base: &base {type: toy_bce, weight: 1.0}\nlosses:\n  - {<<: *base, weight: 0.5}\n")
    assert load_yaml(path)["losses"] == [{"type": "toy_bce", "weight": 0.5}]


# ---------------------------------------------------------------------------- hostile run files
#: address-space limit of the subprocesses that read hostile files
MEMORY_LIMIT = 1536 * 2**20
_VALIDATE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from medtoolkit.cli import main
code = main(sys.argv[1:])
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def run_validate(*args: str) -> subprocess.CompletedProcess[str]:
    """``medtoolkit validate ARGS`` in a subprocess limited to 1.5 GB of address space and 30 s."""
    return subprocess.run(
        [sys.executable, "-c", _VALIDATE.format(limit=MEMORY_LIMIT), "validate", *args],
        capture_output=True, text=True, timeout=30, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def assert_refused(result: subprocess.CompletedProcess[str], first_line: str, fragment: str) -> None:
    """The process exited normally with one ``error:`` message (no traceback, no kill)."""
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert result.stderr.startswith(first_line), result.stderr[:500]
    assert fragment in result.stderr
    assert len(result.stderr) < 3000
    assert result.stdout.startswith("maxrss_kb ")
    assert int(result.stdout.split()[1]) * 1024 < MEMORY_LIMIT


def billion_laughs() -> str:
    """A 9-level alias bomb (9**9 strings once expanded) of about 350 bytes."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs(), encoding="utf-8")
    assert path.stat().st_size < 600
    assert_refused(
        run_validate(str(path)), f"error: {path}: ",
        "refused: YAML expands to more than 100,000 nodes (aliases expanded) (line 6, column 8)",
    )


def test_deep_nesting_is_refused_without_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    result = run_validate(str(path))
    assert_refused(result, f"error: {path}: ", "refused: YAML nested deeper than 64 levels (line 1, column 67)")
    assert "RecursionError" not in result.stderr


def test_huge_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("seed: [" + ", ".join(["0"] * 200_000) + "]\n", encoding="utf-8")
    assert_refused(
        run_validate(str(path)), f"error: {path}: ", "refused: YAML expands to more than 100,000 nodes"
    )


def test_file_over_one_megabyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: " + "x" * 1_000_001 + "\n", encoding="utf-8")
    assert_refused(
        run_validate(str(path)), f"error: {path}: ",
        "the run file is larger than 1,000,000 bytes (the limit for a run file)",
    )


def test_non_utf8_file_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: run\ndevice: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigValidationError) as caught:
        load_yaml(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "not UTF-8 text: byte 0xe9 on line 2 (byte offset 21); save the file as UTF-8" in str(caught.value)
    assert_refused(run_validate(str(path)), f"error: {path}: ", "not UTF-8 text: byte 0xe9 on line 2")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("dataset: &d {type: toy_data, self: *d}\n", encoding="utf-8")
    with pytest.raises(ConfigValidationError, match=r"refused: alias \*d refers to a node that contains it"):
        load_yaml(path)


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("x: &x {type: toy_bce}\nlosses: [*x, *x]\n", encoding="utf-8")
    assert load_yaml(path)["losses"] == [{"type": "toy_bce"}, {"type": "toy_bce"}]


def test_seed_beyond_uint32_is_refused_by_validate(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("dataset: {type: synthetic}\nmodel: {type: gamenet}\nseed: 99999999999999999999\n", encoding="utf-8")
    assert_refused(
        run_validate(str(path)), f"error: {path}: ",
        f"error: {path}: seed: Input should be less than or equal to 4294967295 (got 99999999999999999999)",
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("", "seed", -1, "Input should be greater than or equal to 0"),
        ("", "seed", 2**32, "Input should be less than or equal to 4294967295"),
        ("eval", "bootstrap_seed", 2**32, "Input should be less than or equal to 4294967295"),
        ("trainer", "epochs", 10**12, "Input should be less than or equal to 100000"),
        ("trainer", "batch_size", 10**12, "Input should be less than or equal to 1000000"),
        ("eval", "batch_size", 10**12, "Input should be less than or equal to 1000000"),
        ("trainer", "num_threads", 10**6, "Input should be less than or equal to 4096"),
    ],
)
def test_integers_that_reach_numpy_and_torch_are_bounded(
    host: PluginHost, section: str, key: str, value: int, message: str
) -> None:
    raw = good_config()
    raw.update({section: {key: value}} if section else {key: value})
    errors = errors_of(raw, host)
    assert [(e.path, e.message) for e in errors] == [(_join_path(section, key), f"{message} (got {value})")]


def _join_path(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def test_largest_seed_is_accepted_by_numpy_and_torch(host: PluginHost) -> None:
    import numpy as np

    from medtoolkit.training.device import seed_everything

    config = validate_config({**good_config(), "seed": 2**32 - 1, "eval": {"bootstrap_seed": 2**32 - 1}}, host)
    seed_everything(config.seed)
    np.random.RandomState(config.eval.bootstrap_seed)


def test_echoed_values_are_shortened(host: PluginHost) -> None:
    long = "x" * 100_000
    raw = good_config()
    raw["model"]["dropout"] = long
    raw[long] = 1
    errors = errors_of(raw, host)
    assert len(errors) == 2
    for error in errors:
        assert len(error.message) <= 2000 and len(error.path) <= 300
    by_path = {e.path[:20]: e.message for e in errors}
    assert by_path["model.dropout"].startswith("Input should be a valid number")
    assert "(got 'xxxx" in by_path["model.dropout"] and "...)" in by_path["model.dropout"]
    assert by_path["x" * 20].startswith("unknown top-level key 'xxx")
    with pytest.raises(ValueError) as caught:
        parse_override(long)
    assert str(caught.value).startswith("override 'xxx")
    assert str(caught.value).endswith("must look like key.path=value")
    assert len(str(caught.value)) < 300


def test_overrides_obey_the_run_file_limits() -> None:
    with pytest.raises(ValueError, match=r"^override 'seed=.*'...: refused: YAML expands to more than 100,000 nodes"):
        parse_override("seed=" + billion_laughs().replace("\n", ", ").join("{}"))
    with pytest.raises(ValueError, match=r"refused: YAML nested deeper than 64 levels \(line 1, column 65\)"):
        parse_override("seed=" + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"key path deeper than 64 levels"):
        parse_override(".".join(["a"] * 65) + "=1")
    with pytest.raises(ValueError, match=r"longer than 1,000,000 bytes"):
        parse_override("name=" + "x" * 1_000_000)
    assert parse_override("trainer.progress=off") == (["trainer", "progress"], False)


def test_override_bomb_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("dataset: {type: synthetic}\nmodel: {type: gamenet}\n", encoding="utf-8")
    bomb = "seed=" + billion_laughs().replace("\n", ", ").join("{}")
    result = run_validate(str(path), "-o", bomb)
    assert_refused(result, "error: override 'seed=", "refused: YAML expands to more than 100,000 nodes")


@pytest.mark.parametrize(("text", "expected"), [("off", "none"), ("no", "none"), ("false", "none"),
                                                ("on", "auto"), ("yes", "auto"), ("log", "log")])
def test_progress_off_in_yaml_means_none(tmp_path: Path, host: PluginHost, text: str, expected: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        f"dataset: {{type: toy_data}}\nmodel: {{type: toy_recommender, memory: {{type: toy_memory}}}}\n"
        f"trainer:\n  progress: {text}\n",
        encoding="utf-8",
    )
    config = validate_config(load_yaml(path), host, source=str(path))
    assert config.trainer.progress == expected


@pytest.mark.parametrize(("text", "expected"), [("off", "none"), ("No", "none"), ("false", "none"),
                                                ("on", "auto"), ("YES", "auto"), ("true", "auto"), ("bar", "bar")])
def test_progress_switch_words_from_python_mean_the_same_as_in_yaml(text: str, expected: str) -> None:
    from medtoolkit.config import TrainerParams

    assert TrainerParams(progress=text).progress == expected  # type: ignore[arg-type]
    assert TrainerParams.model_validate({"progress": text}).progress == expected


def test_an_unknown_progress_word_is_still_refused() -> None:
    from pydantic import ValidationError

    from medtoolkit.config import TrainerParams

    with pytest.raises(ValidationError) as refused:
        TrainerParams(progress="sometimes")  # type: ignore[arg-type]
    assert refused.value.errors()[0]["msg"] == "Input should be 'auto', 'bar', 'log' or 'none'"


def test_integer_too_long_to_build_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("seed: " + "9" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigValidationError) as caught:
        load_yaml(path)
    assert str(caught.value).startswith(f"{path}: <root>: invalid YAML value: Exceeds the limit")
    with pytest.raises(ValueError, match=r"^override 'seed=999.*'\.\.\.: invalid value: Exceeds the limit"):
        parse_override("seed=" + "9" * 5000)


# ----------------------------------------------------------------------------- hostile review (issue 8)
def test_sexagesimal_numbers_cannot_make_parsing_quadratic(tmp_path: Path) -> None:
    import time

    from medtoolkit.config import parse_override

    run = tmp_path / "run.yaml"
    run.write_text("seed: 1" + ":59" * 300_000 + "\n")  # YAML 1.1 base 60: minutes to convert
    start = time.perf_counter()
    with pytest.raises(ConfigValidationError) as caught:
        load_yaml(run)
    assert time.perf_counter() - start < 20
    line = caught.value.summary()
    assert line.startswith(f"{run}: <root>: invalid YAML (line 1, column 7): refusing the integer '1:59:59")
    assert "of 900,001 characters (300,001 ':'-separated parts); write a plain number" in line
    assert "\n" not in line
    assert load_yaml_text(tmp_path, "a: 1:30:00\nb: 190:20:30.15\nc: 0x10\n") == {"a": 5400, "b": 685230.15, "c": 16}
    keys, value = parse_override("seed=1" + ":59" * 100_000)  # not a number: kept as text, quickly
    assert keys == ["seed"] and isinstance(value, str)


def load_yaml_text(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    return load_yaml(path)


def test_yaml_error_messages_are_one_line(tmp_path: Path) -> None:
    run = tmp_path / "dup.yaml"
    run.write_text("seed: 1\nseed: 2\n")
    with pytest.raises(ConfigValidationError) as caught:
        load_yaml(run)
    assert caught.value.summary() == (
        f"{run}: <root>: invalid YAML (line 2, column 1): while constructing a mapping in \"<unicode string>\", "
        f"line 1, column 1: seed: 1 ^ found duplicate key 'seed' (first on line 1) in \"<unicode string>\", "
        f"line 2, column 1: seed: 2 ^"
    )


def test_run_file_that_is_a_fifo_or_device_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "run.yaml"
    os.mkfifo(fifo)
    code = (
        "import sys\nfrom medtoolkit.config import ConfigValidationError, load_yaml\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n        load_yaml(path)\n"
        "    except ConfigValidationError as error:\n        print(error.summary())\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(fifo), "/dev/zero", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        f"{fifo}: <root>: cannot read the run file: it is not a regular file (a device, FIFO or socket)",
        "/dev/zero: <root>: cannot read the run file: it is not a regular file (a device, FIFO or socket)",
        f"{tmp_path}: <root>: cannot read the run file: it is a directory",
    ]


# ---------------------------------------------------------------------------- stages
def staged_config() -> dict[str, Any]:
    raw = good_config()
    raw["trainer"] = {"epochs": 5, "lr": 0.01, "batch_size": 4}
    raw["stages"] = [
        {"name": "pretrain", "losses": [{"type": "toy_margin", "margin": 0.2}], "trainer": {"select_metric": "loss"}},
        {"name": "tune", "init_from": "pretrain", "adapter": {"type": "toy_adapter", "rank": 2},
         "freeze": ["encoder.*"], "repeat_per": "hospital", "trainer": {"epochs": 2}},
    ]
    return raw


def test_stages_resolve_nodes_and_merge_the_trainer_over_the_run_trainer(host: PluginHost) -> None:
    config = validate_config(staged_config(), host)
    pretrain, tune = config.stages
    assert [n.component for n in pretrain.losses] == [ToyMarginLoss] and pretrain.losses[0].params.margin == 0.2
    assert (pretrain.trainer.epochs, pretrain.trainer.lr, pretrain.trainer.select_metric) == (5, 0.01, "loss")
    assert (tune.trainer.epochs, tune.trainer.lr, tune.trainer.batch_size) == (2, 0.01, 4)
    assert tune.trainer.select_metric == "jaccard"  # the run's, not the previous stage's
    assert tune.adapter.component is ToyAdapter and tune.adapter.params.rank == 2
    assert (tune.init_from, tune.freeze, tune.repeat_per) == ("pretrain", ["encoder.*"], "hospital")
    assert tune.evaluate is False
    assert tune.losses is None and config.stage_losses(tune) == config.losses
    assert config.stage("tune") is tune


def test_staged_to_dict_round_trips_with_the_merged_trainer(host: PluginHost) -> None:
    resolved = validate_config(staged_config(), host).to_dict()
    assert list(resolved) == ["name", "seed", "device", "dataset", "task", "model", "losses", "trainer", "eval",
                              "stages"]
    tune = resolved["stages"][1]
    assert tune["adapter"] == {"type": "toy_adapter", "rank": 2}
    assert tune["losses"] is None and tune["evaluate"] is False
    assert tune["trainer"] == {**resolved["trainer"], "epochs": 2}
    assert validate_config(resolved, host).to_dict() == resolved


def test_a_config_without_stages_resolves_without_a_stages_key(host: PluginHost) -> None:
    assert "stages" not in validate_config(good_config(), host).to_dict()
    assert "stages" not in validate_config({**good_config(), "stages": []}, host).to_dict()


def test_every_stage_mistake_is_reported_at_once_with_its_path(host: PluginHost) -> None:
    raw = staged_config()
    raw["stages"][0]["losses"].append({"type": "toy_bcee"})
    raw["stages"][0]["trainer"] = {"epochz": 3, "lr": -1}
    raw["stages"][1]["adapter"]["rank"] = 0
    raw["stages"][1]["repeat_pr"] = "hospital"
    raw["stages"].append({"name": "Final", "evaluate": "sometimes"})
    errors = errors_of(raw, host)
    by_path = {e.path: e.message for e in errors}
    assert sorted(by_path) == ["stages.0.losses.1.type", "stages.0.trainer.epochz", "stages.0.trainer.lr",
                               "stages.1.adapter.rank", "stages.1.repeat_pr", "stages.2.evaluate", "stages.2.name"]
    assert by_path["stages.0.losses.1.type"].startswith("unknown loss 'toy_bcee'")
    assert by_path["stages.0.trainer.epochz"].startswith("unknown key 'epochz'; did you mean 'epochs'? (valid keys: ")
    assert by_path["stages.0.trainer.lr"] == "Input should be greater than 0 (got -1)"
    assert by_path["stages.1.adapter.rank"] == "Input should be greater than or equal to 1 (got 0)"
    assert by_path["stages.1.repeat_pr"].startswith("unknown key 'repeat_pr'; did you mean 'repeat_per'? "
                                                    "(valid keys: name, losses, trainer, init_from, freeze, adapter,")
    assert "should match pattern" in by_path["stages.2.name"]


def test_an_adapter_of_another_kind_is_named(host: PluginHost) -> None:
    raw = staged_config()
    raw["stages"][1]["adapter"] = {"type": "toy_bce"}
    (error,) = errors_of(raw, host)
    assert error.path == "stages.1.adapter.type"
    assert "('toy_bce' is registered as kind 'loss', not 'adapter'.)" in error.message


@pytest.mark.parametrize(
    ("stages", "path", "message"),
    [
        ([{"name": "a"}, {"name": "a"}], "stages.1.name", "duplicate stage name 'a' (also stages.0.name)"),
        ([{"name": "a", "init_from": "b"}, {"name": "b"}], "stages.0.init_from",
         "stage 'b' comes later (stages.1); init_from must name an earlier stage"),
        ([{"name": "a", "init_from": "a"}], "stages.0.init_from",
         "stage 'a' cannot start from itself; name an earlier stage"),
        ([{"name": "pretrain"}, {"name": "tune", "init_from": "pretrian"}], "stages.1.init_from",
         "unknown stage 'pretrian'; did you mean 'pretrain'? (earlier stages: pretrain)"),
        ([{"name": "a", "init_from": "z"}], "stages.0.init_from", "unknown stage 'z' (it is the first stage)"),
        ([{"name": "a", "repeat_per": "hospital"}, {"name": "b", "init_from": "a"}], "stages.1.init_from",
         "stage 'a' is repeated per hospital, so a stage starting from it must be repeated the same way (repeat_per)"),
        ([{"name": "a", "repeat_per": "ward"}], "stages.0.repeat_per", "Input should be 'hospital' (got 'ward')"),
        ([{"name": "a", "trainer": 3}], "stages.0.trainer", "expected a mapping of trainer keys, got 3"),
        ([{"name": "a", "losses": {"type": "toy_bce"}}], "stages.0.losses",
         "expected a list of loss nodes, got {'type': 'toy_bce'}"),
        ([{"losses": []}], "stages.0.name", "Field required"),
        (["pretrain"], "stages.0", "expected a stage {name: ..., ...}, got 'pretrain'"),
        ({"name": "a"}, "stages", "expected a list of stages ({name: ..., ...}), got {'name': 'a'}"),
    ],
)
def test_stage_structure_errors(host: PluginHost, stages: Any, path: str, message: str) -> None:
    raw = good_config()
    raw["stages"] = stages
    (error,) = errors_of(raw, host)
    assert (error.path, error.message) == (path, message)


def test_stage_errors_come_with_the_other_sections_errors(host: PluginHost) -> None:
    raw = staged_config()
    raw["trainer"]["epochs"] = -1
    raw["model"]["dropout"] = 2
    raw["stages"][1]["init_from"] = "nowhere"
    assert sorted(paths(errors_of(raw, host))) == ["model.dropout", "stages.1.init_from", "trainer.epochs"]


def test_overrides_reach_into_stages(host: PluginHost) -> None:
    raw, notes = apply_overrides(staged_config(), ["stages.1.trainer.epochs=7", "stages.0.trainer.lr=0.5",
                                                   "stages.1.adapter.rank=3", "stages.1.evaluate=true"])
    assert notes == []
    config = validate_config(raw, host)
    assert (config.stages[1].trainer.epochs, config.stages[0].trainer.lr) == (7, 0.5)
    assert config.stages[1].adapter.params.rank == 3 and config.stages[1].evaluate is True
    raw, _ = apply_overrides(good_config() | {"stages": [{"name": "a"}]}, ["stages.0.trainer.epochs=1"])
    assert validate_config(raw, host).stages[0].trainer.epochs == 1  # a stage without a trainer section
    with pytest.raises(ValueError, match="stages.2 is not an index of a list of 2"):
        apply_overrides(staged_config(), ["stages.2.trainer.epochs=1"])


def test_a_stage_loss_lacking_model_extras_is_refused_at_its_path() -> None:
    class NeedsExtras(Loss):
        class Params(Params):
            weight: float = 1.0

        @classmethod
        def extras_needed(cls, params: Params) -> frozenset[str]:
            return frozenset({"representation"})

        def forward(self, logits: torch.Tensor, batch: Any, extras: Any = None) -> torch.Tensor:
            return logits.sum()

    class Extra:
        @medtoolkit.hookimpl
        def register_losses(self, register: Register) -> None:
            register("toy_needs_extras", NeedsExtras)

    host = PluginHost(load_entry_points=False, extra_plugins=(
        ("toy-core", "1.0", ToyCore()), ("toy-encoders", "0.2", ToyEncoders()), ("extra", "1", Extra())))
    raw = staged_config()
    raw["stages"][0]["losses"] = [{"type": "toy_bce"}, {"type": "toy_needs_extras"}]
    (error,) = errors_of(raw, host)
    assert error.path == "stages.0.losses.1"
    assert "needs model extras 'representation'" in error.message


@pytest.mark.parametrize("bins", [[40, 20], [20, 20]])
def test_group_bins_must_increase_at_validate_time(bins: list[int]) -> None:
    raw = {"dataset": {"type": "synthetic"}, "model": {"type": "gamenet"}, "losses": [{"type": "bce"}],
           "eval": {"group_by": "hospital", "group_bins": bins}}
    with pytest.raises(ConfigValidationError, match="eval.group_bins: .*strictly increasing"):
        validate_config(raw)
