"""The plugin's registrations and packaging (entry point, names, kinds, dependencies)."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points

import medtoolkit_dpr
import medtoolkit_dpr.plugin
from medtoolkit.plugins import PluginHost
from medtoolkit_dpr import BPRLoss, DPRRecommender, EdgeTypeLoss, NCFRecommender, PackageBPRLoss
from medtoolkit_dpr.presets import VARIANTS


def names(host: PluginHost, kind: str) -> dict[str, type]:
    return {entry.name: entry.obj for entry in host.registry(kind)}


def test_registers_every_part_and_preset() -> None:
    host = PluginHost(load_entry_points=False, extra_plugins=(("medtoolkit-dpr", "0.1.0", medtoolkit_dpr.plugin),))
    assert names(host, "recommender")["ncf"] is NCFRecommender
    assert names(host, "recommender")["dpr"] is DPRRecommender
    losses = names(host, "loss")
    assert (losses["bpr"], losses["package_bpr"], losses["edge_type"]) == (BPRLoss, PackageBPRLoss, EdgeTypeLoss)
    assert {v.name for v in VARIANTS} <= set(names(host, "preset"))


def test_entry_point_and_distribution() -> None:
    (point,) = [p for p in entry_points(group="medtoolkit") if p.name == "dpr"]
    assert point.value == "medtoolkit_dpr.plugin"
    meta = distribution("medtoolkit-dpr")
    assert meta.version == medtoolkit_dpr.__version__ == "0.1.0"
    requires = " ".join(meta.requires or []).replace(">=", "").replace(" ", "")
    for dependency in ("medtoolkit0.1", "torch2.1", "torch-geometric2.4", "pydantic2.5"):
        assert dependency in requires, dependency


def test_installed_host_loads_the_plugin() -> None:
    host = PluginHost()
    assert "medtoolkit-dpr" not in [info.name for info in host.broken]
    assert "dpr" in names(host, "recommender") and "package_bpr" in names(host, "loss")
