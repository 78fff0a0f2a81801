"""medtoolkit-dnmdr: DNMDR's parts for medtoolkit (see :mod:`medtoolkit_dnmdr.plugin`)."""

from medtoolkit_dnmdr.encoder import EvolveGATEncoder
from medtoolkit_dnmdr.memory import GATViewsMemory
from medtoolkit_dnmdr.recommender import DNMDR

__version__ = "0.1.0"

__all__ = ["DNMDR", "EvolveGATEncoder", "GATViewsMemory", "__version__"]
