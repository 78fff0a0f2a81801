"""Parts built in Python, written back as a run config (``config.yaml`` of a Python run)."""

from __future__ import annotations

from typing import Any

import pytest

from medtoolkit.components.encoders.gru import GRUEncoder
from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.memories.gcn import GCNMemory
from medtoolkit.components.params import Node
from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.config import EvalParams, TrainerParams
from medtoolkit.data.loaders.synthetic import SyntheticDataset
from medtoolkit.plugins import default_host
from medtoolkit.tasks.medication import MedicationRecommendationTask
from medtoolkit.testing.fake import fake_ehr, fake_schema
from medtoolkit.training.parts_config import component_config, python_run_config, registered_name


class LocalLoss(BCELoss):
    """Registered by no plugin."""


@pytest.fixture(scope="module")
def parts() -> dict[str, Any]:
    schema = fake_schema(fake_ehr())
    return {
        "dataset": SyntheticDataset(SyntheticDataset.Params(n_patients=50)),
        "task": MedicationRecommendationTask(MedicationRecommendationTask.Params(seeds=[0, 1])),
        "model": GAMENet(GAMENet.Params(hidden_dim=16, encoder=Node.of(GRUEncoder, embedding_dim=8),
                                        memory=Node.of(GCNMemory)), schema),
        "losses": [BCELoss(BCELoss.Params(weight=0.5), schema)],
    }


def run_config(parts: dict[str, Any], **changes: Any) -> tuple[dict[str, Any], bool]:
    return python_run_config(**{"name": "n", "seed": 4, "device": "cpu", "trainer": TrainerParams(epochs=3),
                                "eval": EvalParams(), "host": default_host(), **parts, **changes})


def test_registered_name_comes_from_the_host() -> None:
    host = default_host()
    assert registered_name(GAMENet, host) == "gamenet" and registered_name(GRUEncoder, host) == "gru"
    assert registered_name(LocalLoss, host) is None


def test_children_made_with_node_of_get_their_registered_names(parts: dict[str, Any]) -> None:
    config = component_config(parts["model"], default_host())
    assert config is not None
    assert config["type"] == "gamenet" and config["hidden_dim"] == 16
    assert config["encoder"]["type"] == "gru" and config["encoder"]["embedding_dim"] == 8
    assert config["memory"]["type"] == "gcn"


def test_registered_parts_form_a_valid_run_config(parts: dict[str, Any]) -> None:
    config, valid = run_config(parts)
    assert valid
    assert config["dataset"]["n_patients"] == 50 and config["task"]["seeds"] == [0, 1]
    assert config["losses"] == [{"type": "bce", "weight": 0.5}]
    assert config["trainer"]["epochs"] == 3 and (config["name"], config["seed"], config["device"]) == ("n", 4, "cpu")


def test_an_unregistered_part_or_no_dataset_is_described_but_not_valid(parts: dict[str, Any]) -> None:
    schema = parts["model"].schema
    config, valid = run_config(parts, losses=[LocalLoss(LocalLoss.Params(), schema)])
    assert not valid and config["losses"] == [{"class": f"{__name__}.LocalLoss"}]
    config, valid = run_config(parts, dataset=None)
    assert not valid and config["dataset"] is None
