"""data loaders package."""
