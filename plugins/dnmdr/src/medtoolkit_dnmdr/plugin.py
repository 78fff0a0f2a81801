"""Hook implementations: what ``medtoolkit-dnmdr`` registers with the core.

* encoder ``evolvegat`` (a visit encoder): :class:`~medtoolkit_dnmdr.encoder.EvolveGATEncoder`
* memory ``gat_views``: :class:`~medtoolkit_dnmdr.memory.GATViewsMemory`
* recommender ``dnmdr``: :class:`~medtoolkit_dnmdr.recommender.DNMDR` (``mpnn`` of
  ``medtoolkit-molecule`` in its drug-encoder slot)
* presets: :func:`medtoolkit_dnmdr.presets.register_presets`
"""

from __future__ import annotations

import medtoolkit
from medtoolkit.hookspecs import Register

from medtoolkit_dnmdr import presets
from medtoolkit_dnmdr.encoder import EvolveGATEncoder
from medtoolkit_dnmdr.memory import GATViewsMemory
from medtoolkit_dnmdr.recommender import DNMDR


@medtoolkit.hookimpl
def register_encoders(register: Register) -> None:
    register("evolvegat", EvolveGATEncoder)


@medtoolkit.hookimpl
def register_memories(register: Register) -> None:
    register("gat_views", GATViewsMemory)


@medtoolkit.hookimpl
def register_recommenders(register: Register) -> None:
    register("dnmdr", DNMDR)


@medtoolkit.hookimpl
def register_presets(register: Register) -> None:
    """``dnmdr``, its Table 4 ablations and the dim-256 variant (see :mod:`medtoolkit_dnmdr.presets`)."""
    presets.register_presets(register)
