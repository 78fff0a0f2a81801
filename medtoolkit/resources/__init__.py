"""Files shipped with the package: drug-knowledge maps and the built-in demo datasets."""

from __future__ import annotations

from pathlib import Path

RESOURCE_DIR = Path(__file__).resolve().parent
DEMO_DIR = RESOURCE_DIR / "demo"
#: demo name -> folder (relative to ``demo/``) holding its tables
DEMOS = {"mimic3": "mimic3", "mimic4": "mimic4/hosp", "eicu": "eicu"}


def demo_path(name: str) -> Path:
    """Directory of a built-in demo dataset (ODbL 1.0; see ``demo/ATTRIBUTION.md``).

    Args:
        name: ``"mimic3"``, ``"mimic4"`` (its ``hosp/`` tables) or ``"eicu"``.

    Returns:
        The folder holding the demo's ``.csv.gz`` tables.

    Raises:
        KeyError: unknown demo name.
        FileNotFoundError: the package was installed without its data files.
    """
    if name not in DEMOS:
        raise KeyError(f"unknown demo dataset {name!r}; available: {', '.join(sorted(DEMOS))}")
    path = DEMO_DIR / DEMOS[name]
    if not path.is_dir():
        raise FileNotFoundError(
            f"built-in demo {name!r} not found at {path}; the medtoolkit installation is incomplete "
            "(reinstall the package with its data files)"
        )
    return path


def attribution_path() -> Path:
    """``ATTRIBUTION.md``: sources, licence (ODbL 1.0) and citations of the demo data."""
    return DEMO_DIR / "ATTRIBUTION.md"
