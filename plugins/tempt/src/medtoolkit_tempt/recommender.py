"""``tempt``: TEMPT's recommender (Eq. 12/14) with its pre-training heads (Eq. 5, 8).

``logits = MLP_r([r_d || r_p])`` per visit, ``r`` the ``set_transformer`` encoder's ``[CLS]``
outputs (with the hospital prompts inserted after ``[CLS]`` once the ``hospital_prompt``
adapter is attached). Besides the logits it provides two named extras (see
:class:`~medtoolkit.components.base.ModelOutput`), computed only when asked for:

* ``masked_codes``: per vocabulary, a BERT-style masked view of every set
  (:func:`~medtoolkit_tempt.masking.mask_code_sets`) is encoded to ``r'`` and
  ``MLP_m(r')`` (``MLP_m1`` for diagnoses, ``MLP_m2`` for procedures) predicts the masked
  codes (:class:`~medtoolkit_tempt.masking.MaskedCodes`). In training mode the masks come
  from torch's global generator (seeded by the run); in eval mode from a generator seeded
  with ``mask_seed`` at every call, so validation losses are deterministic.
* ``pair_representations``: ``u_d = MLP_d(r_d)``, ``u_p = MLP_p(r_p)`` (Eq. 8) of the real
  visits, from the **original, unmasked** views by default (``contrastive_view: original``;
  the public code masked both views by accident; Eq. 8 as printed projects ``r'``, which
  ``contrastive_view: masked`` reproduces). Needs exactly two vocabularies.

The logits always come from the unmasked (prompted) views. Every visit reads its own codes
only, so visit ``t``'s logits depend on nothing at other visits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from medtoolkit.components.base import ModelOutput, Recommender
from medtoolkit.components.params import Node, Params, slot
from medtoolkit_tempt.encoder import SetTransformerEncoder, scatter_visits
from medtoolkit_tempt.masking import MaskedCodes, PairRepresentations, mask_code_sets, masked_targets

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch

#: the extra holding the mask-prediction logits and targets (``masked_code`` loss)
MASKED_CODES = "masked_codes"
#: the extra holding the projected diagnosis/procedure pairs (``contrastive`` loss)
PAIR_REPRESENTATIONS = "pair_representations"


def mlp(width: int, hidden: int | None, out: int) -> nn.Module:
    """``Linear(width, out)`` when ``hidden`` is None, else ``Linear -> ReLU -> Linear``."""
    if hidden is None:
        return nn.Linear(width, out)
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, out))


def _encoder_vocabularies(params: Params) -> tuple[str, ...]:
    """The vocabularies of ``params.encoder`` (the default pair when the node is unresolved)."""
    default = SetTransformerEncoder.Params.model_fields["vocabularies"].default
    try:
        encoder_params = params.encoder.params  # type: ignore[attr-defined]
    except RuntimeError:  # an unresolved node: its parameters are not validated yet
        return tuple(default)
    return tuple(getattr(encoder_params, "vocabularies", default))


class TEMPTRecommender(Recommender):
    """TEMPT: set-transformer representations of diagnoses and procedures -> drug logits.

    Shapes: ``forward(batch) -> [B, T, n_drugs]`` (zeros at padding visits);
    ``forward(batch, extras=("masked_codes", "pair_representations"))`` -> a
    :class:`~medtoolkit.components.base.ModelOutput` whose extras hold
    ``{vocabulary: MaskedCodes}`` and a :class:`~medtoolkit_tempt.masking.PairRepresentations`.

    Submodules: ``encoder`` (embeddings ``E_d``, ``E_p``, ``[CLS]``, ``[MASK]``, layers),
    ``head`` (``MLP_r``, Eq. 12), ``mask_heads`` (``MLP_m1``, ``MLP_m2``, Eq. 5), ``projectors``
    (``MLP_d``, ``MLP_p``, Eq. 8) and, after the ``hospital_prompt`` adapter, ``prompts``.
    """

    head_modules = ("head",)

    class Params(Params):
        encoder: Node = slot("encoder", "set_transformer", description="the medical encoder (a set_transformer)")
        head_hidden: int | None = Field(
            None, ge=1, description="MLP_r hidden width (None: one linear layer 2c -> n_drugs)"
        )
        pretrain_heads: Literal["mlp", "linear"] = Field(
            "mlp", description="MLP_m and the projectors: c -> c -> ReLU -> out (mlp) or one linear layer"
        )
        mask_rate: float = Field(0.15, gt=0.0, lt=1.0, description="probability that a code is picked for masking")
        mask_share: float = Field(0.8, ge=0.0, le=1.0, description="share of picked codes shown as [MASK]")
        random_share: float = Field(0.1, ge=0.0, le=1.0,
                                    description="share of picked codes replaced by a random code of the vocabulary")
        contrastive_view: Literal["original", "masked"] = Field(
            "original", description="views projected for the contrastive task: unmasked (original) or masked (r')"
        )
        mask_seed: int = Field(0, ge=0, description="seed of the masks in eval mode (deterministic validation loss)")

        @model_validator(mode="after")
        def _check(self) -> "TEMPTRecommender.Params":
            if self.mask_share + self.random_share > 1.0 + 1e-9:
                raise ValueError(f"mask_share + random_share must be at most 1, got "
                                 f"{self.mask_share} + {self.random_share}")
            return self

    params: Params

    @classmethod
    def extras_provided(cls, params: Params) -> frozenset[str]:
        """``masked_codes``; ``pair_representations`` too when the encoder reads two vocabularies."""
        names = {MASKED_CODES}
        if len(_encoder_vocabularies(params)) == 2:
            names.add(PAIR_REPRESENTATIONS)
        return frozenset(names)

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        assert schema is not None  # checked by Recommender
        p = self.params
        encoder = p.encoder.resolve("encoder").build(schema)
        if not isinstance(encoder, SetTransformerEncoder):
            raise TypeError(f"tempt needs a set_transformer encoder (it encodes masked and prompted sets), "
                            f"got {type(encoder).__name__}")
        self.encoder = encoder
        self.vocabularies = encoder.vocabularies
        dim = encoder.dim
        hidden = dim if p.pretrain_heads == "mlp" else None
        self.head = mlp(encoder.output_dim, p.head_hidden, schema.n_drugs)  # MLP_r
        self.mask_heads = nn.ModuleDict(  # MLP_m1, MLP_m2
            {name: mlp(dim, hidden, encoder.vocab_sizes[name]) for name in self.vocabularies}
        )
        self.projectors = nn.ModuleDict({name: mlp(dim, hidden, dim) for name in self.vocabularies})  # MLP_d, MLP_p
        self.register_module("prompts", None)

    # ------------------------------------------------------------------ prompts
    def set_prompts(self, prompts: nn.Module) -> None:
        """Register the hospital prompts (called by the ``hospital_prompt`` adapter).

        Args:
            prompts: a module whose ``forward()`` returns ``{vocabulary: [b, c]}``.

        Raises:
            ValueError: prompts are already attached.
        """
        if self.prompts is not None:
            raise ValueError("tempt already has prompts (the hospital_prompt adapter was attached twice)")
        self.prompts = prompts

    def _prompt_vectors(self) -> dict[str, torch.Tensor] | None:
        return None if self.prompts is None else self.prompts()

    # ------------------------------------------------------------------ forward
    def forward(self, batch: "PaddedBatch", extras: Sequence[str] = ()) -> Any:  # type: ignore[override]
        """Drug logits, and the requested extras.

        Args:
            batch: a padded batch.
            extras: names among :meth:`extras_provided` (empty: plain logits).

        Returns:
            ``[B, T, n_drugs]`` logits, or a ``ModelOutput`` when ``extras`` is non-empty.

        Raises:
            ValueError: an unknown extra is requested.
        """
        wanted = tuple(extras)
        unknown = sorted(set(wanted) - self.extras_provided(self.params))
        if unknown:
            raise ValueError(f"tempt provides the extras {sorted(self.extras_provided(self.params))}, "
                             f"not {unknown}")
        prompts = self._prompt_vectors()
        codes = {name: self.encoder.real_codes(batch, name) for name in self.vocabularies}
        reps = {
            name: self.encoder.encode_sets(name, codes[name], prompts=None if prompts is None else prompts[name])
            for name in self.vocabularies
        }  # r per vocabulary, [N, c]
        flat = self.head(torch.cat([reps[name] for name in self.vocabularies], dim=-1))  # [N, n_drugs]
        logits = scatter_visits(flat, batch.visit_mask)
        if not wanted:
            return logits
        values: dict[str, Any] = {}
        need_masked = MASKED_CODES in wanted or (
            PAIR_REPRESENTATIONS in wanted and self.params.contrastive_view == "masked")
        masked_reps: dict[str, torch.Tensor] = {}
        if need_masked:
            masked_reps, masked = self._masked_views(codes, prompts)
            if MASKED_CODES in wanted:
                values[MASKED_CODES] = masked
        if PAIR_REPRESENTATIONS in wanted:
            source = masked_reps if self.params.contrastive_view == "masked" else reps
            first, second = self.vocabularies
            values[PAIR_REPRESENTATIONS] = PairRepresentations(
                first=self.projectors[first](source[first]),
                second=self.projectors[second](source[second]),
                valid=(codes[first] > 0).any(dim=1) & (codes[second] > 0).any(dim=1),
                names=(first, second),
            )
        return ModelOutput(logits=logits, extras=values)

    def _masked_views(
        self, codes: dict[str, torch.Tensor], prompts: dict[str, torch.Tensor] | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, MaskedCodes]]:
        """``r'`` per vocabulary and the ``masked_codes`` extra (masks: see the module docstring)."""
        p = self.params
        generator = None
        if not self.training:
            device = next(iter(codes.values())).device
            generator = torch.Generator(device=device).manual_seed(p.mask_seed)
        reps: dict[str, torch.Tensor] = {}
        result: dict[str, MaskedCodes] = {}
        for name in self.vocabularies:
            size = self.encoder.vocab_sizes[name]
            view = mask_code_sets(codes[name], size, p.mask_rate, p.mask_share, p.random_share, generator)
            reps[name] = self.encoder.encode_sets(
                name, view.inputs, mask_positions=view.mask_positions,
                prompts=None if prompts is None else prompts[name])
            targets, included = masked_targets(codes[name], view.selected, size)
            result[name] = MaskedCodes(
                logits=self.mask_heads[name](reps[name]), targets=targets, included=included,
                valid=(codes[name] > 0).any(dim=1))
        return reps, result
