"""Hook implementations: what ``medtoolkit-tempt`` registers with the core.

* encoder ``set_transformer`` (a visit encoder): :class:`~medtoolkit_tempt.encoder.SetTransformerEncoder`
* recommender ``tempt``: :class:`~medtoolkit_tempt.recommender.TEMPTRecommender`
* losses ``masked_code`` and ``contrastive``: :mod:`medtoolkit_tempt.losses`
* adapter ``hospital_prompt``: :class:`~medtoolkit_tempt.adapter.HospitalPromptAdapter`
* presets: :func:`medtoolkit_tempt.presets.register_presets`
"""

from __future__ import annotations

import medtoolkit
from medtoolkit.hookspecs import Register

from medtoolkit_tempt import presets
from medtoolkit_tempt.adapter import HospitalPromptAdapter
from medtoolkit_tempt.encoder import SetTransformerEncoder
from medtoolkit_tempt.losses import ContrastiveLoss, MaskedCodeLoss
from medtoolkit_tempt.recommender import TEMPTRecommender


@medtoolkit.hookimpl
def register_encoders(register: Register) -> None:
    register("set_transformer", SetTransformerEncoder)


@medtoolkit.hookimpl
def register_recommenders(register: Register) -> None:
    register("tempt", TEMPTRecommender)


@medtoolkit.hookimpl
def register_losses(register: Register) -> None:
    register("masked_code", MaskedCodeLoss)
    register("contrastive", ContrastiveLoss)


@medtoolkit.hookimpl
def register_adapters(register: Register) -> None:
    register("hospital_prompt", HospitalPromptAdapter)


@medtoolkit.hookimpl
def register_presets(register: Register) -> None:
    """``tempt`` and its comparison rows (see :mod:`medtoolkit_tempt.presets`)."""
    presets.register_presets(register)
