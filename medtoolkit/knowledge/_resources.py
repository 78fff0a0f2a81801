"""Location of the shipped drug-knowledge files."""

from __future__ import annotations

from pathlib import Path

RESOURCE_DIR = Path(__file__).resolve().parents[1] / "resources" / "drug_knowledge"


def resource_path(name: str) -> Path:
    """Path of a shipped resource file.

    Args:
        name: file name inside ``medtoolkit/resources/drug_knowledge``.

    Returns:
        the path.

    Raises:
        FileNotFoundError: the file is missing (a broken installation).
    """
    path = RESOURCE_DIR / name
    if not path.exists():
        raise FileNotFoundError(
            f"shipped resource {name} not found at {path}; the medtoolkit installation is "
            "incomplete (reinstall the package)"
        )
    return path
