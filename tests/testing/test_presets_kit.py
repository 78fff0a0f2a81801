"""medtoolkit.testing.presets.config_leaves: leaf paths of raw run configs."""

from __future__ import annotations

from medtoolkit.testing.presets import config_leaves


def test_mappings_and_lists_of_nodes_are_walked_other_lists_are_leaves() -> None:
    raw = {"name": "x", "task": {"seeds": [0, 1], "k": 3},
           "losses": [{"type": "bce"}, {"type": "ddi", "weight": 0.5}], "stages": []}
    assert config_leaves(raw) == {
        "name": "x", "task.seeds": [0, 1], "task.k": 3, "losses.0.type": "bce", "losses.1.type": "ddi",
        "losses.1.weight": 0.5, "stages": []}


def test_a_leaf_is_returned_under_its_prefix() -> None:
    assert config_leaves(7, "trainer.epochs") == {"trainer.epochs": 7}
    assert config_leaves({}) == {}
