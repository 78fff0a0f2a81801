"""``finetune`` and ``finetune_freeze``: train the whole recommender, or only its head.

Both adapt the recommender in place (no new parameters) and return it, so its
``state_dict`` keys are the plain recommender's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from medtoolkit.components.adapters.common import head_prefixes, matching, model_name, require_recommender, under
from medtoolkit.components.base import Adapter, Recommender
from medtoolkit.components.params import Params

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema


class FinetuneAdapter(Adapter):
    """Full fine-tuning: every parameter of the recommender trains.

    ``attach`` sets ``requires_grad`` on every parameter (undoing any earlier freezing)
    and returns the recommender itself; trainable count = total count.
    """

    class Params(Params):
        pass

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)

    def attach(self, recommender: Recommender) -> Recommender:
        """Unfreeze every parameter of ``recommender`` and return it.

        Raises:
            TypeError: ``recommender`` is not a :class:`Recommender`.
        """
        require_recommender("finetune", recommender)
        for parameter in recommender.parameters():
            parameter.requires_grad_(True)
        return recommender


class FinetuneFreezeAdapter(Adapter):
    """Fine-tune only the output head; everything else is frozen.

    What trains: the parameters under ``type(recommender).head_modules`` (name prefixes), or,
    when the recommender names no head, those of its last ``nn.Linear`` (in
    ``named_modules()`` order; GAMENet: ``output.3``, the ``hidden -> n_drugs`` layer).
    Non-empty ``trainable`` replaces that choice: exactly the parameters whose names match
    one of its fnmatch patterns train (``["output.*"]``, ``["*.bias"]``).
    """

    class Params(Params):
        trainable: list[str] = Field(
            default_factory=list,
            description="fnmatch patterns over parameter names that train (empty: the recommender's head)",
        )

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)

    def trained_names(self, recommender: Recommender) -> list[str]:
        """Names of the parameters that train after :meth:`attach` (see the class docstring)."""
        names = [name for name, _ in recommender.named_parameters()]
        if self.params.trainable:
            return matching(names, self.params.trainable)
        head = head_prefixes(recommender)
        return [name for name in names if under(name, head)] if head else []

    def attach(self, recommender: Recommender) -> Recommender:
        """Freeze every parameter of ``recommender`` but the head's (or ``trainable``'s) and return it.

        Raises:
            TypeError: ``recommender`` is not a :class:`Recommender`.
            ValueError: no parameter would train (the message names the model type and
                the patterns or head tried).
        """
        require_recommender("finetune_freeze", recommender)
        chosen = set(self.trained_names(recommender))
        if not chosen:
            if self.params.trainable:
                why = f"no parameter name matches trainable={list(self.params.trainable)}"
            else:
                head = head_prefixes(recommender)
                why = (f"its head {list(head)} holds no parameter" if head else
                       "it names no head_modules and has no nn.Linear layer")
            raise ValueError(f"adapter 'finetune_freeze' would train nothing in {model_name(recommender)}: {why}")
        for name, parameter in recommender.named_parameters():
            parameter.requires_grad_(name in chosen)
        return recommender
