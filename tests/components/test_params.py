"""Child slots in the Python path: :class:`~medtoolkit.components.params.Node` and ``Params`` checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from medtoolkit.components.encoders.gru import GRUEncoder
from medtoolkit.components.memories.gcn import GCNMemory
from medtoolkit.components.params import Node
from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.plugins import default_host

HOW = "use Node.of(GRUEncoder, ...) for a slot (the parent builds its children from nodes)"


def only_message(error: ValidationError) -> str:
    """The one message of a pydantic error, without pydantic's ``Value error, `` prefix."""
    (item,) = error.errors()
    return str(item["msg"]).removeprefix("Value error, ")


def test_a_class_in_a_slot_says_to_use_node_of() -> None:
    with pytest.raises(ValidationError) as refused:
        GAMENet.Params(encoder=GRUEncoder)  # type: ignore[arg-type]
    assert refused.value.errors()[0]["loc"] == ("encoder",)
    assert only_message(refused.value) == f"got the class GRUEncoder; {HOW}"


def test_a_built_component_in_a_slot_says_to_use_node_of() -> None:
    encoder = object.__new__(GRUEncoder)  # a built encoder needs a schema; the type is what counts
    with pytest.raises(ValidationError) as refused:
        GAMENet.Params(encoder=encoder)  # type: ignore[arg-type]
    assert only_message(refused.value) == f"got a built GRUEncoder object; {HOW}"


def test_node_of_names_the_class_of_an_unknown_key() -> None:
    with pytest.raises(ValueError) as refused:
        Node.of(GRUEncoder, hiden_dim=3)
    assert str(refused.value) == (
        "GRUEncoder.Params: hiden_dim: unknown key; did you mean 'hidden_dim'? "
        "(valid keys: embedding_dim, hidden_dim, output_dim, dropout, pooling, vocabularies, rnn)"
    )


def test_node_of_refuses_something_that_is_not_a_component() -> None:
    with pytest.raises(TypeError) as refused:
        Node.of(GAMENet.Params)
    assert str(refused.value) == "Node.of() takes a component class with a nested Params, got the class GAMENet.Params"


def test_a_component_of_another_kind_is_refused_in_a_slot() -> None:
    default_host()  # components are named by their registered names ("gcn"), as in a run file
    with pytest.raises(ValidationError) as refused:
        GAMENet.Params(encoder=Node.of(GCNMemory), memory=Node.of(GRUEncoder))
    assert only_message(refused.value) == (
        "encoder: 'gcn' is a memory; this slot takes an encoder; "
        "memory: 'gru' is an encoder; this slot takes a memory"
    )


def test_nodes_of_the_right_kind_and_unresolved_nodes_are_accepted() -> None:
    params = GAMENet.Params(encoder=Node.of(GRUEncoder, hidden_dim=8), memory=Node(type="gcn"))
    assert params.encoder.component is GRUEncoder and params.encoder.params.hidden_dim == 8
    assert GAMENet.Params().encoder.type == "gru"  # defaults stay unresolved names


def test_the_wrong_params_class_is_named_by_its_qualified_name() -> None:
    with pytest.raises(TypeError) as refused:
        GAMENet(GRUEncoder.Params(), None)  # type: ignore[arg-type]
    assert str(refused.value) == "GAMENet expects GAMENet.Params, got GRUEncoder.Params"


def test_node_of_refuses_a_built_component() -> None:
    encoder = object.__new__(GRUEncoder)
    with pytest.raises(TypeError) as refused:
        Node.of(encoder)  # type: ignore[arg-type]
    assert str(refused.value) == "Node.of() takes a component class with a nested Params, got a GRUEncoder object"


def test_a_nested_slot_mismatch_names_the_parent_params() -> None:
    default_host()
    with pytest.raises(ValueError) as refused:
        Node.of(GAMENet, encoder=Node.of(GCNMemory))
    assert str(refused.value) == "GAMENet.Params: encoder: 'gcn' is a memory; this slot takes an encoder"
