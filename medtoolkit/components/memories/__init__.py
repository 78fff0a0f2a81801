"""components memories package."""
