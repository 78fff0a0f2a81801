"""Drug package recommendation on the processed MIMIC-III benchmark: the DPR paper's Table 4 layout.

Usage::

    python benchmarks/dpr_packages.py --data ../shared/data/mimic3-safedrug \
        --relations ../shared/data/drug-knowledge/ddi-types --seeds 1203 1204 1205 \
        -o trainer.num_threads=1 --out benchmarks/results/dpr_packages.json

    # rows can be split over processes and merged afterwards
    python benchmarks/dpr_packages.py ... --rows ncf nn gnn --out part1.json
    python benchmarks/dpr_packages.py --merge part1.json part2.json --out benchmarks/results/dpr_packages.json

Every row trains with ``task.protocol=legacy`` (the fixed 2/3 : 1/6 : 1/6 patient split) and is
scored on the same test visits, averaged per visit (the paper's per-record metrics) with 10
bootstrap rounds of 80 % of the test patients. Package rows use the ``package_recommendation``
task: one package per test visit chosen among the packages of the 10 nearest training visits (NN:
the nearest one; NCF: the top-K drugs). ``nn`` re-scores the trained ``ncf`` models with
``task.scoring=nearest`` (the ``dpr_nn`` preset trains exactly as ``dpr_ncf``). GAMENet is trained once per seed and scored twice on the
same visits: choosing a package by likelihood among the candidates, and as a multi-label
recommender (threshold 0.5). ``wg_nosign``/``ag_nosign`` train without the signed-interaction file (the shipped
DDI pairs as antagonism edges only); ``wg_generate`` re-scores each trained ``dpr_wg`` model with
the package generation of section 6 switched on, and ``gamenet`` re-scores each trained
``gamenet_package`` model as a multi-label recommender (``task.scoring=threshold``): no retraining.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import medtoolkit as mt
from medtoolkit.experiment import evaluate_run

from common import machine, write_json

#: DPR paper, Table 4 (private hospital data, 158,556 records, 1,428 drugs)
PAPER = {
    "ncf": {"precision": 0.3812, "recall": 0.5442, "f1": 0.4200},
    "nn": {"precision": 0.4890, "recall": 0.4985, "f1": 0.4732},
    "gnn": {"precision": 0.5085, "recall": 0.5288, "f1": 0.5009},
    "wg": {"precision": 0.5133, "recall": 0.5488, "f1": 0.5137},
    "ag": {"precision": 0.5260, "recall": 0.5407, "f1": 0.5162},
}

#: trained row -> (label, preset, extra overrides, uses the signed file)
ROWS: dict[str, tuple[str, str, list[str], bool]] = {
    "ncf": ("NCF", "dpr_ncf", [], False),
    "gnn": ("GNN", "dpr_gnn", [], True),
    "wg": ("DPR-WG", "dpr_wg", [], True),
    "ag": ("DPR-AG", "dpr_ag", [], True),
    "wg_nosign": ("DPR-WG, no signed file", "dpr_wg", [], False),
    "ag_nosign": ("DPR-AG, no signed file", "dpr_ag", [], False),
    "gamenet_package": ("GAMENet (package by likelihood)", "gamenet", ["task.type=package_recommendation"], False),
}
#: re-scored row -> (label, trained row whose models it re-scores, evaluate overrides)
RESCORED: dict[str, tuple[str, str, list[str]]] = {
    # dpr_nn is dpr_ncf with scoring nearest: the same training, so its models are re-scored
    "nn": ("NN", "ncf", ["task.scoring=nearest", "task.similarity=model"]),
    "gamenet": ("GAMENet (multi-label, threshold 0.5)", "gamenet_package", ["task.scoring=threshold"]),
    "wg_generate": ("DPR-WG + package generation", "wg", ["task.generate=true"]),
}
KEYS = ("precision", "recall", "f1", "jaccard", "ddi_rate", "avg_drugs")


def run_row(row: str, args: argparse.Namespace, seed: int, out_dir: Path) -> dict[str, Any]:
    """Train one row for one seed; its test metrics, package report and timings."""
    label, preset, extra, signed = ROWS[row]
    # the row's own overrides first: a task.type switch resets the task's other parameters
    overrides = [*extra, "dataset.type=safedrug_pickle", f"dataset.root={args.data}", "task.protocol=legacy",
                 f"seed={seed}", "eval.averaging=visit", *args.override]
    if signed:
        overrides.append(f"task.relations={args.relations}")
    experiment = mt.build(preset, overrides=overrides)
    started = time.perf_counter()
    metrics = experiment.run(out_dir, overwrite=True).metrics
    wall = time.perf_counter() - started
    result = {"seed": seed, "wall_seconds": wall, "torch_threads": torch.get_num_threads(),
              "test": {k: metrics["test"][k] for k in KEYS if k in metrics["test"]},
              "packages": metrics["test"].get("packages"),
              "stages": [{"name": s.get("name"), "epoch_seconds": s.get("epoch_seconds"),
                          "best_epochs": s.get("best_epochs")} for s in metrics.get("stages", [])],
              "epoch_seconds": metrics.get("epoch_seconds")}
    return result


def rescore(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """Re-score a finished run with other prediction parameters (same weights, same test visits)."""
    metrics = evaluate_run(run_dir, overrides=overrides)["test"]
    return {"test": {k: metrics[k] for k in KEYS if k in metrics}, "packages": metrics.get("packages")}


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of the bootstrap means, the mean bootstrap std and the std over seeds."""
    summary = {}
    for key in KEYS:
        means = [r["test"][key]["mean"] for r in per_seed if r["test"].get(key, {}).get("mean") is not None]
        stds = [r["test"][key]["std"] for r in per_seed if r["test"].get(key, {}).get("std") is not None]
        if means:
            summary[key] = {"mean": float(np.mean(means)), "bootstrap_std": float(np.mean(stds)),
                            "seed_std": float(np.std(means)), "per_seed": means}
    return summary


def table(models: dict[str, Any]) -> str:
    """The Table 4 layout: precision / recall / F1 (ours, mean ± bootstrap std) beside the paper."""
    lines = ["| model | precision | recall | F1 | Jaccard | DDI | generated | paper P / R / F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for row, entry in models.items():
        s = entry["summary"]

        def cell(key: str) -> str:
            return f"{s[key]['mean']:.4f} ± {s[key]['bootstrap_std']:.4f}" if key in s else "-"

        paper = PAPER.get(row)
        paper_text = f"{paper['precision']:.4f} / {paper['recall']:.4f} / {paper['f1']:.4f}" if paper else ""
        generated = entry.get("generated_share")
        lines.append(f"| {entry['label']} | {cell('precision')} | {cell('recall')} | {cell('f1')} | "
                     f"{cell('jaccard')} | {cell('ddi_rate')} | "
                     f"{'' if generated is None else f'{generated:.3f}'} | {paper_text} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--relations", default="../shared/data/drug-knowledge/ddi-types")
    parser.add_argument("--rows", nargs="+", default=[*ROWS, *RESCORED])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1203, 1204, 1205])
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--runs", default=None, help="keep the run directories here (default: a temp dir)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON")
    args = parser.parse_args()

    if args.merge:
        results: dict[str, Any] = {"machine": None, "merged_from": args.merge, "models": {}}
        for path in args.merge:
            part = json.loads(Path(path).read_text(encoding="utf-8"))
            results["machine"] = results["machine"] or part.get("machine")
            for row, entry in part["models"].items():
                earlier = results["models"].get(row)
                if earlier is not None:  # the same row split over processes by seed: join the seeds
                    seeds = {r["seed"] for r in entry["per_seed"]}
                    entry = {**entry, "per_seed": sorted(
                        [r for r in earlier["per_seed"] if r["seed"] not in seeds] + entry["per_seed"],
                        key=lambda r: r["seed"])}
                    entry["summary"] = summarise(entry["per_seed"])
                results["models"][row] = entry
        order = ["ncf", "nn", "gnn", "wg", "ag", "wg_nosign", "ag_nosign", "wg_generate", "gamenet_package",
                 "gamenet"]
        results["models"] = {k: results["models"][k] for k in order if k in results["models"]}
        print(table(results["models"]))
        if args.out:
            write_json(results, args.out)
        return
    if args.data is None:
        parser.error("--data is required (unless --merge)")
    # absolute paths: the run directories' config.yaml must resolve from anywhere when re-scored
    args.data = str(Path(args.data).resolve())
    args.relations = str(Path(args.relations).resolve())
    unknown = [r for r in args.rows if r not in ROWS and r not in RESCORED]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {[*ROWS, *RESCORED]}")
    runs_root = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="dpr_packages_"))
    results = {"machine": machine(), "overrides": args.override, "relations": args.relations, "models": {}}
    for row in [r for r in args.rows if r in ROWS]:
        per_seed = []
        for seed in args.seeds:
            out_dir = runs_root / f"{row}_{seed}"
            per_seed.append(run_row(row, args, seed, out_dir))
            test = per_seed[-1]["test"]
            print(f"{row} seed {seed}: " + ", ".join(f"{k} {test[k]['mean']:.4f}" for k in KEYS if k in test),
                  flush=True)
        entry = {"label": ROWS[row][0], "preset": ROWS[row][1], "signed_file": ROWS[row][3],
                 "summary": summarise(per_seed), "per_seed": per_seed, "paper": PAPER.get(row)}
        results["models"][row] = entry
        if args.out:
            write_json(results, args.out)
    for row in [r for r in args.rows if r in RESCORED]:
        label, source, overrides = RESCORED[row]
        per_seed = []
        for seed in args.seeds:
            run_dir = runs_root / f"{source}_{seed}"
            if not (run_dir / "metrics.json").exists():
                run_row(source, args, seed, run_dir)
            per_seed.append({"seed": seed, **rescore(run_dir, overrides)})
            print(f"{row} seed {seed}: f1 {per_seed[-1]['test']['f1']['mean']:.4f}", flush=True)
        shares = [(r["packages"] or {}).get("generated_share") for r in per_seed]
        results["models"][row] = {
            "label": label, "rescores": source, "paper": PAPER.get(row), "overrides": overrides, "summary": summarise(per_seed),
            "per_seed": per_seed,
            "generated_share": float(np.mean(shares)) if all(v is not None for v in shares) else None}
        if args.out:
            write_json(results, args.out)
    print("\nlegacy protocol, visit-averaged; mean ± bootstrap std over the seeds' means")
    print(table(results["models"]))


if __name__ == "__main__":
    main()
