"""Hook implementations: what ``medtoolkit-algnet`` registers with the core."""

from __future__ import annotations

from pathlib import Path

import medtoolkit
from medtoolkit.hookspecs import Register

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
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        register(path.stem, path)
