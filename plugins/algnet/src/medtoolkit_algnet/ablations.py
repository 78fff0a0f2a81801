"""The ablations of the ALGNet paper (Tables 4 and 5) as presets derived from ``algnet``.

Each ablation is the ``algnet`` preset with a few ``-o``-style overrides that swap one part:
the encoder (GRU or LSTM alone, the attention alone, attention + GRU/LSTM) and the memory
(GAMENet's 2-layer ``gcn`` or the light ``lightgcn``). Deriving them from the one preset
file keeps every other setting (data, losses, trainer, evaluation) identical by construction.

``medtoolkit train algnet_a_gcn`` trains one; ``benchmarks/mimic3_legacy.py --presets``
compares them on the legacy benchmark, with :data:`ABLATIONS` giving the paper's numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medtoolkit.config import apply_overrides

#: encoder overrides (the base preset's encoder is attention + GRU, PRE = l + gamma s)
_GRU_ONLY = ("model.encoder.gamma=0.0",)
_LSTM_ONLY = ("model.encoder.rnn=lstm", "model.encoder.gamma=0.0")
_ATTENTION_ONLY = ("model.encoder.rnn=none",)
_ATTENTION_LSTM = ("model.encoder.rnn=lstm",)
#: memory overrides (the base preset's memory is lightgcn); GAMENet's gcn memory as in its preset
_GCN = ("model.memory.type=gcn", "model.memory.dropout=0.3", "model.memory.ddi_in_memory=true",
        "model.memory.history=true")


@dataclass(frozen=True)
class Ablation:
    """One row of the paper's ablation tables.

    Attributes:
        name: preset name (``algnet_<row>``).
        paper_label: the row's name in the paper.
        paper_table: 4 (GCN memory) or 5 (light GCN memory).
        paper_jaccard: the paper's Jaccard for the row.
        overrides: ``key.path=value`` overrides applied to the ``algnet`` preset.
    """

    name: str
    paper_label: str
    paper_table: int
    paper_jaccard: float
    overrides: tuple[str, ...]


ABLATIONS: tuple[Ablation, ...] = (
    Ablation("algnet_lstm_gcn", "LSTM-GCN", 4, 0.5018, _LSTM_ONLY + _GCN),
    Ablation("algnet_rnn_gcn", "RNN-GCN", 4, 0.5067, _GRU_ONLY + _GCN),
    Ablation("algnet_a_gcn", "A-GCN", 4, 0.5076, _ATTENTION_ONLY + _GCN),
    Ablation("algnet_a_lstm_gcn", "A-LSTM-GCN", 4, 0.5068, _ATTENTION_LSTM + _GCN),
    Ablation("algnet_a_rnn_gcn", "A-RNN-GCN", 4, 0.5091, _GCN),
    Ablation("algnet_lstm_lgnet", "LSTM-LGNet", 5, 0.5021, _LSTM_ONLY),
    Ablation("algnet_rnn_lgnet", "RNN-LGNet", 5, 0.5071, _GRU_ONLY),
    Ablation("algnet_a_lgnet", "A-LGNet-RNN", 5, 0.5112, _ATTENTION_ONLY),
    Ablation("algnet_a_lstm_lgnet", "A-LSTM-LGNet", 5, 0.5122, _ATTENTION_LSTM),
)

#: the full model's row of Table 5 (and Table 3: Jaccard 0.5176, PRAUC 0.7714)
FULL_MODEL = Ablation("algnet", "ALGNet", 5, 0.5176, ())


def ablation_config(ablation: Ablation, base: Mapping[str, Any]) -> dict[str, Any]:
    """The raw run config of ``ablation``: ``base`` (the ``algnet`` preset) with its overrides.

    Args:
        ablation: the table row.
        base: the raw ``algnet`` run config (a mapping, as loaded from its YAML file).

    Returns:
        a new raw config named ``ablation.name`` (``base`` is not modified).
    """
    config, _notes = apply_overrides(base, [f"name={ablation.name}", *ablation.overrides])
    return config
