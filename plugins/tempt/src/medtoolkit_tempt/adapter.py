"""``hospital_prompt``: TEMPT's hospital prompt tuning (Eq. 13-14) as an adapter.

``attach(tempt)`` adds ``b`` learnable prompt vectors for the diagnoses and ``b`` for the
procedures (``O_d``, ``O_p``, each ``[b, c]``), inserted into every set right after ``[CLS]``
(:meth:`SetTransformerEncoder.encode_sets <medtoolkit_tempt.encoder.SetTransformerEncoder.encode_sets>`),
as the recommender's submodule ``prompts`` (so its ``state_dict`` carries them), and freezes
everything else: code embeddings, ``[CLS]``/``[MASK]``, the transformer layers, the mask heads
and the projectors. The output head ``MLP_r`` trains too unless ``train_head: false``. With the
stage option ``repeat_per: hospital`` every hospital gets its own prompts and head (the
paper's ``E_h`` rows and ``Theta_MLP^(h)``).

Initialisation (``init``): ``normal`` (the default) draws N(0, 0.02), the distribution the
code embeddings started from, so a prompt starts as an uninformative token in the
embeddings' space; ``cls`` copies the pre-trained ``[CLS]`` embedding into every prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field
from torch import nn

from medtoolkit.components.base import Adapter, Recommender
from medtoolkit.components.params import Params
from medtoolkit_tempt.encoder import EMBEDDING_INIT_STD
from medtoolkit_tempt.recommender import TEMPTRecommender

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema


class HospitalPrompts(nn.Module):
    """``b`` prompt vectors per vocabulary: ``forward() -> {vocabulary: [b, c]}``.

    Args:
        vocabularies: the encoder's vocabularies.
        n_prompts: ``b``.
        dim: ``c``.
    """

    def __init__(self, vocabularies: tuple[str, ...], n_prompts: int, dim: int) -> None:
        super().__init__()
        self.vectors = nn.ParameterDict({name: nn.Parameter(torch.empty(n_prompts, dim)) for name in vocabularies})

    def forward(self) -> dict[str, torch.Tensor]:
        return {name: vector for name, vector in self.vectors.items()}


class HospitalPromptAdapter(Adapter):
    """Prompt tuning of a pre-trained ``tempt`` (see the module docstring).

    Trainable after :meth:`attach`: ``2 b c`` prompt parameters, plus the head's
    (``2c n_drugs + n_drugs`` for the linear head) with ``train_head``.
    """

    class Params(Params):
        n_prompts: int = Field(2, ge=1, le=64, description="prompt vectors b per vocabulary (the paper: 2)")
        train_head: bool = Field(True, description="also train the output head MLP_r (the paper: yes)")
        init: Literal["normal", "cls"] = Field(
            "normal", description="prompt initialisation: N(0, 0.02) or copies of the [CLS] embedding"
        )

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)

    @classmethod
    def recommender_error(cls, params: Params, recommender: type) -> str | None:
        """Only a ``tempt`` recommender takes prompts (checked by ``medtoolkit validate``)."""
        if isinstance(recommender, type) and issubclass(recommender, TEMPTRecommender):
            return None
        return "prompts enter the set_transformer encoder of a 'tempt' recommender"

    def attach(self, recommender: Recommender) -> Recommender:
        """Add prompts to ``recommender`` and freeze all but the prompts (and the head).

        Raises:
            TypeError: ``recommender`` is not a ``tempt``.
            ValueError: it already has prompts.
        """
        if not isinstance(recommender, TEMPTRecommender):
            raise TypeError(f"the hospital_prompt adapter needs a 'tempt' recommender (prompts enter its "
                            f"set_transformer encoder), got {type(recommender).__name__}")
        p = self.params
        encoder = recommender.encoder
        prompts = HospitalPrompts(recommender.vocabularies, p.n_prompts, encoder.dim)
        reference = next(iter(encoder.parameters()))
        prompts.to(device=reference.device, dtype=reference.dtype)
        with torch.no_grad():
            for vector in prompts.vectors.values():
                if p.init == "cls":
                    vector.copy_(encoder.cls_embedding.detach().expand_as(vector))
                else:
                    vector.normal_(0.0, EMBEDDING_INIT_STD)
        for parameter in recommender.parameters():
            parameter.requires_grad_(False)
        recommender.set_prompts(prompts)
        for parameter in prompts.parameters():
            parameter.requires_grad_(True)
        if p.train_head:
            for parameter in recommender.head.parameters():
                parameter.requires_grad_(True)
        return recommender
