"""medtoolkit-tempt: TEMPT's parts for medtoolkit (see :mod:`medtoolkit_tempt.plugin`)."""

from medtoolkit_tempt.adapter import HospitalPromptAdapter
from medtoolkit_tempt.encoder import SetTransformerEncoder
from medtoolkit_tempt.losses import ContrastiveLoss, MaskedCodeLoss
from medtoolkit_tempt.recommender import TEMPTRecommender

__version__ = "0.1.0"

__all__ = [
    "ContrastiveLoss", "HospitalPromptAdapter", "MaskedCodeLoss", "SetTransformerEncoder", "TEMPTRecommender",
    "__version__",
]
