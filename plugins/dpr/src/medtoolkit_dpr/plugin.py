"""Hook implementations: what ``medtoolkit-dpr`` registers with the core.

* recommenders ``ncf`` (:class:`~medtoolkit_dpr.ncf.NCFRecommender`) and ``dpr``
  (:class:`~medtoolkit_dpr.dpr.DPRRecommender`)
* losses ``bpr``, ``package_bpr`` and ``edge_type``: :mod:`medtoolkit_dpr.losses`
* presets: :func:`medtoolkit_dpr.presets.register_presets`
"""

from __future__ import annotations

import medtoolkit
from medtoolkit.hookspecs import Register

from medtoolkit_dpr import presets
from medtoolkit_dpr.dpr import DPRRecommender
from medtoolkit_dpr.losses import BPRLoss, EdgeTypeLoss, PackageBPRLoss
from medtoolkit_dpr.ncf import NCFRecommender


@medtoolkit.hookimpl
def register_recommenders(register: Register) -> None:
    register("ncf", NCFRecommender)
    register("dpr", DPRRecommender)


@medtoolkit.hookimpl
def register_losses(register: Register) -> None:
    register("bpr", BPRLoss)
    register("package_bpr", PackageBPRLoss)
    register("edge_type", EdgeTypeLoss)


@medtoolkit.hookimpl
def register_presets(register: Register) -> None:
    """``dpr_ncf``, ``dpr_wg`` and the presets derived from them (see :mod:`medtoolkit_dpr.presets`)."""
    presets.register_presets(register)
