"""The plugin's registrations and packaging (entry point, names, kinds, dependencies)."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points

import medtoolkit_dnmdr
import medtoolkit_dnmdr.plugin
import medtoolkit_molecule.plugin
from medtoolkit.components.base import Encoder, Memory, Recommender
from medtoolkit.plugins import PluginHost
from medtoolkit_dnmdr import DNMDR, EvolveGATEncoder, GATViewsMemory


def names(host: PluginHost, kind: str) -> dict[str, type]:
    return {entry.name: entry.obj for entry in host.registry(kind)}


def test_registers_evolvegat_gat_views_dnmdr_and_presets() -> None:
    host = PluginHost(load_entry_points=False, extra_plugins=(
        ("medtoolkit-molecule", "0.1.0", medtoolkit_molecule.plugin),
        ("medtoolkit-dnmdr", "0.1.0", medtoolkit_dnmdr.plugin)))
    assert names(host, "encoder")["evolvegat"] is EvolveGATEncoder
    assert names(host, "memory")["gat_views"] is GATViewsMemory
    assert names(host, "recommender")["dnmdr"] is DNMDR
    assert {"dnmdr", "dnmdr_prob", "dnmdr_lstm", "dnmdr_internal", "dnmdr_interactive", "dnmdr_dynn",
            "dnmdr_dim256"} <= set(names(host, "preset"))
    assert issubclass(EvolveGATEncoder, Encoder) and EvolveGATEncoder.consumes == "visits"
    assert issubclass(GATViewsMemory, Memory) and issubclass(DNMDR, Recommender)


def test_entry_point_and_distribution() -> None:
    (point,) = [p for p in entry_points(group="medtoolkit") if p.name == "dnmdr"]
    assert point.value == "medtoolkit_dnmdr.plugin"
    meta = distribution("medtoolkit-dnmdr")
    assert meta.version == medtoolkit_dnmdr.__version__ == "0.1.0"
    requires = " ".join(meta.requires or []).replace(">=", "")
    for dependency in ("medtoolkit0.1", "medtoolkit-molecule0.1", "torch2.1", "pydantic2.5"):
        assert dependency in requires.replace(" ", ""), dependency


def test_installed_host_loads_the_plugin() -> None:
    host = PluginHost()
    assert not [info.name for info in host.broken]
    assert "dnmdr" in names(host, "recommender") and "evolvegat" in names(host, "encoder")
