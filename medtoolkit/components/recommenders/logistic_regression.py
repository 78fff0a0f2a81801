"""``logistic_regression``: one logistic regression per drug on the current visit's codes.

The per-visit baseline of GAMENet / SafeDrug (``LR.py``: ``OneVsRestClassifier(
LogisticRegression())`` on the multi-hot ``[diagnoses | procedures]`` of a visit, no
history), written as a module so the core trainer fits it with BCE
(``logits = bias + sum_{codes c of the visit} W[c]``; an L2 penalty comes from the
trainer's weight decay). Every visit of a batch is scored in one pass.

Optional ``use_history`` adds a linear term on the previous visit's medications (still
causal: visit t reads medications of visit t - 1 only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from medtoolkit.components.base import Recommender
from medtoolkit.components.params import InputVocabularies, Params

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


def previous_medications(medications: torch.Tensor) -> torch.Tensor:
    """Shift ``[B, T, N]`` medications one visit later (visit 0 gets zeros)."""
    return torch.cat([torch.zeros_like(medications[:, :1]), medications[:, :-1]], dim=1)


class LogisticRegressionRecommender(Recommender):
    """Per-drug logistic regression on the current visit's code multi-hot.

    Shapes: ``forward(batch) -> [B, T, n_drugs]``. Weights start at zero and the bias at
    the logit of each drug's training frequency (``schema.drug_frequency``, when known),
    i.e. the model starts from the marginal rates (the optimum of a model without
    features), which makes a short training run sufficient.
    """

    class Params(Params):
        vocabularies: InputVocabularies = Field(
            ("diagnoses", "procedures"), min_length=1, description="code vocabularies used as features"
        )
        use_history: bool = Field(False, description="add a linear term on the previous visit's drugs")
        frequency_bias_init: bool = Field(
            True, description="start the bias at logit(drug frequency) when the schema knows it"
        )

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        assert schema is not None  # checked by Recommender
        p = self.params
        n_drugs = schema.n_drugs
        self.vocabularies = tuple(p.vocabularies)
        self.weights = nn.ModuleDict(
            {
                name: nn.Embedding(schema.vocab_size(name) + 1, n_drugs, padding_idx=0)
                for name in self.vocabularies
            }
        )
        self.bias = nn.Parameter(torch.zeros(n_drugs))
        self.history = nn.Linear(n_drugs, n_drugs, bias=False) if p.use_history else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero weights; bias = logit of the drug frequency (clipped) or zero."""
        with torch.no_grad():
            for table in self.weights.values():
                table.weight.zero_()
            if self.history is not None:
                self.history.weight.zero_()
            frequency = self.schema.drug_frequency if self.schema is not None else None
            if self.params.frequency_bias_init and frequency is not None:
                rate = torch.as_tensor(frequency, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
                self.bias.copy_(torch.log(rate) - torch.log1p(-rate))
            else:
                self.bias.zero_()

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """Logits ``[B, T, n_drugs]``: ``bias + sum of the visit's code weights``."""
        batch_size, n_visits = batch.visit_mask.shape
        logits = self.bias.expand(batch_size * n_visits, -1)
        for name in self.vocabularies:
            codes = batch.codes.get(name)
            if codes is None:
                raise KeyError(
                    f"LogisticRegressionRecommender reads {name!r} codes but the batch has {sorted(batch.codes)}"
                )
            flat = codes.reshape(batch_size * n_visits, codes.shape[-1])
            table = self.weights[name].weight
            logits = logits + F.embedding_bag(flat, table, mode="sum", padding_idx=0)
        logits = logits.reshape(batch_size, n_visits, -1)
        if self.history is not None:
            logits = logits + self.history(previous_medications(batch.medications.to(logits.dtype)))
        return logits


__all__ = ["LogisticRegressionRecommender", "previous_medications"]
