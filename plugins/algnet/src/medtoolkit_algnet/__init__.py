"""medtoolkit-algnet: ALGNet (augmented light graph network) as medtoolkit components."""

from medtoolkit_algnet.encoder import CausalSelfAttention, DualSelfAttentionEncoder
from medtoolkit_algnet.memory import LightGCNMemory, LightGraph, adjacency_to_edges, history_read
from medtoolkit_algnet.recommender import ALGNet

__version__ = "0.1.0"
__all__ = [
    "ALGNet",
    "CausalSelfAttention",
    "DualSelfAttentionEncoder",
    "LightGCNMemory",
    "LightGraph",
    "adjacency_to_edges",
    "history_read",
]
