"""Hook implementations: what ``medtoolkit-dnmdr`` registers with the core (filled in as parts land)."""

from __future__ import annotations
