"""components losses package."""
