"""This machine's absolute paths out of the benchmark results (no torch import: light enough for any script)."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

#: the checkout the benchmarks run from
REPO = Path(__file__).resolve().parents[1]


def without_machine_paths(text: str) -> str:
    """``text`` with this machine's absolute paths replaced by placeholders.

    ``<python>`` for the interpreter, ``<repo>`` for the checkout, ``<shared>`` for the
    ``../shared`` folder beside it (the benchmark data) and ``<tmp>`` for a temporary
    directory, so that a result file names no machine.
    """
    for path, placeholder in ((sys.executable, "<python>"), (str(REPO.parent / "shared"), "<shared>"),
                              (str(REPO), "<repo>")):
        text = text.replace(path, placeholder)
    return re.sub(re.escape(tempfile.gettempdir()) + r"/[^/\"\s]+", "<tmp>", text)
