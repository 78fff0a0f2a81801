"""``ncf``: DPR's pre-training model (Section 4.1, Eq. 1, 3-4) for medtoolkit's EHR data.

* Patient embedding ``u`` of a visit: the multi-hot of the visit's diagnoses and procedures
  (the paper's disease document ``W``; MIMIC has no admission notes, so the char-LSTM half
  of Eq. 2-3 is absent) through ``MLP`` = ``Linear -> ReLU -> Linear`` (hidden 128, output
  ``dim`` 64). The first layer is an embedding-bag sum over the visit's codes
  (``multi-hot @ W`` without the dense multi-hot).
* Drug embeddings ``d_j`` (``dim``), learned from the drug index.
* ``r_ij = MLP([u_i || d_j])`` (hidden 128 -> 1) for every real visit and every drug, the
  first layer split (:class:`~medtoolkit_dpr.layers.SplitMLP`): ``W_u u_i`` once per visit,
  ``W_d d_j`` once per drug, summed per pair.

``forward`` returns ``r`` as logits ``[B, T, n_drugs]`` (0 at padding). The model reads the
visit's own diagnoses and procedures only, never medications, so it is causal.
``visit_embedding`` returns ``u`` (the task's ``similarity: model`` neighbours, the NN
baseline); ``fit_state`` stores the training visits' ``u`` as the neighbour index.

The submodules ``patient``, ``drugs`` and ``matcher`` carry the same parameter names in
``dpr``, so a ``dpr`` stage can start from ``ncf`` weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from medtoolkit.components.base import Recommender
from medtoolkit.components.params import InputVocabularies, Params
from medtoolkit_dpr.layers import SplitMLP, scatter_visits

if TYPE_CHECKING:
    import numpy as np

    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch
    from medtoolkit.data.ehr import EHRData


class PatientEncoder(nn.Module):
    """``u = Linear(ReLU(multi-hot @ W + b))`` per real visit (Eq. 1; ``u = m_w``).

    Args:
        vocab_sizes: codes per input vocabulary (``{"diagnoses": 1958, ...}``).
        hidden: hidden width.
        dim: output width ``D``.
    """

    def __init__(self, vocab_sizes: dict[str, int], hidden: int, dim: int) -> None:
        super().__init__()
        self.vocabularies = tuple(vocab_sizes)
        self.codes = nn.ModuleDict(
            {name: nn.Embedding(size + 1, hidden, padding_idx=0) for name, size in vocab_sizes.items()}
        )
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.out = nn.Linear(hidden, dim)

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """``[V, D]`` patient embeddings of the batch's real visits (row-major ``visit_mask`` order).

        Raises:
            KeyError: the batch lacks one of the vocabularies.
        """
        mask = batch.visit_mask
        hidden = self.bias.expand(int(mask.sum()), -1)
        for name in self.vocabularies:
            codes = batch.codes.get(name)
            if codes is None:
                raise KeyError(f"ncf reads {name!r} codes but the batch has {sorted(batch.codes)}")
            hidden = hidden + F.embedding_bag(codes[mask], self.codes[name].weight, mode="sum", padding_idx=0)
        return self.out(torch.relu(hidden))


class NCFRecommender(Recommender):
    """NCF (Eq. 4): ``r_ij = MLP([u_i || d_j])`` as drug logits; ``u`` is the visit embedding.

    Shapes: ``forward(batch) -> [B, T, n_drugs]`` (zeros at padding visits);
    ``visit_embedding(batch) -> [B, T, dim]``.
    """

    head_modules = ("matcher",)

    class Params(Params):
        vocabularies: InputVocabularies = Field(
            ("diagnoses", "procedures"), min_length=1,
            description="code vocabularies forming the patient description (multi-hot)")
        dim: int = Field(64, ge=1, description="width of patient and drug embeddings")
        hidden: int = Field(128, ge=1, description="hidden width of every MLP")

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        assert schema is not None  # checked by Recommender
        p = self.params
        self.patient = PatientEncoder({name: schema.vocab_size(name) for name in p.vocabularies}, p.hidden, p.dim)
        self.drugs = nn.Embedding(schema.n_drugs, p.dim)
        self.matcher = SplitMLP(p.dim, p.dim, p.hidden, 1)
        self.register_fitted_state("neighbour_keys", torch.zeros(0, p.dim))
        self.register_fitted_state("neighbour_visits", torch.zeros(0, dtype=torch.int64))

    def drug_scores(self, u: torch.Tensor) -> torch.Tensor:
        """``r [V, n_drugs]`` for patient embeddings ``u [V, D]`` (Eq. 4, first layer split)."""
        return self.matcher(u.unsqueeze(1), self.drugs.weight.unsqueeze(0)).squeeze(-1)

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:  # type: ignore[override]
        """Logits ``[B, T, n_drugs]``: ``r_ij`` at real visits, 0 at padding."""
        return scatter_visits(self.drug_scores(self.patient(batch)), batch.visit_mask)

    def visit_embedding(self, batch: "PaddedBatch") -> torch.Tensor:
        """``[B, T, dim]`` patient embeddings ``u`` (zeros at padding visits)."""
        return scatter_visits(self.patient(batch), batch.visit_mask)

    def fit_state(self, data: "EHRData", patients: "np.ndarray", schema: "DataSchema") -> None:
        """Store ``u`` of every training visit as the task's neighbour index."""
        self.fit_neighbour_index(data, patients)
