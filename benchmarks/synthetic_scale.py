"""Scale: generate N synthetic visits, then one batched GAMENet training epoch over them.

Usage::

    python benchmarks/synthetic_scale.py --visits 1000000 3000000 10000000 \
        [--batch-size 64] [--out benchmarks/results/synthetic_scale.json]

Every size runs in a fresh subprocess (``--child``), so the peak resident memory reported
for a size is that size's own. Each child records: generation, schema and statistics
seconds, one training epoch's seconds and training visits per second, peak RSS after
generation and at the end, the torch thread count (set to ``--threads``, default 1) and
the load average at its start and end (the machine may be shared). ``--out`` keeps the
runs of sizes not measured this time, so 1M and 3M can be measured first and 10M later;
``per_visit`` compares every size with the smallest (cost grows linearly when the ratios
stay near 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def commit() -> dict[str, Any]:
    """The measured code: ``HEAD`` and how many paths differ from it (``git status --short``)."""
    return {"head": _git("rev-parse", "HEAD").strip() or None,
            "dirty_paths": len(_git("status", "--short").splitlines())}


def child(visits: int, batch_size: int, threads: int, device_name: str, out: Path) -> None:
    """Measure one size in this process and write its record to ``out``."""
    import torch
    from tqdm.auto import tqdm

    import medtoolkit as mt
    from medtoolkit.training.device import resolve_device, seed_everything
    from medtoolkit.training.trainer import Trainer

    sys.path.insert(0, str(HERE))
    from common import machine, peak_rss_mb

    load_start = os.getloadavg()
    torch.set_num_threads(threads)
    experiment = mt.build("gamenet", overrides=[
        "dataset.type=synthetic", f"dataset.n_visits={visits}", f"trainer.batch_size={batch_size}",
        "trainer.progress=bar", f"trainer.num_threads={threads}", f"device={device_name}", "task.seeds=[0]"])
    config = experiment.config
    started = time.perf_counter()
    data = experiment.load_data(progress=False)
    generate_seconds = time.perf_counter() - started
    rss_after_data = peak_rss_mb()
    print(f"generated {data.n_patients:,} patients / {data.n_visits:,} visits in {generate_seconds:.1f} s "
          f"(peak RSS {rss_after_data:.0f} MB)", flush=True)

    started = time.perf_counter()
    statistics = data.statistics()
    statistics_seconds = time.perf_counter() - started
    task = config.task.build(None)
    started = time.perf_counter()
    split = task.splits(data)[0]
    split_seconds = time.perf_counter() - started
    started = time.perf_counter()
    schema = task.build_schema(data, split)
    schema_seconds = time.perf_counter() - started
    rss_after_schema = peak_rss_mb()
    seed_everything(config.seed)
    model, losses = experiment._build_model(schema)
    device = resolve_device(config.device)
    trainer = Trainer(model, losses, config.trainer, device, seed=config.seed)
    torch.set_num_threads(threads)  # whatever the trainer did
    bar = tqdm(total=len(split.train), unit="patient", desc="epoch", mininterval=30, file=sys.stdout)
    started = time.perf_counter()
    loss = trainer.train_epoch(data, split.train, bar)
    epoch_seconds = time.perf_counter() - started
    bar.close()
    train_visits = int(data.visits_per_patient[split.train].sum())
    result: dict[str, Any] = {
        "visits": data.n_visits,
        "patients": data.n_patients,
        "train_patients": int(len(split.train)),
        "train_visits": train_visits,
        "generate_seconds": round(generate_seconds, 2),
        "statistics_seconds": round(statistics_seconds, 2),
        "split_seconds": round(split_seconds, 2),
        "schema_seconds": round(schema_seconds, 2),
        "epoch_seconds": round(epoch_seconds, 2),
        "train_visits_per_second": round(train_visits / epoch_seconds, 1),
        "generated_visits_per_second": round(data.n_visits / generate_seconds, 1),
        "epoch_loss": loss,
        "peak_rss_mb_after_generation": round(rss_after_data, 1),
        "peak_rss_mb_after_schema": round(rss_after_schema, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "data_mb": round(_data_bytes(data) / 2**20, 1),
        "torch_threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "device": str(device),
        "machine": machine(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "statistics": {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in statistics.items()},
    }
    if device.type == "cuda":
        result["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(f"one epoch over {train_visits:,} training visits: {epoch_seconds:.1f} s; "
          f"peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")


def _data_bytes(data: Any) -> int:
    """Bytes of the dataset's numeric columns (codes, offsets, time, hospital)."""
    columns = [data.visit_offsets, *data.codes.values(), *data.code_offsets.values(), data.time, data.hospital]
    return sum(int(c.nbytes) for c in columns if c is not None)


def per_visit(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Seconds (and MB) per visit of every size over those of the smallest size."""
    if not runs:
        return {}
    sizes = sorted(runs, key=int)
    base = runs[sizes[0]]

    def ratio(run: dict[str, Any], key: str, count: str) -> float:
        return round((run[key] / run[count]) / (base[key] / base[count]), 3)

    return {size: {"generate": ratio(runs[size], "generate_seconds", "visits"),
                   "epoch": ratio(runs[size], "epoch_seconds", "train_visits"),
                   "peak_rss": ratio(runs[size], "peak_rss_mb", "visits")} for size in sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON file; runs of other sizes already in it are kept")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.visits[0], args.batch_size, args.threads, args.device, args.child)
        return

    runs: dict[str, dict[str, Any]] = {}
    out = Path(args.out) if args.out else None
    if out is not None and out.is_file():
        previous = json.loads(out.read_text(encoding="utf-8"))
        runs = dict(previous.get("runs", {})) if isinstance(previous, dict) else {}
    for visits in args.visits:
        with tempfile.TemporaryDirectory() as scratch:
            record = Path(scratch) / "run.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--child", str(record),
                       "--visits", str(visits), "--batch-size", str(args.batch_size),
                       "--threads", str(args.threads), "--device", args.device]
            subprocess.run(command, check=True)
            run = json.loads(record.read_text(encoding="utf-8"))
        run["commit"] = commit()
        runs[str(visits)] = run
        result = {"benchmark": "synthetic_scale", "runs": runs, "per_visit": per_visit(runs)}
        print(json.dumps({k: run[k] for k in ("visits", "generate_seconds", "epoch_seconds", "peak_rss_mb",
                                                "train_visits_per_second")}), flush=True)
        if out is not None:  # after every size: a long run interrupted later keeps what it measured
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
