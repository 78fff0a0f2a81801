"""Drug-encoder slots: ``slot(consumes=...)``, ``drug_encoder_slot``, ``slot_mismatch`` and
``build_drug_encoder``, and the check ``medtoolkit validate`` makes on every slot child.

A fresh :class:`PluginHost` with toy components (names prefixed ``toy_``) keeps these tests
independent of the installed plugins; the core's built-ins (``gru``...) are always in it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import Field

import medtoolkit
from medtoolkit.components.base import Dataset, DrugEncoder, Encoder, Memory, Recommender
from medtoolkit.components.params import (
    DRUG_INPUTS,
    VISIT_INPUTS,
    ComponentBuildError,
    Node,
    Params,
    build_drug_encoder,
    drug_encoder_slot,
    slot,
    slot_consumes,
    slot_kind,
    slot_mismatch,
)
from medtoolkit.config import ConfigError, ConfigValidationError, validate_config
from medtoolkit.hookspecs import Register
from medtoolkit.plugins import PluginHost


# ---------------------------------------------------------------------------- toy components
class ToyData(Dataset):
    class Params(Params):
        seed: int = 0

    def load(self, progress: bool = True) -> Any:
        raise NotImplementedError


class ToyVisitEncoder(Encoder):
    class Params(Params):
        width: int = Field(4, ge=1)

    @property
    def output_dim(self) -> int:
        return self.params.width

    def forward(self, batch: Any) -> torch.Tensor:
        return torch.zeros(*batch.visit_mask.shape, self.output_dim)


class ToyMoleculeEncoder(DrugEncoder):
    class Params(Params):
        width: int = Field(3, ge=1)
        n_drugs: int = Field(5, ge=1)

    @classmethod
    def knowledge_needed(cls, params: Params) -> frozenset[str]:
        return frozenset()  # the toy reads no data

    @property
    def output_dim(self) -> int:
        return self.params.width

    def forward(self) -> torch.Tensor:
        return torch.zeros(self.params.n_drugs, self.output_dim)


class ToyFingerprintEncoder(ToyMoleculeEncoder):
    """A drug encoder of another input: fits neither a visit slot nor a molecule slot."""

    consumes = "fingerprints"


class ToyNotADrugEncoder(ToyVisitEncoder):
    """Claims to consume molecules without being a DrugEncoder."""

    consumes = "molecules"


class ToyDrugMemory(Memory):
    class Params(Params):
        drug_encoder: Node = drug_encoder_slot("toy_molecules", "drugs read by the memory", width=2)

    def __init__(self, params: Params | None = None, schema: Any = None, query_dim: int = 64) -> None:
        super().__init__(params, schema, query_dim)
        self.drugs = build_drug_encoder(self.params.drug_encoder, schema)

    @property
    def output_dim(self) -> int:
        return self.drugs.output_dim

    def forward(self, query: torch.Tensor, batch: Any) -> torch.Tensor:
        return query @ torch.zeros(query.shape[-1], self.output_dim)


class ToyRecommender(Recommender):
    class Params(Params):
        encoder: Node = slot("encoder", "toy_visits", width=6)
        drug_encoder: Node = drug_encoder_slot("toy_molecules")
        memory: Node = slot("memory", "toy_drug_memory")

    def forward(self, batch: Any) -> torch.Tensor:
        return torch.zeros(1)


class ToyMixedUpDefaults(Recommender):
    """A plugin bug: both default children sit in the wrong slot."""

    class Params(Params):
        encoder: Node = slot("encoder", "toy_molecules")
        drug_encoder: Node = drug_encoder_slot("toy_visits")

    def forward(self, batch: Any) -> torch.Tensor:
        return torch.zeros(1)


class ToyParts:
    @medtoolkit.hookimpl
    def register_datasets(self, register: Register) -> None:
        register("toy_data", ToyData)

    @medtoolkit.hookimpl
    def register_encoders(self, register: Register) -> None:
        register("toy_visits", ToyVisitEncoder)
        register("toy_molecules", ToyMoleculeEncoder)
        register("toy_fingerprints", ToyFingerprintEncoder)
        register("toy_not_a_drug_encoder", ToyNotADrugEncoder)

    @medtoolkit.hookimpl
    def register_memories(self, register: Register) -> None:
        register("toy_drug_memory", ToyDrugMemory)

    @medtoolkit.hookimpl
    def register_recommenders(self, register: Register) -> None:
        register("toy_recommender", ToyRecommender)
        register("toy_mixed_up_defaults", ToyMixedUpDefaults)


@pytest.fixture(scope="module", autouse=True)
def host() -> PluginHost:
    """The host; registering sets each toy's ``registered_name``, which messages show."""
    return PluginHost(load_entry_points=False, extra_plugins=(("toy-parts", "1.0", ToyParts()),))


def run_config(model: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": {"type": "toy_data"}, "model": model}


def errors_of(raw: dict[str, Any], host: PluginHost) -> list[ConfigError]:
    with pytest.raises(ConfigValidationError) as caught:
        validate_config(raw, host, source="run.yaml")
    return caught.value.errors


#: what the host's registered encoders fit, in the messages' order (sorted by name)
VISIT_FIT = "gru, toy_visits"
DRUG_FIT = "toy_molecules, toy_not_a_drug_encoder"
IN_DRUG_SLOT = "this slot takes a drug encoder (consumes molecules)"
IN_VISIT_SLOT = "this slot takes a visit encoder (consumes visits)"


# ---------------------------------------------------------------------------- declaring slots
def test_slot_stores_what_it_accepts() -> None:
    assert slot_kind(ToyRecommender.Params, "drug_encoder") == "encoder"
    assert slot_consumes(ToyRecommender.Params, "drug_encoder") == DRUG_INPUTS == ("molecules",)
    extra = ToyRecommender.Params.model_fields["drug_encoder"].json_schema_extra
    assert extra == {"slot": "encoder", "consumes": ["molecules"]}


def test_an_encoder_slot_that_declares_nothing_takes_visit_encoders() -> None:
    assert slot_consumes(ToyRecommender.Params, "encoder") == VISIT_INPUTS == ("visits",)
    assert ToyRecommender.Params.model_fields["encoder"].json_schema_extra == {"slot": "encoder"}


def test_a_slot_of_another_kind_that_declares_nothing_takes_any_component() -> None:
    assert slot_consumes(ToyRecommender.Params, "memory") is None
    assert slot_mismatch(ToyRecommender.Params, "memory", ToyDrugMemory) is None


def test_slot_accepts_several_inputs() -> None:
    class Wide(Params):
        drugs: Node = slot("encoder", consumes=("molecules", "fingerprints"))
        one: Node = slot("encoder", consumes="fingerprints")

    assert slot_consumes(Wide, "drugs") == ("molecules", "fingerprints")
    assert slot_consumes(Wide, "one") == ("fingerprints",)
    assert slot_mismatch(Wide, "drugs", ToyFingerprintEncoder) is None
    assert slot_mismatch(Wide, "drugs", ToyVisitEncoder) == (
        "encoder 'toy_visits' consumes visits; this slot takes an encoder (consumes molecules or fingerprints)"
    )


@pytest.mark.parametrize("consumes", [(), "", ("molecules", 3)])
def test_slot_refuses_an_empty_or_odd_consumes(consumes: Any) -> None:
    with pytest.raises(ValueError) as caught:
        slot("encoder", consumes=consumes)
    assert str(caught.value) == f"consumes must be a non-empty string or tuple of strings, got {consumes!r}"


def test_drug_encoder_slot_defaults() -> None:
    class Defaulted(Params):
        drugs: Node = drug_encoder_slot("toy_molecules")
        required: Node = drug_encoder_slot()  # the core names no drug encoder: required by default

    field = Defaulted.model_fields["drugs"]
    assert field.get_default(call_default_factory=True).type == "toy_molecules"
    assert field.description == "a drug encoder node {type: <registered encoder consuming molecules>, ...}"
    assert Defaulted.model_fields["required"].is_required()
    assert slot_consumes(Defaulted, "required") == DRUG_INPUTS


def test_slot_mismatch_refuses_a_plain_parameter() -> None:
    class Plain(Params):
        width: int = 3

    with pytest.raises(ValueError) as caught:
        slot_mismatch(Plain, "width", ToyVisitEncoder)
    assert str(caught.value).endswith("Plain.width is not a slot")


# ---------------------------------------------------------------------------- the message
def test_slot_mismatch_both_ways_without_and_with_the_fitting_names(host: PluginHost) -> None:
    params = ToyRecommender.Params
    assert slot_mismatch(params, "drug_encoder", ToyMoleculeEncoder) is None
    assert slot_mismatch(params, "encoder", ToyVisitEncoder) is None
    without_host = slot_mismatch(params, "drug_encoder", ToyVisitEncoder)
    assert without_host == f"encoder 'toy_visits' consumes visits; {IN_DRUG_SLOT}"
    assert slot_mismatch(params, "encoder", ToyMoleculeEncoder, host) == (
        f"encoder 'toy_molecules' consumes molecules; {IN_VISIT_SLOT}: {VISIT_FIT}"
    )
    assert slot_mismatch(params, "drug_encoder", ToyFingerprintEncoder, host) == (
        f"encoder 'toy_fingerprints' consumes fingerprints; {IN_DRUG_SLOT}: {DRUG_FIT}"
    )


def test_slot_mismatch_names_a_component_that_declares_nothing() -> None:
    class Anything(Params):
        memory: Node = slot("memory", consumes="molecules")

    assert slot_mismatch(Anything, "memory", ToyDrugMemory) == (
        "memory 'toy_drug_memory' declares nothing it consumes; this slot takes a memory (consumes molecules)"
    )


def test_an_empty_fitting_list_says_so() -> None:
    class Rare(Params):
        drugs: Node = slot("encoder", consumes="spectra")

    bare = PluginHost(load_entry_points=False)
    assert slot_mismatch(Rare, "drugs", ToyVisitEncoder, bare) == (
        "encoder 'toy_visits' consumes visits; this slot takes an encoder (consumes spectra): none registered"
    )


# ---------------------------------------------------------------------------- medtoolkit validate
def test_the_default_drug_encoder_slot_resolves(host: PluginHost) -> None:
    config = validate_config(run_config({"type": "toy_recommender"}), host)
    model = config.model.params
    assert model.encoder.component is ToyVisitEncoder and model.encoder.params.width == 6
    assert model.drug_encoder.component is ToyMoleculeEncoder and model.drug_encoder.params.width == 3
    nested = model.memory.params.drug_encoder
    assert nested.component is ToyMoleculeEncoder and nested.params.width == 2


def test_validate_rejects_encoders_in_the_wrong_slots_all_at_once(host: PluginHost) -> None:
    model = {
        "type": "toy_recommender",
        "encoder": {"type": "toy_molecules"},
        "drug_encoder": {"type": "gru"},
        "memory": {"type": "toy_drug_memory", "drug_encoder": {"type": "toy_fingerprints"}},
    }
    errors = errors_of(run_config(model), host)
    assert [(e.path, e.message, e.plugin) for e in errors] == [
        ("model.encoder", f"encoder 'toy_molecules' consumes molecules; {IN_VISIT_SLOT}: {VISIT_FIT}", "toy-parts"),
        ("model.drug_encoder", f"encoder 'gru' consumes visits; {IN_DRUG_SLOT}: {DRUG_FIT}", "toy-parts"),
        (
            "model.memory.drug_encoder",
            f"encoder 'toy_fingerprints' consumes fingerprints; {IN_DRUG_SLOT}: {DRUG_FIT}",
            "toy-parts",
        ),
    ]


def test_a_mismatch_is_reported_beside_the_other_errors(host: PluginHost) -> None:
    model = {"type": "toy_recommender", "drug_encoder": {"type": "toy_visits"}, "encoder": {"width": 0}}
    errors = errors_of(run_config(model), host)
    assert [e.path for e in errors] == ["model.drug_encoder", "model.encoder.width"]
    assert errors[1].message.startswith("Input should be greater than or equal to 1")


def test_validate_rejects_mixed_up_default_children_all_at_once(host: PluginHost) -> None:
    errors = errors_of(run_config({"type": "toy_mixed_up_defaults"}), host)
    assert [str(e) for e in errors] == [
        f"model.encoder: encoder 'toy_molecules' consumes molecules; {IN_VISIT_SLOT}: {VISIT_FIT} [toy-parts]",
        f"model.drug_encoder: encoder 'toy_visits' consumes visits; {IN_DRUG_SLOT}: {DRUG_FIT} [toy-parts]",
    ]


def test_an_unknown_default_drug_encoder_points_to_the_registered_names(host: PluginHost) -> None:
    class NeedsPluginDefault(Recommender):
        class Params(Params):
            drug_encoder: Node = drug_encoder_slot("mpnn")

        def forward(self, batch: Any) -> torch.Tensor:
            return torch.zeros(1)

    class Plugin:
        @medtoolkit.hookimpl
        def register_recommenders(self, register: Register) -> None:
            register("toy_needs_default", NeedsPluginDefault)

    local = PluginHost(load_entry_points=False, extra_plugins=(("toy-parts", "1.0", ToyParts()), ("p", "1", Plugin())))
    (error,) = errors_of(run_config({"type": "toy_needs_default"}), local)
    assert error.path == "model.drug_encoder.type"
    assert error.message.startswith("unknown encoder 'mpnn'.")


# ---------------------------------------------------------------------------- build_drug_encoder
def test_build_drug_encoder_builds_the_validated_child(host: PluginHost) -> None:
    config = validate_config(run_config({"type": "toy_recommender", "drug_encoder": {"width": 7}}), host)
    encoder = build_drug_encoder(config.model.params.drug_encoder, None, host=host)
    assert isinstance(encoder, ToyMoleculeEncoder)
    assert encoder().shape == (5, 7)
    memory = config.model.params.memory.build(None, query_dim=4)
    assert isinstance(memory.drugs, ToyMoleculeEncoder) and memory.output_dim == 2


def test_build_drug_encoder_resolves_a_bare_node(host: PluginHost) -> None:
    encoder = build_drug_encoder(Node(type="toy_molecules", n_drugs=2), None, host=host)
    assert encoder().shape == (2, 3)


def test_build_drug_encoder_raises_the_validate_message(host: PluginHost) -> None:
    with pytest.raises(TypeError) as caught:
        build_drug_encoder(Node(type="gru"), None, host=host)
    expected = slot_mismatch(ToyRecommender.Params, "drug_encoder", host.registry("encoder").get("gru").obj, host)
    assert str(caught.value) == expected == f"encoder 'gru' consumes visits; {IN_DRUG_SLOT}: {DRUG_FIT}"
    with pytest.raises(TypeError) as caught:
        build_drug_encoder(Node.of(ToyFingerprintEncoder), None, host=host)
    assert str(caught.value) == f"encoder 'toy_fingerprints' consumes fingerprints; {IN_DRUG_SLOT}: {DRUG_FIT}"


def test_build_drug_encoder_refuses_a_molecule_encoder_that_is_not_a_drug_encoder(host: PluginHost) -> None:
    with pytest.raises(TypeError) as caught:
        build_drug_encoder(Node.of(ToyNotADrugEncoder), None, host=host)
    assert str(caught.value) == (
        "encoder 'toy_not_a_drug_encoder' consumes molecules but is not a medtoolkit.components.base.DrugEncoder"
    )


def test_a_mismatch_in_a_constructor_names_the_parent() -> None:
    with pytest.raises(ValueError) as refused:
        Node.of(ToyDrugMemory, drug_encoder=Node.of(ToyVisitEncoder))  # refused at once in Python
    assert str(refused.value) == (
        f"ToyDrugMemory.Params: drug_encoder: encoder 'toy_visits' consumes visits; {IN_DRUG_SLOT}"
    )
    node = Node(type="toy_drug_memory")  # params made without validation: the constructor still checks
    node.bind(ToyDrugMemory, ToyDrugMemory.Params.model_construct(drug_encoder=Node.of(ToyVisitEncoder)))
    with pytest.raises(ComponentBuildError) as caught:
        node.build(None)  # the fitting names come from the default host: not compared
    prefix = f"component 'toy_drug_memory': encoder 'toy_visits' consumes visits; {IN_DRUG_SLOT}: "
    assert str(caught.value).startswith(prefix)
    assert isinstance(caught.value.__cause__, TypeError)
