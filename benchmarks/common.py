"""Shared helpers for the benchmark scripts (not part of the installed package)."""

from __future__ import annotations

import json
import platform
import resource
import time
from pathlib import Path
from typing import Any

import torch

from medtoolkit.components.base import Loss, Recommender
from medtoolkit.data.batching import PaddedBatch, make_batch
from medtoolkit.data.ehr import EHRData
from medtoolkit.training.trainer import compute_loss
from paths import without_machine_paths


def machine() -> dict[str, Any]:
    """A short description of where the benchmark ran."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def last_visit_view(batch: PaddedBatch, logits: torch.Tensor) -> tuple[torch.Tensor, PaddedBatch]:
    """Restrict a one-patient prefix batch and its logits to the prefix's last visit."""
    view = PaddedBatch(
        codes={k: v[:, -1:] for k, v in batch.codes.items()},
        visit_mask=batch.visit_mask[:, -1:],
        medications=batch.medications[:, -1:],
        patient_index=batch.patient_index,
        hospital=None if batch.hospital is None else batch.hospital[:, -1:],
    )
    return logits[:, -1:], view


def papers_way_epoch(
    model: Recommender,
    losses: list[Loss],
    optimizer: torch.optim.Optimizer,
    data: EHRData,
    patients: list[int],
    device: torch.device,
) -> float:
    """Train the way the reference code does: one patient at a time, one optimizer step per
    visit, each step recomputing the whole visit prefix (a Python loop over visits).

    Returns:
        wall seconds for the given patients.
    """
    model.train()
    started = time.perf_counter()
    for patient in patients:
        full = make_batch(data, [patient]).to(device)
        for t in range(full.max_visits):
            prefix = PaddedBatch(
                codes={k: v[:, : t + 1] for k, v in full.codes.items()},
                visit_mask=full.visit_mask[:, : t + 1],
                medications=full.medications[:, : t + 1],
                patient_index=full.patient_index,
            )
            logits = model(prefix)
            last_logits, last_batch = last_visit_view(prefix, logits)
            loss = compute_loss(losses, last_logits, last_batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - started


def write_json(payload: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(without_machine_paths(json.dumps(payload, indent=2)), encoding="utf-8")
    print(f"wrote {path}")
