"""Scale: generate N synthetic visits, then one batched GAMENet training epoch over them.

Usage::

    python benchmarks/synthetic_scale.py --visits 1000000 [--batch-size 64] [--out FILE]

Reports generation time, epoch time and peak resident memory (whole process).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import medtoolkit as mt
from medtoolkit.training.device import resolve_device, seed_everything
from medtoolkit.training.trainer import Trainer

from common import machine, peak_rss_mb, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    experiment = mt.build("gamenet", overrides=[
        f"dataset.n_visits={args.visits}", f"trainer.batch_size={args.batch_size}", "trainer.progress=bar",
        f"device={args.device}", "task.seeds=[0]"])
    config = experiment.config
    started = time.perf_counter()
    data = experiment.load_data(progress=True)
    generate_seconds = time.perf_counter() - started
    rss_after_data = peak_rss_mb()
    print(f"generated {data.n_patients:,} patients / {data.n_visits:,} visits in {generate_seconds:.1f} s "
          f"(peak RSS {rss_after_data:.0f} MB)")

    task = config.task.build(None)
    split = task.splits(data)[0]
    started = time.perf_counter()
    schema = task.build_schema(data, split)
    schema_seconds = time.perf_counter() - started
    seed_everything(config.seed)
    model, losses = experiment._build_model(schema)
    device = resolve_device(config.device)
    trainer = Trainer(model, losses, config.trainer, device, seed=config.seed)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(split.train), unit="patient", desc="epoch")
    started = time.perf_counter()
    loss = trainer.train_epoch(data, split.train, bar)
    epoch_seconds = time.perf_counter() - started
    bar.close()
    train_visits = int(data.visits_per_patient[split.train].sum())
    result = {
        "machine": machine(),
        "device": str(device),
        "patients": data.n_patients,
        "visits": data.n_visits,
        "train_patients": int(len(split.train)),
        "train_visits": train_visits,
        "generate_seconds": generate_seconds,
        "peak_rss_mb_after_generation": rss_after_data,
        "schema_seconds": schema_seconds,
        "epoch_seconds": epoch_seconds,
        "train_visits_per_second": train_visits / epoch_seconds,
        "epoch_loss": loss,
        "batch_size": args.batch_size,
        "peak_rss_mb": peak_rss_mb(),
        "statistics": {k: (float(v) if isinstance(v, (np.floating, float)) else v)
                       for k, v in data.statistics().items()},
    }
    if device.type == "cuda":
        result["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(f"one epoch over {train_visits:,} training visits: {epoch_seconds:.1f} s; "
          f"peak RSS {result['peak_rss_mb']:.0f} MB")
    if args.out:
        write_json(result, args.out)


if __name__ == "__main__":
    main()
