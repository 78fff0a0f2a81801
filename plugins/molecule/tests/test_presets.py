"""Tests of the medtoolkit-molecule presets: registration, validation, derivation, a 1-epoch demo run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import medtoolkit
import medtoolkit_molecule.plugin
from medtoolkit.cli import main
from medtoolkit.config import validate_config
from medtoolkit.plugins import PluginHost
from medtoolkit.presets import preset_config
from medtoolkit_molecule.loss import ControllableDDILoss
from medtoolkit_molecule.presets import algnet_available, preset_sources

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRESETS = ["gamenet_controllable_ddi", "safedrug", "safedrug_frozen_mpnn"] + (
    ["algnet_controllable_ddi"] if algnet_available() else [])


@pytest.fixture(scope="module")
def host() -> PluginHost:
    plugins: list[tuple[str, str, Any]] = [("medtoolkit-molecule", "0.1.0", medtoolkit_molecule.plugin)]
    if algnet_available():
        import medtoolkit_algnet.plugin

        plugins.append(("medtoolkit-algnet", "0.1.0", medtoolkit_algnet.plugin))
    return PluginHost(load_entry_points=False, extra_plugins=tuple(plugins))


def test_registers_the_presets(host: PluginHost) -> None:
    (info,) = [p for p in host.plugins if p.name == "medtoolkit-molecule"]
    assert info.status == "ok", info.details
    assert sorted(info.registered["preset"]) == sorted(PRESETS)
    assert sorted(preset_sources()) == sorted(PRESETS)
    assert host.registry("loss").get("controllable_ddi").obj is ControllableDDILoss


@pytest.mark.parametrize("name", PRESETS)
def test_presets_validate(name: str, host: PluginHost) -> None:
    raw = preset_config(name, host=host)
    assert raw["name"] == name
    config = validate_config(raw, host=host, source=name)
    assert [loss.type for loss in config.losses] == ["controllable_ddi"]


@pytest.mark.parametrize("name", PRESETS)
def test_cli_validate(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``medtoolkit validate <preset>`` through the installed entry points."""
    assert main(["validate", name]) == 0
    assert f"OK: {name}" in capsys.readouterr().out


def test_safedrug_preset_has_the_paper_settings(host: PluginHost) -> None:
    config = validate_config(preset_config("safedrug", host=host), host=host).to_dict()
    (loss,) = config["losses"]
    # the paper's loss, with gamma and the target chosen on validation (paper: 0.0005 and 0.06)
    assert {k: loss[k] for k in ("alpha", "ddi_weight", "reduction", "target", "kp", "threshold")} == {
        "alpha": 0.95, "ddi_weight": 0.0025, "reduction": "sum", "target": 0.055, "kp": 0.05, "threshold": 0.5}
    assert loss["granularity"] == "visit" and loss["below_target"] == "prediction"
    model = config["model"]
    assert {k: model["encoder"][k] for k in ("type", "embedding_dim", "hidden_dim", "output_dim", "dropout",
                                              "pooling")} == {
        "type": "gru", "embedding_dim": 64, "hidden_dim": 64, "output_dim": 64, "dropout": 0.5, "pooling": "sum"}
    assert {k: model["drug_encoder"][k] for k in ("type", "dim", "layers", "radius", "trainable")} == {
        "type": "mpnn", "dim": 64, "layers": 2, "radius": 2, "trainable": True}
    assert config["trainer"]["epochs"] == 80 and config["seed"] == 1203  # chosen on validation (public code: 50)
    assert config["eval"]["threshold"] == 0.5
    assert config["dataset"]["type"] == "mimic3"  # the built-in demo, like the core gamenet preset


def _resolved(name: str, host: PluginHost) -> dict[str, Any]:
    resolved = validate_config(preset_config(name, host=host), host=host).to_dict()
    resolved.pop("name")
    return resolved


def test_frozen_mpnn_changes_only_trainable(host: PluginHost) -> None:
    base, frozen = _resolved("safedrug", host), _resolved("safedrug_frozen_mpnn", host)
    assert frozen["model"]["drug_encoder"].pop("trainable") is False
    assert base["model"]["drug_encoder"].pop("trainable") is True
    assert frozen == base


@pytest.mark.parametrize("model", ["gamenet", "algnet"])
def test_controllable_ddi_presets_change_only_the_losses(model: str, host: PluginHost) -> None:
    if model == "algnet" and not algnet_available():
        pytest.skip("medtoolkit-algnet is not installed")
    base, swapped = _resolved(model, host), _resolved(f"{model}_controllable_ddi", host)
    assert [loss["type"] for loss in base["losses"]] == ["bce", "multilabel_margin", "ddi"]
    (loss,) = swapped.pop("losses")
    base.pop("losses")
    assert swapped == base
    # GAMENet's 0.9 BCE / 0.1 margin stay; SafeDrug's controller and DDI term replace the annealing
    # (GAMENet's ddi_weight and kp chosen on validation; algnet keeps SafeDrug's constants)
    expected = (0.005, 0.03) if model == "gamenet" else (0.0005, 0.05)
    assert (loss["alpha"], loss["reduction"], loss["target"], loss["threshold"]) == (0.9, "sum", 0.06, 0.5)
    assert (loss["ddi_weight"], loss["kp"]) == expected


@pytest.mark.parametrize("name", PRESETS)
def test_one_epoch_on_the_demo(name: str, host: PluginHost, tmp_path: Path) -> None:
    """Each preset trains for one epoch on the built-in MIMIC-III demo and is scored."""
    raw = preset_config(name, host=host)
    raw["device"] = "cpu"
    raw["trainer"].update(epochs=1, progress="none")
    raw["eval"].update(bootstrap_rounds=2)
    experiment = medtoolkit.build(raw, host=host)
    result = experiment.run(out_dir=tmp_path, progress=False)
    test = result.metrics["test"]
    assert 0.0 <= test["jaccard"]["mean"] <= 1.0
    assert test["ddi_rate"]["mean"] is not None
    assert len(result.metrics["epoch_seconds"]) == 1



def test_algnet_preset_only_with_the_algnet_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "medtoolkit_algnet" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert sorted(preset_sources()) == ["gamenet_controllable_ddi", "safedrug", "safedrug_frozen_mpnn"]
