"""medtoolkit-algnet: ALGNet (augmented light graph network) as medtoolkit components."""

from medtoolkit.components.memories.gcn import history_read
from medtoolkit_algnet.ablations import ABLATIONS, FULL_MODEL, Ablation, ablation_config
from medtoolkit_algnet.encoder import CausalSelfAttention, DualSelfAttentionEncoder
from medtoolkit_algnet.memory import LightGCNMemory, LightGraph, adjacency_to_edges
from medtoolkit_algnet.recommender import ALGNet

__version__ = "0.1.0"
__all__ = [
    "ABLATIONS",
    "ALGNet",
    "Ablation",
    "FULL_MODEL",
    "ablation_config",
    "CausalSelfAttention",
    "DualSelfAttentionEncoder",
    "LightGCNMemory",
    "LightGraph",
    "adjacency_to_edges",
    "history_read",
]
