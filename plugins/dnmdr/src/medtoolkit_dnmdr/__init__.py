"""medtoolkit-dnmdr: DNMDR's parts for medtoolkit (see :mod:`medtoolkit_dnmdr.plugin`)."""

__version__ = "0.1.0"
