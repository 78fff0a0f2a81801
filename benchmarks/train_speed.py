"""Batched training vs the papers' way (one patient per step, Python loop over visits), side by side.

Usage::

    python benchmarks/train_speed.py --preset gamenet --data ../shared/data/mimic3-safedrug \
        [--papers-patients all|N] [--device cpu|cuda] [--out benchmarks/results/speed_gamenet.json]
    python benchmarks/train_speed.py --preset algnet --baseline gamenet --data ../shared/data/mimic3-safedrug \
        --out benchmarks/results/speed_algnet.json

Both variants train the *same* model class with the same losses on the legacy training split.
The papers' way is timed over ``--papers-patients`` training patients (``all`` = a full epoch)
and, when a subset is used, scaled to a full epoch by the number of visits.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import medtoolkit as mt
from medtoolkit.components.schema import DataSchema
from medtoolkit.data.ehr import EHRData
from medtoolkit.experiment import Experiment
from medtoolkit.training.device import resolve_device, seed_everything
from medtoolkit.training.trainer import Trainer

from common import machine, papers_way_epoch, peak_rss_mb, write_json


def time_batched_epochs(
    experiment: Experiment, data: EHRData, train: np.ndarray, schema: DataSchema, device: torch.device, epochs: int
) -> list[float]:
    """Wall seconds of ``epochs`` batched training epochs of ``experiment``'s model (first = warm-up)."""
    config = experiment.config
    seed_everything(config.seed)
    model, losses = experiment._build_model(schema)
    trainer = Trainer(model, losses, config.trainer, device, seed=config.seed)
    seconds = []
    for _ in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        trainer.train_epoch(data, train)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return seconds


def steady_median(seconds: list[float]) -> float:
    """Median epoch time without the first (warm-up) epoch, when there is more than one."""
    return float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gamenet")
    parser.add_argument("--data", required=True, help="processed MIMIC-III directory (safedrug pickles)")
    parser.add_argument("--papers-patients", default="all", help="'all' or a number of training patients")
    parser.add_argument("--batched-epochs", type=int, default=6, help="batched epochs timed (first is warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--baseline", default=None, help="also time this preset's batched epochs (e.g. gamenet)")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    overrides = [f"dataset.type=safedrug_pickle", f"dataset.root={args.data}", "task.protocol=legacy",
                 f"device={args.device}", "trainer.progress=none", *args.override]
    experiment = mt.build(args.preset, overrides=overrides)
    config = experiment.config
    device = resolve_device(config.device)
    data = experiment.load_data(progress=False)
    task = config.task.build(None)
    split = task.splits(data)[0]
    schema = task.build_schema(data, split)
    train_visits = int(data.visits_per_patient[split.train].sum())

    # --- batched (ours)
    batched_seconds = time_batched_epochs(experiment, data, split.train, schema, device, args.batched_epochs)
    batched_epoch = steady_median(batched_seconds)
    baseline: dict[str, object] = {}
    if args.baseline:  # another preset's batched epochs on the same data, split and process
        base_experiment = mt.build(args.baseline, overrides=overrides)
        base_seconds = time_batched_epochs(base_experiment, data, split.train, schema, device, args.batched_epochs)
        base_epoch = steady_median(base_seconds)
        baseline = {"baseline_preset": args.baseline, "baseline_batched_epoch_seconds": base_epoch,
                    "baseline_batched_epoch_seconds_all": base_seconds,
                    "ratio_to_baseline": batched_epoch / base_epoch}

    # --- papers' way
    seed_everything(config.seed)
    model, losses = experiment._build_model(schema)
    model.to(device)
    losses = [loss.to(device) for loss in losses]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.trainer.lr)
    if args.papers_patients == "all":
        chosen = split.train.tolist()
    else:
        rng = np.random.default_rng(0)
        chosen = sorted(rng.choice(split.train, size=int(args.papers_patients), replace=False).tolist())
    chosen_visits = int(data.visits_per_patient[chosen].sum())
    papers_seconds = papers_way_epoch(model, losses, optimizer, data, chosen, device)
    papers_epoch = papers_seconds * train_visits / chosen_visits

    result = {
        "preset": args.preset,
        "device": str(device),
        "machine": machine(),
        "train_patients": int(len(split.train)),
        "train_visits": train_visits,
        "batch_size": config.trainer.batch_size,
        "batched_epoch_seconds": batched_epoch,
        "batched_epoch_seconds_all": batched_seconds,
        "papers_way_patients_timed": len(chosen),
        "papers_way_visits_timed": chosen_visits,
        "papers_way_seconds_timed": papers_seconds,
        "papers_way_epoch_seconds": papers_epoch,
        "speedup": papers_epoch / batched_epoch,
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "peak_rss_mb": peak_rss_mb(),
        **baseline,
    }
    print(f"{args.preset} on {device}: batched epoch {batched_epoch:.2f} s; papers' way epoch "
          f"{papers_epoch:.1f} s ({len(chosen)} patients timed); speed-up {result['speedup']:.1f}x")
    if baseline:
        print(f"{args.baseline} batched epoch {baseline['baseline_batched_epoch_seconds']:.2f} s; "
              f"{args.preset} / {args.baseline} = {baseline['ratio_to_baseline']:.2f}x")
    if args.out:
        write_json(result, args.out)


if __name__ == "__main__":
    main()
