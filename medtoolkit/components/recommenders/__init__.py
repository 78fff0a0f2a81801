"""components recommenders package."""
