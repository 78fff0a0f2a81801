"""The core adapters (kind ``adapter``) and :func:`count_parameters`.

* ``finetune`` (:class:`FinetuneAdapter`): every parameter trains.
* ``finetune_freeze`` (:class:`FinetuneFreezeAdapter`): only the output head trains.
* ``lora`` (:class:`LoRAAdapter`): low-rank updates of the linear layers plus the head.

An adapter's ``attach(recommender)`` adapts a recommender that already holds its initial
weights and returns the model to train; afterwards exactly the parameters with
``requires_grad`` train, and :func:`count_parameters` reports how many they are.
"""

from medtoolkit.components.adapters.common import count_parameters, head_prefixes
from medtoolkit.components.adapters.finetune import FinetuneAdapter, FinetuneFreezeAdapter
from medtoolkit.components.adapters.lora import LoRAAdapter, LoRALinear

__all__ = [
    "FinetuneAdapter", "FinetuneFreezeAdapter", "LoRAAdapter", "LoRALinear", "count_parameters", "head_prefixes",
]
