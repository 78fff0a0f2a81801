"""medtoolkit-molecule: molecule drug encoders (``mpnn``), SafeDrug and the controllable DDI loss."""

from medtoolkit_molecule.encoder import MPNNEncoder
from medtoolkit_molecule.fingerprints import wl_fingerprints, wl_refine
from medtoolkit_molecule.recommender import SafeDrug, private_substructure_mask

__version__ = "0.1.0"
__all__ = ["MPNNEncoder", "SafeDrug", "private_substructure_mask", "wl_fingerprints", "wl_refine"]
