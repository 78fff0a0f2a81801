"""The plugin's presets: ``tempt`` (a YAML file) and the paper's comparison rows derived from it.

Each row is the ``tempt`` preset with ``-o``-style overrides of its ``stages`` only, so data,
model, trainer and evaluation stay identical by construction:

* ``tempt_finetune``: the tune stage fine-tunes every parameter (adapter ``finetune``;
  Table 3/7 "TEMPT (finetune)");
* ``tempt_finetune_freeze``: the tune stage trains the output head only (``finetune_freeze``;
  Table 7 "TEMPT (finetune-freeze)");
* ``tempt_lora``: the tune stage trains rank-8 LoRA updates of the encoder's linear layers and
  the head (``lora``, targets ``encoder.*``; Table 5 "TEMPT (LoRA)");
* ``tempt_single_train``: no pre-training; one model per hospital trained from scratch with BCE
  on that hospital's stays (one stage, ``repeat_per: hospital``; "Single-Train");
* ``tempt_full_train``: no stages; one model trained with BCE on every hospital ("Full-Train").

:data:`VARIANTS` carries the paper's numbers for the benchmark tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtoolkit.hookspecs import Register
from medtoolkit.presets import derived_presets

PRESET_DIR = Path(__file__).parent / "presets"
TEMPT_PATH = PRESET_DIR / "tempt.yaml"


@dataclass(frozen=True)
class Variant:
    """One row of the paper's comparison (Tables 3, 5 and 7).

    Attributes:
        name: preset name.
        paper_label: the row's name in the paper.
        paper: the paper's overall ``{metric: value}`` (Table 3, or Table 5 for LoRA; empty
            where the paper gives none).
        paper_groups: Table 7's PRAUC per hospital-size group (``small``, ``medium``,
            ``large``, ``all``; empty where the paper gives none).
        overrides: ``key.path=value`` overrides applied to the ``tempt`` preset.
    """

    name: str
    paper_label: str
    paper: dict[str, float]
    paper_groups: dict[str, float] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()


def _overall(prauc: float, jaccard: float, f1: float) -> dict[str, float]:
    return {"prauc": prauc, "jaccard": jaccard, "f1": f1}


def _groups(small: float, medium: float, large: float, everything: float) -> dict[str, float]:
    return {"small": small, "medium": medium, "large": large, "all": everything}


FULL_MODEL = Variant("tempt", "TEMPT", _overall(0.5468, 0.3318, 0.4790), _groups(0.5509, 0.5439, 0.5406, 0.5468))

VARIANTS: tuple[Variant, ...] = (
    Variant("tempt_finetune", "TEMPT (finetune)", _overall(0.5407, 0.3300, 0.4778),
            _groups(0.5436, 0.5380, 0.5380, 0.5407), ("stages.1.adapter={type: finetune}",)),
    Variant("tempt_finetune_freeze", "TEMPT (finetune-freeze)", {},
            _groups(0.5441, 0.5375, 0.5356, 0.5404), ("stages.1.adapter={type: finetune_freeze}",)),
    Variant("tempt_lora", "TEMPT (LoRA)", _overall(0.5425, 0.3270, 0.4760), {},
            ("stages.1.adapter={type: lora, rank: 8, alpha: 16, targets: ['encoder.*']}",)),
    Variant("tempt_single_train", "Single-Train", _overall(0.5033, 0.2950, 0.4364),
            _groups(0.5045, 0.4996, 0.5080, 0.5033), ("stages=[{name: train, repeat_per: hospital}]",)),
    Variant("tempt_full_train", "Full-Train", _overall(0.4840, 0.2839, 0.4265),
            _groups(0.4766, 0.4908, 0.4913, 0.4840), ("stages=[]",)),
)


def preset_sources() -> dict[str, Path | dict[str, Any]]:
    """Every preset of this plugin by name: the ``tempt`` YAML path or a derived raw config."""
    return derived_presets("tempt", TEMPT_PATH, {variant.name: variant.overrides for variant in VARIANTS})


def register_presets(register: Register) -> None:
    """Register :func:`preset_sources` (called from the plugin's ``register_presets`` hook)."""
    for name, source in preset_sources().items():
        register(name, source)
