"""A plugin that fails on import, as one with a missing compiled dependency would."""

raise ImportError("medtoolkit-broken needs 'torch_imaginary' (pip install torch-imaginary)")
