"""``lora``: low-rank updates of a recommender's linear layers (Hu et al., 2021, LoRA).

Each adapted ``nn.Linear`` (``y = x W^T + b``, ``W`` ``[out, in]``) becomes a
:class:`LoRALinear`::

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T

with ``W`` and ``b`` frozen, ``A`` ``[r, in]`` drawn like a linear layer's weight
(Kaiming-uniform, ``a = sqrt(5)``) and ``B`` ``[out, r]`` zeros, so right after ``attach``
the recommender computes exactly what it computed before. Only ``A`` and ``B`` (and, with
``train_head``, the output head) train: ``r * (in + out)`` parameters per adapted layer
instead of ``in * out + out``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from medtoolkit.components.adapters.common import head_prefixes, matching, model_name, require_recommender, under
from medtoolkit.components.base import Adapter, Recommender
from medtoolkit.components.params import Params

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update.

    ``forward(x [..., in]) -> [..., out]``: ``x W^T + b + (alpha / rank) * dropout(x) A^T B^T``.
    It keeps the wrapped layer's ``weight`` and ``bias`` parameters under the same names
    (so its ``state_dict`` holds ``weight``, ``bias``, ``lora_A``, ``lora_B``), and
    ``in_features`` / ``out_features`` like ``nn.Linear``.

    Args:
        base: the layer to adapt; its parameters are reused (frozen), not copied.
        rank: ``r``, the rank of the update (>= 1).
        alpha: scale numerator; the update is multiplied by ``alpha / rank``.
        dropout: dropout probability on the update's input (0: none).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.rank = rank
        self.scaling = alpha / rank
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., in] -> [..., out]``: the frozen layer's output plus the scaled low-rank update."""
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)
        return F.linear(x, self.weight, self.bias) + self.scaling * update

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def adaptable_linears(module: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` layers of ``module`` that a :class:`LoRALinear` can replace.

    Left out: layers inside an ``nn.MultiheadAttention`` (it reads its ``out_proj``'s
    weight directly instead of calling the layer, so an update there would be ignored).

    Args:
        module: a recommender.

    Returns:
        module names in ``named_modules()`` order.
    """
    attention = [name for name, sub in module.named_modules() if isinstance(sub, nn.MultiheadAttention)]
    return [name for name, sub in module.named_modules()
            if isinstance(sub, nn.Linear) and not (attention and under(name, attention))]


class LoRAAdapter(Adapter):
    """LoRA on the recommender's linear layers; the rest of the recommender is frozen.

    What trains: ``lora_A`` and ``lora_B`` of every wrapped layer (``rank * (in + out)``
    each) and, with ``train_head`` (the default), every parameter of the output head
    (``head_modules``, or the last ``nn.Linear``), whose linear layers are then not
    wrapped. Wrapped: every ``nn.Linear`` whose module name matches one of ``targets``
    (fnmatch, e.g. ``["encoder.*"]``). Everything else (embeddings, recurrent cells, the
    frozen weights of wrapped layers) is frozen. Recurrent cells (``nn.GRU``), parameters
    a module uses directly (a GCN's weight matrices) and the projections inside an
    ``nn.MultiheadAttention`` are not adapted.
    """

    class Params(Params):
        rank: int = Field(8, ge=1, description="rank r of each low-rank update")
        alpha: float = Field(16.0, gt=0, description="the update is scaled by alpha / rank")
        dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the update's input")
        targets: list[str] = Field(
            default_factory=lambda: ["*"],
            description="fnmatch patterns over module names: the nn.Linear layers that get an update",
        )
        train_head: bool = Field(
            True, description="train the output head fully (its linear layers are then not wrapped)"
        )

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)

    def wrapped_names(self, recommender: Recommender) -> list[str]:
        """Module names of the ``nn.Linear`` layers :meth:`attach` wraps, in ``named_modules()`` order."""
        head = head_prefixes(recommender) if self.params.train_head else ()
        linears = [name for name in adaptable_linears(recommender) if not (head and under(name, head))]
        return matching(linears, self.params.targets)

    def attach(self, recommender: Recommender) -> Recommender:
        """Wrap the targeted linear layers in :class:`LoRALinear`, freeze the rest, return ``recommender``.

        Raises:
            TypeError: ``recommender`` is not a :class:`Recommender`.
            ValueError: no ``nn.Linear`` outside the head matches ``targets`` (the message
                names the model type and the layers it has).
        """
        require_recommender("lora", recommender)
        p = self.params
        head = head_prefixes(recommender) if p.train_head else ()
        names = self.wrapped_names(recommender)
        if not names:
            linears = adaptable_linears(recommender)
            raise ValueError(
                f"adapter 'lora' found no nn.Linear to adapt in {model_name(recommender)}: targets={list(p.targets)}"
                f" match none of its linear layers {linears or '(none)'}"
                + (f" outside the head {list(head)} (train_head=true)" if head else "")
            )
        for name, parameter in recommender.named_parameters():
            parameter.requires_grad_(bool(head) and under(name, head))
        for name in names:
            parent_name, _, child = name.rpartition(".")
            parent = recommender.get_submodule(parent_name) if parent_name else recommender
            base = getattr(parent, child)
            setattr(parent, child, LoRALinear(base, p.rank, p.alpha, p.dropout))
        return recommender
