"""Hook implementations: what ``medtoolkit-molecule`` registers with the core.

* encoder ``mpnn`` (a drug encoder, consumes molecules): :class:`~medtoolkit_molecule.encoder.MPNNEncoder`
* recommender ``safedrug``: :class:`~medtoolkit_molecule.recommender.SafeDrug`
* loss ``controllable_ddi``: :class:`~medtoolkit_molecule.loss.ControllableDDILoss`
* presets: delegated to :func:`medtoolkit_molecule.presets.register_presets`
"""

from __future__ import annotations

import medtoolkit
from medtoolkit.hookspecs import Register

from medtoolkit_molecule import presets
from medtoolkit_molecule.encoder import MPNNEncoder
from medtoolkit_molecule.loss import ControllableDDILoss
from medtoolkit_molecule.recommender import SafeDrug


@medtoolkit.hookimpl
def register_encoders(register: Register) -> None:
    register("mpnn", MPNNEncoder)


@medtoolkit.hookimpl
def register_recommenders(register: Register) -> None:
    register("safedrug", SafeDrug)


@medtoolkit.hookimpl
def register_losses(register: Register) -> None:
    register("controllable_ddi", ControllableDDILoss)


@medtoolkit.hookimpl
def register_presets(register: Register) -> None:
    """``safedrug`` and the presets derived from it (see :mod:`medtoolkit_molecule.presets`)."""
    presets.register_presets(register)
