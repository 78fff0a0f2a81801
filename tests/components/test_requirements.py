"""Drug knowledge needed by components versus provided by the dataset, checked by validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtoolkit.components.requirements import knowledge_errors, walk_nodes
from medtoolkit.config import ConfigValidationError, validate_config
from medtoolkit.plugins import PluginHost
from medtoolkit.presets import preset_config


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(load_entry_points=False)


def gamenet_on_pickles(host: PluginHost, ddi: str | None) -> dict:
    raw = preset_config("gamenet", host=host)
    raw["dataset"] = {"type": "safedrug_pickle", "root": "/nowhere", "ddi_adjacency": ddi}
    return raw


def test_gamenet_on_data_without_ddi_is_refused_before_loading(host: PluginHost) -> None:
    # the root does not exist: the refusal comes from the declarations alone, no file is read
    with pytest.raises(ConfigValidationError) as caught:
        validate_config(gamenet_on_pickles(host, "none"), host, source="run.yaml")
    errors = {error.path: error.message for error in caught.value.errors}
    assert errors == {
        "model.memory": "memory 'gcn' needs a DDI matrix, but dataset 'safedrug_pickle' as configured has none",
        "losses.2": "loss 'ddi' needs a DDI matrix, but dataset 'safedrug_pickle' as configured has none",
    }


def test_without_ddi_parts_the_same_data_validates(host: PluginHost) -> None:
    raw = gamenet_on_pickles(host, None)
    raw["model"]["memory"]["ddi_in_memory"] = False
    raw["losses"] = raw["losses"][:2]
    config = validate_config(raw, host)
    assert knowledge_errors(config) == []


def test_a_dataset_that_cannot_tell_before_loading_is_not_refused(host: PluginHost) -> None:
    # the built-in demo (mimic3) does not declare what it provides: checked at build time instead
    config = validate_config(preset_config("gamenet", host=host), host)
    assert config.dataset.component.knowledge_provided(config.dataset.params) is None
    assert knowledge_errors(config) == []


def test_walk_nodes_names_every_child_with_its_path(host: PluginHost) -> None:
    config = validate_config(preset_config("gamenet", host=host), host)
    assert [(path, node.type) for path, node in walk_nodes(config.model, "model")] == [
        ("model", "gamenet"), ("model.encoder", "gru"), ("model.memory", "gcn"),
    ]


def test_the_cli_prints_both_refusals(tmp_path: Path, host: PluginHost, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from medtoolkit.cli import main

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(gamenet_on_pickles(host, "null")), encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == f"error: {path}: 2 errors (listed above)"
    assert "  - model.memory: memory 'gcn' needs a DDI matrix" in lines[0]
