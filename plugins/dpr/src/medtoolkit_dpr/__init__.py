"""medtoolkit-dpr: DPR's parts for medtoolkit (see :mod:`medtoolkit_dpr.plugin`)."""

from medtoolkit_dpr.dpr import DPRRecommender
from medtoolkit_dpr.losses import BPRLoss, EdgeTypeLoss, PackageBPRLoss
from medtoolkit_dpr.ncf import NCFRecommender

__version__ = "0.1.0"

__all__ = ["BPRLoss", "DPRRecommender", "EdgeTypeLoss", "NCFRecommender", "PackageBPRLoss", "__version__"]
