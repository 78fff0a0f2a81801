"""The plugin's presets: ``dnmdr`` (a YAML file), the paper's Table 4 ablations and Table 5 widths.

Each variant is the ``dnmdr`` preset with ``-o``-style overrides that change one part, so data,
losses, trainer and evaluation stay identical by construction:

* ``dnmdr_prob``: fully connected snapshots (no conditional probabilities);
* ``dnmdr_lstm``: one GAT weight for every visit (no LSTM evolution);
* ``dnmdr_internal``: no internal (molecule) view ``o_s``;
* ``dnmdr_interactive``: no EHR/DDI graph attention (``M_ed`` = learned drug embeddings);
* ``dnmdr_dynn``: no dynamic networks: the core ``gru`` encoder (one GRU per diagnoses and
  procedures over pooled code embeddings) in the encoder slot, same widths and dropout;
* ``dnmdr_dim128`` / ``dnmdr_dim256``: every width 128 / 256 (Table 5).

:data:`VARIANTS` carries the paper's numbers for the benchmark tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtoolkit.hookspecs import Register
from medtoolkit.presets import derived_presets

PRESET_DIR = Path(__file__).parent / "presets"
DNMDR_PATH = PRESET_DIR / "dnmdr.yaml"


def _width(dim: int) -> tuple[str, ...]:
    return (f"model.encoder.embedding_dim={dim}", f"model.encoder.hidden_dim={dim}",
            f"model.encoder.output_dim={dim}", f"model.drug_encoder.dim={dim}", f"model.hidden_dim={2 * dim}")


@dataclass(frozen=True)
class Variant:
    """One row of the paper's Table 4 (ablations) or Table 5 (widths).

    Attributes:
        name: preset name.
        paper_label: the row's name in the paper.
        paper_table: 4 or 5.
        paper: the paper's ``{metric: value}`` for the row (jaccard, f1, prauc, ddi_rate, avg_drugs).
        overrides: ``key.path=value`` overrides applied to the ``dnmdr`` preset.
    """

    name: str
    paper_label: str
    paper_table: int
    paper: dict[str, float]
    overrides: tuple[str, ...]


def _paper(jaccard: float, f1: float, prauc: float, ddi: float, drugs: float) -> dict[str, float]:
    return {"jaccard": jaccard, "f1": f1, "prauc": prauc, "ddi_rate": ddi, "avg_drugs": drugs}


FULL_MODEL = Variant("dnmdr", "DNMDR", 4, _paper(0.5241, 0.6787, 0.7749, 0.06058, 19.53), ())

VARIANTS: tuple[Variant, ...] = (
    Variant("dnmdr_prob", "DNMDR_prob", 4, _paper(0.5210, 0.6761, 0.7733, 0.06063, 19.81),
            ("model.encoder.conditional_probability=false",)),
    Variant("dnmdr_lstm", "DNMDR_lstm", 4, _paper(0.5201, 0.6752, 0.7718, 0.06103, 19.76),
            ("model.encoder.evolve=false",)),
    Variant("dnmdr_internal", "DNMDR_internal", 4, _paper(0.5210, 0.6764, 0.7738, 0.06039, 19.80),
            ("model.internal_view=false",)),
    Variant("dnmdr_interactive", "DNMDR_interactive", 4, _paper(0.5178, 0.6734, 0.7706, 0.06379, 19.93),
            ("model.memory.views=[]",)),
    Variant("dnmdr_dynn", "DNMDR_dynn", 4, _paper(0.5218, 0.6768, 0.7716, 0.05955, 20.03),
            ("model.encoder={type: gru, embedding_dim: 64, hidden_dim: 64, output_dim: 64, dropout: 0.4, "
             "pooling: sum, vocabularies: [diagnoses, procedures]}",)),
    Variant("dnmdr_dim128", "dim 128", 5, _paper(0.5283, 0.6810, 0.7795, 0.06020, 19.11), _width(128)),
    Variant("dnmdr_dim256", "dim 256", 5, _paper(0.5309, 0.6847, 0.7816, 0.05980, 20.34), _width(256)),
)


def preset_sources() -> dict[str, Path | dict[str, Any]]:
    """Every preset of this plugin by name: the ``dnmdr`` YAML path or a derived raw config."""
    return derived_presets("dnmdr", DNMDR_PATH, {variant.name: variant.overrides for variant in VARIANTS})


def register_presets(register: Register) -> None:
    """Register :func:`preset_sources` (called from the plugin's ``register_presets`` hook)."""
    for name, source in preset_sources().items():
        register(name, source)
