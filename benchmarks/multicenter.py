"""Multi-center comparison on synthetic hospitals with known prescribing shifts (TEMPT Tables 3 and 7).

Usage::

    python benchmarks/multicenter.py --seeds 42 43 44 45 46 --hospitals 40 --visits 24000 \
        --drug-shift 4 --epochs 10 --lr 2e-3 --bins 400 1000 --out benchmarks/results/multicenter.json

    # seeds run in parallel processes (one torch thread each), then one table over all of them
    python benchmarks/multicenter.py --merge a.json b.json --out benchmarks/results/multicenter.json

    # speed: pre-training (short) then prompt tuning of 100 hospitals, nothing else
    python benchmarks/multicenter.py --speed --hospitals 100 --visits 30000 --epochs 30 \
        --out benchmarks/results/multicenter_speed.json

One staged run per seed (needs medtoolkit-tempt) trains every row of the comparison on the same
data, split and seed:

* ``pretrain``: the ``tempt`` preset's self-supervised stage (masked codes + 0.01 x contrastive)
  on every hospital's training stays;
* ``tempt`` (prompt tuning), ``tempt_finetune``, ``tempt_finetune_freeze``, ``tempt_lora``: one
  unit per hospital, each starting from the pre-trained weights, with the adapter of that preset;
* ``single_train``: one model per hospital from scratch; ``full_train``: one model on every
  hospital.

Every row is scored on the same test stays, per hospital and per hospital-size bin (the mean over
the bin's hospitals), and the tables print mean +- std over the seeds. The data is the
``synthetic`` generator with ``n_hospitals`` Zipf-sized hospitals and per-hospital prescribing
offsets of strength ``--drug-shift`` (the pairwise Jensen-Shannon divergence of the hospitals'
prescriptions is reported). The model keeps the preset's architecture (2 post-LN layers, 2 heads)
at a CPU-sized width ``--dim`` (the paper: 300); the differences to the preset are listed in the
JSON output under ``overrides``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtoolkit.experiment import Experiment
from medtoolkit.config import apply_overrides, load_yaml

from common import machine, write_json

#: rows of the tables, in the paper's order: (row name, stage name, paper label)
ROWS = (
    ("full_train", "full_train", "Full-Train"),
    ("single_train", "single_train", "Single-Train"),
    ("tempt_finetune", "finetune", "TEMPT (finetune)"),
    ("tempt_finetune_freeze", "finetune_freeze", "TEMPT (finetune-freeze)"),
    ("tempt_lora", "lora", "TEMPT (LoRA)"),
    ("tempt", "prompt", "TEMPT"),
)
GROUP_ORDER = ("small", "medium", "large", "all")
METRICS = ("prauc", "jaccard", "f1")


def tempt_preset() -> dict[str, Any]:
    """The raw ``tempt`` preset of the installed plugin."""
    from medtoolkit_tempt.presets import TEMPT_PATH

    return load_yaml(TEMPT_PATH)


def staged_config(args: argparse.Namespace, seed: int) -> tuple[dict[str, Any], list[str]]:
    """The ``tempt`` preset turned into one run whose stages train every row of the comparison."""
    base = tempt_preset()
    pretrain, tune = base["stages"][0], base["stages"][1]
    row_tune = {key: value for key, value in tune.items() if key not in ("name", "adapter")}
    stages = [
        copy.deepcopy(pretrain),
        {**copy.deepcopy(row_tune), "name": "prompt", "adapter": copy.deepcopy(tune["adapter"]), "evaluate": True},
        {**copy.deepcopy(row_tune), "name": "finetune", "adapter": {"type": "finetune"}, "evaluate": True},
        {**copy.deepcopy(row_tune), "name": "finetune_freeze", "adapter": {"type": "finetune_freeze"},
         "evaluate": True},
        {**copy.deepcopy(row_tune), "name": "lora",
         "adapter": {"type": "lora", "rank": 8, "alpha": 16, "targets": ["encoder.*"]}, "evaluate": True},
        {"name": "single_train", "repeat_per": "hospital", "evaluate": True},
        {"name": "full_train", "evaluate": True},
    ]
    overrides = [
        f"seed={seed}",
        f"task.seeds=[{seed}]",
        "dataset={type: synthetic}",
        f"dataset.n_hospitals={args.hospitals}",
        f"dataset.n_visits={args.visits}",
        f"dataset.hospital_drug_shift={args.drug_shift}",
        f"dataset.hospital_size_skew={args.size_skew}",
        f"dataset.seed={args.data_seed}",
        f"model.encoder.dim={args.dim}",
        f"trainer.epochs={args.epochs}",
        f"trainer.lr={args.lr}",
        f"trainer.num_threads={args.threads}",
        "trainer.progress=none",
        f"eval.group_bins=[{args.bins[0]},{args.bins[1]}]",
    ]
    raw, _ = apply_overrides(base, overrides)
    raw["stages"] = stages
    raw["name"] = "multicenter"
    return raw, overrides


def stage_tests(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Stage name -> its test metrics (the last stage's are the run's ``test``)."""
    found = {stage["name"]: stage["test"] for stage in metrics["stages"] if stage.get("test")}
    last = metrics["stages"][-1]["name"]
    found.setdefault(last, metrics["test"])
    return found


def row_values(test: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{group: {metric: value}}`` of one scored stage (``overall`` = all test stays)."""
    values: dict[str, dict[str, float | None]] = {"overall": {m: test[m]["mean"] for m in METRICS}}
    for group in GROUP_ORDER:
        entry = test["groups"]["per_bin"].get(group)
        if entry is not None:
            values[group] = {m: entry.get(m) for m in METRICS}
    return values


def mean_std(values: list[float | None]) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return "n/a"
    return f"{np.mean(found):.4f} ± {np.std(found):.4f}"


def print_tables(per_seed: list[dict[str, Any]], trainable: dict[str, Any]) -> str:
    """Table 3 (overall) and Table 7 (per size group) layouts, mean ± std over seeds."""
    lines = ["Table 3 layout (all test stays; mean ± std over seeds)", "",
             "| model | PRAUC | Jaccard | F1 | trainable share |", "|---|---|---|---|---|"]
    for row, _stage, label in ROWS:
        cells = [mean_std([seed["rows"][row]["overall"][m] for seed in per_seed]) for m in METRICS]
        share = trainable.get(row)
        lines.append(f"| {label} | {' | '.join(cells)} | {'' if share is None else f'{share:.2%}'} |")
    for metric in METRICS:
        lines += ["", f"Table 7 layout: {metric} per hospital-size group (mean over the group's hospitals; "
                      "mean ± std over seeds)", "",
                  "| model | " + " | ".join(GROUP_ORDER) + " |", "|---|" + "---|" * len(GROUP_ORDER)]
        for row, _stage, label in ROWS:
            cells = [mean_std([seed["rows"][row].get(group, {}).get(metric) for seed in per_seed])
                     for group in GROUP_ORDER]
            lines.append(f"| {label} | {' | '.join(cells)} |")
    text = "\n".join(lines)
    print(text)
    return text


def merge(paths: list[Path], out: Path | None) -> None:
    """One table over the seeds of several result files written with the same arguments."""
    loaded = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    keys = ("hospitals", "visits", "drug_shift", "size_skew", "data_seed", "dim", "epochs", "lr", "bins")
    first = loaded[0]["arguments"]
    for path, payload in zip(paths, loaded):
        different = [k for k in keys if payload["arguments"].get(k) != first.get(k)]
        if different:
            raise SystemExit(f"error: {path} was run with other arguments ({', '.join(different)})")
    per_seed = sorted((seed for payload in loaded for seed in payload["per_seed"]), key=lambda s: s["seed"])
    trainable = loaded[0]["trainable_share"]
    tables = print_tables(per_seed, trainable)
    if out is not None:
        merged = dict(loaded[0])
        merged.update({
            "arguments": {**first, "seeds": [seed["seed"] for seed in per_seed], "out": str(out)},
            "merged_from": [str(path) for path in paths],
            "wall_seconds_per_file": [payload["wall_seconds"] for payload in loaded],
            "per_seed": per_seed,
            "tables": tables,
        })
        merged.pop("wall_seconds", None)
        write_json(merged, out)


def speed(args: argparse.Namespace) -> None:
    """Time prompt tuning of every hospital in one process (after a short pre-training)."""
    raw, overrides = staged_config(args, args.seeds[0])
    pretrain = {**raw["stages"][0], "trainer": {**raw["stages"][0].get("trainer", {}), "epochs": 2}}
    raw["stages"] = [pretrain, raw["stages"][1]]
    experiment = Experiment.from_config(raw)
    started = time.perf_counter()
    metrics = experiment.run(out_dir=None, progress=False).metrics
    stages = {stage["name"]: stage for stage in metrics["stages"]}
    prompt = stages["prompt"]
    print(f"prompt tuning of {prompt['units']} hospitals ({prompt['trained_units']} trained), up to "
          f"{args.epochs} epochs each: {prompt['seconds']:.1f} s; pre-training (2 epochs) "
          f"{stages['pretrain']['seconds']:.1f} s; trainable {prompt['trainable_params']:,} of "
          f"{prompt['total_params']:,} ({prompt['trainable_share']:.2%}); {args.threads} torch thread(s)")
    if args.out is not None:
        write_json({"arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "overrides_of_the_tempt_preset": overrides, "machine": machine(),
                    "torch_threads": args.threads, "wall_seconds": time.perf_counter() - started,
                    "stages": metrics["stages"], "data": metrics["data"]}, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46])
    parser.add_argument("--hospitals", type=int, default=100)
    parser.add_argument("--visits", type=int, default=30000)
    parser.add_argument("--drug-shift", type=float, default=2.0)
    parser.add_argument("--size-skew", type=float, default=0.8)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bins", type=int, nargs=2, default=[150, 400])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="combine result files instead of running")
    parser.add_argument("--speed", action="store_true", help="time prompt tuning of every hospital only")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    torch.set_num_threads(args.threads)
    if args.speed:
        speed(args)
        return

    per_seed, trainable, stage_seconds = [], {}, {}
    started = time.perf_counter()
    for seed in args.seeds:
        raw, overrides = staged_config(args, seed)
        experiment = Experiment.from_config(raw)
        seed_started = time.perf_counter()
        result = experiment.run(out_dir=None, progress=False)
        metrics = result.metrics
        tests = stage_tests(metrics)
        rows = {row: row_values(tests[stage]) for row, stage, _ in ROWS}
        for stage in metrics["stages"]:
            stage_seconds.setdefault(stage["name"], []).append(stage["seconds"])
            row = next((r for r, s, _ in ROWS if s == stage["name"]), None)
            if row is not None:
                trainable[row] = stage["trainable_share"]
        per_seed.append({"seed": seed, "rows": rows, "seconds": time.perf_counter() - seed_started,
                         "stages": metrics["stages"], "data": metrics["data"]})
        print(f"seed {seed}: {time.perf_counter() - seed_started:.0f} s; "
              + ", ".join(f"{row} {rows[row]['overall']['jaccard']:.4f}" for row, _, _ in ROWS), flush=True)
    tables = print_tables(per_seed, trainable)
    if args.out is not None:
        write_json({
            "protocol": "synthetic multi-center data, per-stay samples, 8:1:1 per hospital by patient, "
                        "threshold 0.3, visit-averaged; size bins by records per hospital",
            "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "overrides_of_the_tempt_preset": overrides,
            "machine": machine(),
            "torch_threads": args.threads,
            "wall_seconds": time.perf_counter() - started,
            "stage_seconds_mean": {name: float(np.mean(v)) for name, v in stage_seconds.items()},
            "trainable_share": trainable,
            "per_seed": per_seed,
            "tables": tables,
        }, args.out)


if __name__ == "__main__":
    main()
