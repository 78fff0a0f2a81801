"""Flushing denormal floats to zero on the CPU for a stretch of code (:func:`flushing_denormals`).

Denormal (subnormal) float32 values, below about 1.2e-38, take a slow path in most CPU
arithmetic units. They appear in training without anyone asking for them: Adam's moments of
an embedding row that gets no gradient for some hundred steps decay geometrically into that
range (``0.9 ** 800`` is about 1e-37), and from then on every step's update runs on them. The
processor's flush-to-zero / denormals-are-zero mode (``torch.set_flush_denormal``) treats
them as 0 instead. The mode is a processor setting of the calling thread.

Flushing changes results only where a computation meets such values: Adam's update from a
denormal moment is below the weight's last digit, so GAMENet trains to the same model to the
last digit; DNMDR's passes do meet them, and its runs take a slightly different path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def flush_denormal_enabled() -> bool:
    """Whether this thread's CPU arithmetic treats denormal floats as zero right now.

    Probes it: doubling a denormal float32 gives 0 only when denormals are flushed.
    """
    denormal = torch.tensor([1e-39], dtype=torch.float32)
    return float((denormal * 2.0)[0]) == 0.0


@contextlib.contextmanager
def flushing_denormals(enabled: bool = True) -> Iterator[bool]:
    """Flush denormal floats to zero inside the ``with`` block (when ``enabled``), then restore.

    Args:
        enabled: False leaves the mode as it is (a no-op block).

    Yields:
        whether denormals are flushed inside the block (False where the CPU cannot).
    """
    already = flush_denormal_enabled()
    if not enabled or already:  # nothing to switch (or asked not to)
        yield already
        return
    switched = bool(torch.set_flush_denormal(True))
    try:
        yield switched
    finally:
        if switched:
            torch.set_flush_denormal(False)
