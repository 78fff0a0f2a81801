"""Accuracy against safety: sweep the target DDI rate of the controllable DDI loss on MIMIC-III.

Usage::

    python benchmarks/ddi_tradeoff.py --data ../shared/data/mimic3-safedrug \
        [--presets gamenet_controllable_ddi safedrug] [--targets 0.04 0.06 0.08] [--seed 1203] \
        [--reuse benchmarks/results/molecule_legacy.json] -o trainer.num_threads=1 \
        [--out benchmarks/results/ddi_tradeoff.json] [--png docs/_static/ddi_tradeoff.png]

    # runs made in parallel (e.g. one process per preset), then one file and one figure
    python benchmarks/ddi_tradeoff.py --merge a.json b.json --out ... --png ...

Each preset is trained once per target (``losses.0.target``; the presets have one loss term,
``controllable_ddi``) under ``task.protocol=legacy`` and scored on the test split (10 bootstrap
rounds of 80 %, patient-averaged, threshold 0.5). ``--reuse`` takes the runs that
``mimic3_legacy.py`` already made at the presets' own target (0.06) for the same seed instead
of training them again. The figure plots test Jaccard against test DDI rate, one line per
preset, each point labelled with its target; the ground-truth DDI rate of the test split is
drawn for reference. ``--reference PRESET=JSON`` adds a model trained with its own loss (e.g. plain
``gamenet`` or ``algnet``) as a single marker: its test figures for ``--seed`` from a
``mimic3_legacy.py`` result file, or the mean over that file's seeds where it kept no per-seed
figures (the entry records which).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

import medtoolkit as mt
from medtoolkit.presets import preset_config

from common import machine, write_json

METRICS = ("jaccard", "prauc", "f1", "ddi_rate", "avg_drugs")


def preset_target(preset: str) -> float:
    """The target of the preset's (single) ``controllable_ddi`` loss term."""
    (loss,) = preset_config(preset)["losses"]
    if loss.get("type") != "controllable_ddi":
        raise ValueError(f"preset {preset!r} has no controllable_ddi loss")
    return float(loss.get("target", 0.06))


def reused_run(path: str, preset: str, target: float, seed: int) -> dict[str, Any] | None:
    """The run ``mimic3_legacy.py`` made for ``preset`` and ``seed`` if ``target`` is the preset's own."""
    if abs(target - preset_target(preset)) > 1e-12:
        return None
    models = json.loads(Path(path).read_text(encoding="utf-8")).get("models", {})
    entry = models.get(preset)
    if not entry:
        return None
    for row in entry.get("per_seed_test", []):
        if row["seed"] == seed:
            index = entry["seeds"].index(seed)
            (validation,) = entry["validation_at_best_epoch"][index].values()
            return {"preset": preset, "target": target, "seed": seed, "reused_from": path,
                    "test": {k: row[k] for k in METRICS}, "validation": validation,
                    "wall_seconds": entry["wall_seconds"][index], "torch_threads": entry["torch_threads"],
                    "ground_truth_ddi_rate": entry.get("ground_truth_ddi_rate")}
    return None


def reference_run(spec: str, seed: int) -> dict[str, Any]:
    """A reference point ``PRESET=JSON``: the preset's test figures for ``seed``, else its seed mean."""
    preset, path = spec.split("=", 1)
    entry = json.loads(Path(path).read_text(encoding="utf-8"))["models"][preset]
    run: dict[str, Any] = {"preset": preset, "reference": True, "target": None, "source": path,
                           "ground_truth_ddi_rate": entry.get("ground_truth_ddi_rate")}
    rows = [row for row in entry.get("per_seed_test", []) if row["seed"] == seed]
    if rows:
        index = entry["seeds"].index(seed)
        (validation,) = entry["validation_at_best_epoch"][index].values() if "validation_at_best_epoch" in entry \
            else ({},)
        run.update(seed=seed, seeds=[seed], test={k: rows[0][k] for k in METRICS}, validation=validation)
    else:
        summary = entry["summary"]
        run.update(seed=None, seeds=entry["seeds"], test={k: summary[k]["mean"] for k in METRICS},
                   test_seed_std={k: summary[k].get("seed_std") for k in METRICS}, validation={},
                   note=f"mean over seeds {entry['seeds']}: {path} keeps no per-seed test figures")
    return run


def _label(run: dict[str, Any]) -> str:
    if run["seed"] is not None:
        return f"{run['preset']} (own loss, seed {run['seed']})"
    return f"{run['preset']} (own loss, mean of {len(run['seeds'])} seeds)"


def train_run(data: str, preset: str, target: float, seed: int, overrides: list[str]) -> dict[str, Any]:
    """Train ``preset`` with ``losses.0.target=target`` and return its test and validation figures."""
    experiment = mt.build(preset, overrides=[
        "dataset.type=safedrug_pickle", f"dataset.root={data}", "task.protocol=legacy", f"seed={seed}",
        f"losses.0.target={target}", f"name={preset}_target_{target}", *overrides])
    started = time.perf_counter()
    metrics = experiment.run().metrics
    wall = time.perf_counter() - started
    (history,) = metrics["history"].values()
    best = history["best_epoch"]
    validation = history["epochs"][best - 1]["validation"] if best else {}
    return {"preset": preset, "target": target, "seed": seed,
            "test": {k: metrics["test"][k]["mean"] for k in METRICS},
            "test_std": {k: metrics["test"][k]["std"] for k in METRICS},
            "validation": {"epoch": best, "jaccard": validation.get("jaccard"), "ddi_rate": validation.get("ddi_rate")},
            "wall_seconds": wall, "torch_threads": [torch.get_num_threads()],
            "ground_truth_ddi_rate": metrics["data"]["ground_truth_ddi_rate"]}


def plot(runs: list[dict[str, Any]], path: str) -> None:
    """Test Jaccard against test DDI rate, one line per preset, points labelled with the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.2, 5.6))
    swept = [run for run in runs if not run.get("reference")]
    # one colour per model family: a reference (e.g. gamenet) shares its swept variant's colour
    families = sorted({run["preset"].removesuffix("_controllable_ddi") for run in runs})
    colour = {family: f"C{i}" for i, family in enumerate(families)}
    for preset in sorted({run["preset"] for run in swept}):
        rows = sorted((run for run in swept if run["preset"] == preset), key=lambda run: run["target"])
        x = [run["test"]["ddi_rate"] for run in rows]
        y = [run["test"]["jaccard"] for run in rows]
        axes.plot(x, y, marker="o", color=colour[preset.removesuffix("_controllable_ddi")],
                  label=f"{preset} (target τ swept)")
        for run, xi, yi in zip(rows, x, y):
            axes.annotate(f"τ={run['target']:.2f}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for run, marker in zip((run for run in runs if run.get("reference")), "*PXD"):
        axes.plot([run["test"]["ddi_rate"]], [run["test"]["jaccard"]], linestyle="none", marker=marker,
                  markersize=12, markeredgecolor="black", color=colour[run["preset"]], label=_label(run))
    truth = [run.get("ground_truth_ddi_rate") for run in runs if run.get("ground_truth_ddi_rate") is not None]
    if truth:
        axes.axvline(truth[0], color="grey", linestyle=":", label=f"ground truth (all data) {truth[0]:.4f}")
    seeds = sorted({run["seed"] for run in swept if run.get("seed") is not None})
    axes.set_xlabel("test DDI rate (lower is safer)")
    axes.set_ylabel("test Jaccard (higher is better)")
    axes.set_title("Jaccard vs DDI rate, controllable DDI loss target τ swept\n"
                   f"(MIMIC-III, legacy protocol, test split, seed {', '.join(map(str, seeds))})", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def table(runs: list[dict[str, Any]]) -> str:
    lines = [f"{'preset':<28} {'target':>6} {'jaccard':>8} {'ddi':>7} {'f1':>7} {'prauc':>7} {'drugs':>6} "
             f"{'val jac':>8} {'val ddi':>8}"]
    for run in sorted(runs, key=lambda r: (r["preset"], r["target"] if r["target"] is not None else -1)):
        t, v = run["test"], run["validation"]
        target = "ref" if run["target"] is None else f"{run['target']:.2f}"
        lines.append(f"{run['preset']:<28} {target:>6} {t['jaccard']:>8.4f} {t['ddi_rate']:>7.4f} "
                     f"{t['f1']:>7.4f} {t['prauc']:>7.4f} {t['avg_drugs']:>6.2f} "
                     f"{v.get('jaccard') or float('nan'):>8.4f} {v.get('ddi_rate') or float('nan'):>8.4f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--presets", nargs="+", default=["gamenet_controllable_ddi", "safedrug"])
    parser.add_argument("--targets", nargs="+", type=float, default=[0.04, 0.06, 0.08])
    parser.add_argument("--seed", type=int, default=1203)
    parser.add_argument("--reuse", default=None, help="a mimic3_legacy.py result file whose runs to reuse")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON", help="combine result files, no training")
    parser.add_argument("--reference", nargs="+", default=[], metavar="PRESET=JSON",
                        help="single reference points from mimic3_legacy.py result files (e.g. gamenet=...)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--png", default=None)
    args = parser.parse_args()

    if args.merge:
        parts = [json.loads(Path(path).read_text(encoding="utf-8")) for path in args.merge]
        results = {"machine": parts[0]["machine"], "merged_from": args.merge,
                   "runs": [run for part in parts for run in part["runs"] if not run.get("reference")]}
    else:
        if args.data is None:
            parser.error("--data is required (unless --merge)")
        results = {"machine": machine(), "overrides": args.override, "runs": []}
        for preset in args.presets:
            for target in args.targets:
                run = reused_run(args.reuse, preset, target, args.seed) if args.reuse else None
                if run is None:
                    run = train_run(args.data, preset, target, args.seed, args.override)
                results["runs"].append(run)
                print(f"{preset} target {target}: jaccard {run['test']['jaccard']:.4f} "
                      f"ddi {run['test']['ddi_rate']:.4f}", flush=True)
    results["runs"] += [reference_run(spec, args.seed) for spec in args.reference]
    print(table(results["runs"]))
    if args.out:
        write_json(results, args.out)
    if args.png:
        plot(results["runs"], args.png)


if __name__ == "__main__":
    main()
