"""The plugin's registrations and packaging (entry point, names, kinds)."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points

import medtoolkit_molecule
import medtoolkit_molecule.plugin
from medtoolkit.components.base import DrugEncoder, Loss, Recommender
from medtoolkit.plugins import PluginHost
from medtoolkit_molecule import MPNNEncoder, SafeDrug
from medtoolkit_molecule.loss import ControllableDDILoss


def names(host: PluginHost, kind: str) -> dict[str, type]:
    return {entry.name: entry.obj for entry in host.registry(kind)}


def test_registers_mpnn_safedrug_controllable_ddi_and_presets() -> None:
    host = PluginHost(load_entry_points=False,
                      extra_plugins=(("medtoolkit-molecule", "0.1.0", medtoolkit_molecule.plugin),))
    assert names(host, "encoder")["mpnn"] is MPNNEncoder
    assert names(host, "recommender")["safedrug"] is SafeDrug
    assert names(host, "loss")["controllable_ddi"] is ControllableDDILoss
    assert {"safedrug", "safedrug_frozen_mpnn", "gamenet_controllable_ddi"} <= set(names(host, "preset"))
    assert issubclass(MPNNEncoder, DrugEncoder) and MPNNEncoder.consumes == "molecules"
    assert issubclass(SafeDrug, Recommender) and issubclass(ControllableDDILoss, Loss)


def test_entry_point_and_distribution() -> None:
    (point,) = [p for p in entry_points(group="medtoolkit") if p.name == "molecule"]
    assert point.value == "medtoolkit_molecule.plugin"
    meta = distribution("medtoolkit-molecule")
    assert meta.version == medtoolkit_molecule.__version__ == "0.1.0"
    requires = " ".join(meta.requires or [])
    for dependency in ("medtoolkit>=0.1", "torch>=2.1", "torch-geometric>=2.4", "rdkit>=2023.9", "pydantic>=2.5"):
        assert dependency.replace(">=", "") in requires.replace(">=", ""), dependency


def test_installed_host_loads_the_plugin() -> None:
    host = PluginHost()
    assert not [info.name for info in host.broken]
    assert "mpnn" in names(host, "encoder") and "safedrug" in names(host, "recommender")
