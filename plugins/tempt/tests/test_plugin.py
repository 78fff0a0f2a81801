"""The plugin's registrations and packaging (entry point, names, kinds, dependencies)."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points

import medtoolkit_tempt
import medtoolkit_tempt.plugin
from medtoolkit.components.base import Adapter, Encoder, Loss, Recommender
from medtoolkit.plugins import PluginHost
from medtoolkit_tempt import (
    ContrastiveLoss,
    HospitalPromptAdapter,
    MaskedCodeLoss,
    SetTransformerEncoder,
    TEMPTRecommender,
)

PRESETS = {"tempt", "tempt_finetune", "tempt_finetune_freeze", "tempt_lora", "tempt_single_train",
           "tempt_full_train"}


def names(host: PluginHost, kind: str) -> dict[str, type]:
    return {entry.name: entry.obj for entry in host.registry(kind)}


def test_registers_every_part_and_preset() -> None:
    host = PluginHost(load_entry_points=False,
                      extra_plugins=(("medtoolkit-tempt", "0.1.0", medtoolkit_tempt.plugin),))
    assert names(host, "encoder")["set_transformer"] is SetTransformerEncoder
    assert names(host, "recommender")["tempt"] is TEMPTRecommender
    assert names(host, "loss")["masked_code"] is MaskedCodeLoss
    assert names(host, "loss")["contrastive"] is ContrastiveLoss
    assert names(host, "adapter")["hospital_prompt"] is HospitalPromptAdapter
    assert PRESETS <= set(names(host, "preset"))
    assert issubclass(SetTransformerEncoder, Encoder) and SetTransformerEncoder.consumes == "visits"
    assert issubclass(TEMPTRecommender, Recommender) and issubclass(HospitalPromptAdapter, Adapter)
    assert issubclass(MaskedCodeLoss, Loss) and issubclass(ContrastiveLoss, Loss)


def test_entry_point_and_distribution() -> None:
    (point,) = [p for p in entry_points(group="medtoolkit") if p.name == "tempt"]
    assert point.value == "medtoolkit_tempt.plugin"
    meta = distribution("medtoolkit-tempt")
    assert meta.version == medtoolkit_tempt.__version__ == "0.1.0"
    requires = " ".join(meta.requires or []).replace(">=", "").replace(" ", "")
    for dependency in ("medtoolkit0.1", "torch2.1", "pydantic2.5"):
        assert dependency in requires, dependency


def test_installed_host_loads_the_plugin() -> None:
    host = PluginHost()
    assert "medtoolkit-tempt" not in [info.name for info in host.broken]
    assert "tempt" in names(host, "recommender") and "hospital_prompt" in names(host, "adapter")
