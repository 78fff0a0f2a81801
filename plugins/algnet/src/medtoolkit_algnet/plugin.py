"""Hook implementations: what ``medtoolkit-algnet`` registers with the core."""

from __future__ import annotations

from pathlib import Path

import medtoolkit
from medtoolkit.config import load_yaml
from medtoolkit.hookspecs import Register

from medtoolkit_algnet.ablations import ABLATIONS, ablation_config
from medtoolkit_algnet.encoder import DualSelfAttentionEncoder
from medtoolkit_algnet.memory import LightGCNMemory
from medtoolkit_algnet.recommender import ALGNet

PRESET_DIR = Path(__file__).parent / "presets"


@medtoolkit.hookimpl
def register_encoders(register: Register) -> None:
    register("dual_self_attention", DualSelfAttentionEncoder)


@medtoolkit.hookimpl
def register_memories(register: Register) -> None:
    register("lightgcn", LightGCNMemory)


@medtoolkit.hookimpl
def register_recommenders(register: Register) -> None:
    register("algnet", ALGNet)


@medtoolkit.hookimpl
def register_presets(register: Register) -> None:
    """``algnet`` (the paper's settings) and its Table 4-5 ablations derived from it."""
    base_path = PRESET_DIR / "algnet.yaml"
    register("algnet", base_path)
    base = load_yaml(base_path)
    for ablation in ABLATIONS:
        register(ablation.name, ablation_config(ablation, base))
