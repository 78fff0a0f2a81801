"""components encoders package."""
