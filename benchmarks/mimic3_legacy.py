"""Accuracy on the processed MIMIC-III benchmark under the legacy protocol, beside the papers.

Usage::

    python benchmarks/mimic3_legacy.py --data ../shared/data/mimic3-safedrug \
        [--presets gamenet logistic_regression previous_visit] [--seeds 1203] \
        [--out benchmarks/results/mimic3_legacy.json]

    # SafeDrug, its frozen-MPNN ablation and GAMENet with/without the controllable DDI loss
    # (needs medtoolkit-molecule); --merge combines files of runs made in parallel
    python benchmarks/mimic3_legacy.py --data ../shared/data/mimic3-safedrug \
        --presets safedrug safedrug_frozen_mpnn gamenet gamenet_controllable_ddi --seeds 1203 1204 1205 \
        -o trainer.num_threads=1 --out benchmarks/results/molecule_legacy.json

    # GAMENet and ALGNet side by side over three training seeds (needs medtoolkit-algnet)
    python benchmarks/mimic3_legacy.py --data ../shared/data/mimic3-safedrug \
        --presets gamenet algnet --seeds 1203 1 2 --out benchmarks/results/algnet_vs_gamenet.json

Each preset is trained once per training seed with ``task.protocol=legacy`` and scored with
10 bootstrap rounds of 80 % of the 1,058 test patients (patient-averaged, threshold 0.5).
The script also runs the exactness check of split and metrics: ``previous_visit`` on the test
visits that have a previous visit, averaged per visit without bootstrap (expected Jaccard 0.4691).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import medtoolkit as mt
from medtoolkit.metrics import aggregate, score_visits
from medtoolkit.training.predict import predict
from medtoolkit.training.device import resolve_device

from common import machine, write_json

#: published numbers on this benchmark file (mean ± std), source in the docs
PAPER = {
    "gamenet": {"source": "DNMDR paper Table 2 / ALGNet paper Table 3",
                "jaccard": "0.5063 ± 0.0017 / 0.5067 ± 0.0025", "prauc": "0.7647 ± 0.0017 / 0.7631 ± 0.0030",
                "f1": "0.6624 / 0.6626", "ddi_rate": "0.0833 / 0.0864"},
    "logistic_regression": {"source": "DNMDR paper Table 2", "jaccard": "0.4949 ± 0.0023",
                            "prauc": "0.7559 ± 0.0020", "f1": "0.6518 ± 0.0022", "ddi_rate": "0.0680"},
    "algnet": {"source": "ALGNet paper Table 3", "jaccard": "0.5176 ± 0.0010", "prauc": "0.7714 ± 0.0043",
               "f1": "0.6729 ± 0.0007", "ddi_rate": "0.0791 ± 0.0012"},
    "previous_visit": {"source": "reference notes §3.5 (Nearest, visit-averaged)", "jaccard": "0.4691",
                       "f1": "0.6268", "ddi_rate": "0.0762"},
}
#: SafeDrug (reference notes §5: SafeDrug README; DNMDR paper Table 3; ALGNet paper Table 3). Every
#: published SafeDrug number comes from the public code, whose MPNN is never trained (a fixed random
#: projection): that behaviour is the safedrug_frozen_mpnn preset; safedrug trains the MPNN.
_SAFEDRUG_PUBLISHED = {
    "source": "SafeDrug paper (archived branch, older 131-drug file) / SafeDrug main on this file (lr 5e-4, "
              "README) / DNMDR paper Table 3 / ALGNet paper Table 3",
    "jaccard": "0.5213 ± 0.0030 / 0.5114 ± 0.0026 / 0.5161 ± 0.0016 / 0.5113 ± 0.0030",
    "prauc": "0.7647 ± 0.0025 / 0.7649 ± 0.0028 / 0.7671 ± 0.0008 / 0.7663 ± 0.0025",
    "f1": "0.6768 / 0.6676 / 0.6720 / 0.6680",
    "ddi_rate": "0.0589 / 0.0632 / 0.06165 / 0.0598",
}
PAPER["safedrug"] = dict(_SAFEDRUG_PUBLISHED, note="trained MPNN (the published numbers are the public code's, "
                                                   "frozen MPNN)")
PAPER["safedrug_frozen_mpnn"] = dict(_SAFEDRUG_PUBLISHED, note="public code: frozen MPNN")
PAPER["gamenet_controllable_ddi"] = {"source": "none published (gamenet with SafeDrug's controllable DDI loss)"}
try:  # the ALGNet ablation presets (Tables 4-5), when the medtoolkit-algnet plugin is installed
    from medtoolkit_algnet import ABLATIONS

    for _row in ABLATIONS:
        PAPER[_row.name] = {"source": f"ALGNet paper Table {_row.paper_table} ({_row.paper_label})",
                            "jaccard": f"{_row.paper_jaccard:.4f}"}
except ImportError:
    pass

try:  # DNMDR and its variants (Tables 3-5), when the medtoolkit-dnmdr plugin is installed
    from medtoolkit_dnmdr.presets import FULL_MODEL as _DNMDR, VARIANTS as _DNMDR_VARIANTS

    for _variant in (_DNMDR, *_DNMDR_VARIANTS):
        PAPER[_variant.name] = {
            "source": f"DNMDR paper Table {3 if _variant is _DNMDR else _variant.paper_table} ({_variant.paper_label}; "
                      f"131-drug file)",
            **{key: f"{value:.4f}" for key, value in _variant.paper.items()}}
except ImportError:
    pass

SUMMARY_KEYS = ("jaccard", "prauc", "f1", "ddi_rate", "avg_drugs")


def summary_table(models: dict[str, dict]) -> str:
    """Side-by-side text table: per model and metric ``mean ± bootstrap std (± seed std)``.

    The mean is over training seeds of each seed's bootstrap mean; the bootstrap std is the
    mean over seeds of the std over the 10 bootstrap rounds; the seed std is the std of the
    per-seed means. The paper's Jaccard / PRAUC follow.
    """
    header = ["model", "seeds", *SUMMARY_KEYS, "s/epoch", "paper jaccard", "paper prauc"]
    rows = [header]
    for name, result in models.items():
        summary, paper = result["summary"], result.get("paper") or {}
        cells = [name, str(len(result["seeds"]))]
        for key in SUMMARY_KEYS:
            value = summary[key]
            cells.append(f"{value['mean']:.4f} ± {value['bootstrap_std']:.4f} (± {value['seed_std']:.4f})")
        cells += [f"{result['epoch_seconds_mean']:.2f}", paper.get("jaccard", "-"), paper.get("prauc", "-")]
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def exactness_check(data_dir: str) -> dict[str, float]:
    """previous_visit on legacy test visits with a previous visit, per-visit average, no bootstrap."""
    experiment = mt.build("previous_visit", overrides=[
        "dataset.type=safedrug_pickle", f"dataset.root={data_dir}", "task.protocol=legacy", "device=cpu"])
    config = experiment.config
    data = experiment.load_data(progress=False)
    task = config.task.build(None)
    split = task.splits(data)[0]
    schema = task.build_schema(data, split)
    model = config.model.build(schema)
    predictions = predict(model, data, split.test, 256, resolve_device("cpu"))
    keep = predictions.visit_position > 0
    scores = score_visits(predictions.targets[keep], predictions.probabilities[keep], 0.5, schema.ddi_adjacency)
    result = aggregate(scores, predictions.visit_patient[keep], "visit")
    result["test_patients"] = int(len(split.test))
    result["patients_with_previous_visit"] = int(len(np.unique(predictions.visit_patient[keep])))
    result["visits_scored"] = int(keep.sum())
    return result


def best_validation(metrics: dict) -> dict[str, float | None]:
    """Validation Jaccard and DDI rate of the selected (best) epoch of each split seed."""
    out = {}
    for key, history in metrics["history"].items():
        best = history.get("best_epoch")
        record = history["epochs"][best - 1]["validation"] if best else {}
        out[key] = {"epoch": best, "jaccard": record.get("jaccard"), "ddi_rate": record.get("ddi_rate")}
    return out


def merge_results(paths: list[str]) -> dict:
    """One result dict from files written by runs of this script made in parallel (later files win)."""
    merged: dict = {"machine": None, "merged_from": paths, "models": {}}
    for path in paths:
        part = json.loads(Path(path).read_text(encoding="utf-8"))
        merged["machine"] = merged["machine"] or part.get("machine")
        for key in ("exactness", "overrides"):
            if key in part:
                merged[key] = part[key]
        merged["models"].update(part["models"])
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--presets", nargs="+", default=["gamenet", "logistic_regression", "previous_visit"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1203])
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--out", default=None)
    parser.add_argument("--skip-exactness", action="store_true", help="skip the previous_visit exactness check")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="combine result files of runs made in parallel (no training)")
    args = parser.parse_args()

    if args.merge:
        results = merge_results(args.merge)
        print(summary_table(results["models"]))
        if args.out:
            write_json(results, args.out)
        return
    if args.data is None:
        parser.error("--data is required (unless --merge)")
    results: dict[str, dict] = {"machine": machine(), "overrides": args.override, "models": {}}
    if not args.skip_exactness:
        results["exactness"] = exactness_check(args.data)
        print("exactness check (previous_visit, visit-averaged):", results["exactness"])
    for preset in args.presets:
        runs = []
        walls, threads = [], set()
        for seed in args.seeds:
            experiment = mt.build(preset, overrides=[
                "dataset.type=safedrug_pickle", f"dataset.root={args.data}", "task.protocol=legacy",
                f"seed={seed}", *args.override])
            started = time.perf_counter()
            metrics = experiment.run().metrics
            walls.append(time.perf_counter() - started)
            threads.add(torch.get_num_threads())
            runs.append(metrics)
            test = metrics["test"]
            print(f"{preset} seed {seed}: " + ", ".join(
                f"{k} {test[k]['mean']:.4f} ± {test[k]['std']:.4f}" for k in ("jaccard", "prauc", "f1", "ddi_rate", "avg_drugs")))
        summary = {}
        for key in ("jaccard", "prauc", "f1", "precision", "recall", "ddi_rate", "avg_drugs"):
            means = [r["test"][key]["mean"] for r in runs]
            stds = [r["test"][key]["std"] for r in runs]
            summary[key] = {"mean": float(np.mean(means)), "bootstrap_std": float(np.mean(stds)),
                            "seed_std": float(np.std(means))}
        results["models"][preset] = {
            "summary": summary, "paper": PAPER.get(preset), "seeds": args.seeds,
            "epoch_seconds_mean": float(np.mean([s for r in runs for s in r["epoch_seconds"]] or [0.0])),
            "best_epochs": [r["best_epochs"] for r in runs], "n_params": runs[0]["n_params"],
            "ground_truth_ddi_rate": runs[0]["data"]["ground_truth_ddi_rate"],
            "validation_at_best_epoch": [best_validation(r) for r in runs],
            "wall_seconds": walls, "torch_threads": sorted(threads),
            "per_seed_test": [{"seed": seed, **{k: r["test"][k]["mean"] for k in SUMMARY_KEYS}}
                              for seed, r in zip(args.seeds, runs)],
        }
    print("\nlegacy protocol; mean ± std over the bootstrap rounds (± std over the training seeds)")
    print(summary_table(results["models"]))
    if args.out:
        write_json(results, args.out)


if __name__ == "__main__":
    main()
