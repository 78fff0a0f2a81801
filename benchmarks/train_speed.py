"""Batched training vs the papers' way (one patient per step, Python loop over visits), side by side.

Usage::

    python benchmarks/train_speed.py --preset gamenet --data ../shared/data/mimic3-safedrug \
        [--papers-patients all|N] [--device cpu|cuda] [--out benchmarks/results/speed_gamenet.json]
    python benchmarks/train_speed.py --preset algnet --baseline gamenet --data ../shared/data/mimic3-safedrug \
        --out benchmarks/results/speed_algnet.json
    # this tree's batched epoch beside an older commit's, one torch thread, epochs interleaved
    python benchmarks/train_speed.py --preset gamenet --data ../shared/data/mimic3-safedrug \
        --compare-commit 318b387 --threads 1 --out benchmarks/results/speed_gamenet_1thread.json

Both variants train the *same* model class with the same losses on the legacy training split.
The papers' way is timed over ``--papers-patients`` training patients (``all`` = a full epoch)
and, when a subset is used, scaled to a full epoch by the number of visits.

``--compare-commit REV`` times this tree's batched epochs beside those of commit ``REV``
(``git archive`` into a temporary directory, its core and plugin sources first on
``PYTHONPATH``): two worker processes, one per tree, load the same data, split and preset
and build their trainer once; then the parent asks them for one epoch at a time, in turn
(old, new, new, old, ...), so both see the same machine load. Wall and CPU seconds of every
epoch, their medians after each worker's warm-up epoch, the ratio old / new, the thread
count and the load average at the start and end go into the result JSON.
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


# ---------------------------------------------------------------------------- old vs new commit
#: lines of the worker protocol start with this (anything else on a worker's stdout is ignored)
PROTOCOL = "@@speed "
REPOSITORY = Path(__file__).resolve().parents[1]


def speed_overrides(args: argparse.Namespace) -> list[str]:
    """The preset overrides every timed variant uses (data, legacy protocol, device, no progress)."""
    return ["dataset.type=safedrug_pickle", f"dataset.root={args.data}", "task.protocol=legacy",
            f"device={args.device}", "trainer.progress=none", *args.override]


def prepare(args: argparse.Namespace) -> tuple[Experiment, torch.device, EHRData, object, DataSchema]:
    """Threads set, preset built, data loaded, first split and its schema (API old commits have too).

    Returns:
        ``(experiment, device, data, split, schema)``.
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    experiment = mt.build(args.preset, overrides=speed_overrides(args))
    device = resolve_device(experiment.config.device)
    data = experiment.load_data(progress=False)
    task = experiment.config.task.build(None)
    split = task.splits(data)[0]
    return experiment, device, data, split, task.build_schema(data, split)


def worker_main(args: argparse.Namespace) -> None:
    """Build the preset's trainer once, then run one training epoch per ``epoch`` line on stdin.

    Uses only the API that old commits have too (``mt.build``, ``Experiment._build_model``,
    ``Trainer.train_epoch``), since the parent runs this file against an older tree.
    """
    experiment, device, data, split, schema = prepare(args)
    config = experiment.config
    seed_everything(config.seed)
    model, losses = experiment._build_model(schema)
    trainer = Trainer(model, losses, config.trainer, device, seed=config.seed)

    def say(payload: dict[str, object]) -> None:
        sys.stdout.write(PROTOCOL + json.dumps(payload) + "\n")
        sys.stdout.flush()

    say({"ready": True, "medtoolkit": str(Path(mt.__file__).resolve().parent), "threads": torch.get_num_threads(),
         "train_patients": int(len(split.train)), "train_visits": int(data.visits_per_patient[split.train].sum())})
    for line in sys.stdin:
        if line.strip() != "epoch":
            break
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        loss = trainer.train_epoch(data, split.train)
        if device.type == "cuda":
            torch.cuda.synchronize()
        say({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "loss": float(loss)})


class Worker:
    """A ``--worker`` subprocess on one source tree, driven line by line."""

    def __init__(self, label: str, pythonpath: list[Path], args: argparse.Namespace,
                 extra_overrides: list[str] | None = None) -> None:
        self.label = label
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--preset", args.preset,
                   "--data", args.data, "--device", args.device]
        if args.threads:
            command += ["--threads", str(args.threads)]
        for override in [*args.override, *(extra_overrides or [])]:
            command += ["-o", override]
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(str(path) for path in pythonpath))
        if args.threads:
            environment.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=environment, cwd=tempfile.gettempdir())
        self.info = self._read()
        self.epochs: list[dict[str, float]] = []

    def _read(self) -> dict[str, object]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(PROTOCOL):
                return json.loads(line[len(PROTOCOL):])
        raise RuntimeError(f"the {self.label} worker stopped (exit code {self.process.wait()}); see its stderr above")

    def epoch(self) -> dict[str, float]:
        """Run one epoch in the worker and wait for its times."""
        assert self.process.stdin is not None
        self.process.stdin.write("epoch\n")
        self.process.stdin.flush()
        times = self._read()
        self.epochs.append(times)  # type: ignore[arg-type]
        return times  # type: ignore[return-value]

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def tree_pythonpath(root: Path) -> list[Path]:
    """A source tree's core package directory and its plugins' ``src`` directories."""
    return [root, *sorted(path for path in (root / "plugins").glob("*/src") if path.is_dir())]


def archive_commit(revision: str, into: Path) -> str:
    """Extract commit ``revision`` of this repository into ``into``; returns the full commit id."""
    commit = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "--verify", f"{revision}^{{commit}}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    archive = subprocess.Popen(["git", "-C", str(REPOSITORY), "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} failed")
    return commit


def compare_main(args: argparse.Namespace) -> None:
    """This tree's batched epoch beside commit ``args.compare_commit``'s, epochs interleaved."""
    load_start = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="medtoolkit-speed-") as temporary:
        old_root = Path(temporary)
        commit = archive_commit(args.compare_commit, old_root)
        workers = {"old": Worker("old", tree_pythonpath(old_root), args),
                   "new": Worker("new", tree_pythonpath(REPOSITORY), args, args.new_override)}
        try:
            for name in ("old", "new"):  # warm-up epochs
                workers[name].epoch()
            for round_index in range(args.batched_epochs - 1):
                order = ("old", "new") if round_index % 2 == 0 else ("new", "old")
                for name in order:
                    times = workers[name].epoch()
                    print(f"{name} epoch: {times['wall']:.3f} s wall, {times['cpu']:.3f} s cpu", flush=True)
        finally:
            for worker in workers.values():
                worker.close()
    load_end = os.getloadavg()

    def summary(worker: Worker) -> dict[str, object]:
        steady = worker.epochs[1:]
        return {"epoch_seconds": float(np.median([e["wall"] for e in steady])),
                "epoch_cpu_seconds": float(np.median([e["cpu"] for e in steady])),
                "epoch_seconds_all": [e["wall"] for e in worker.epochs],
                "epoch_cpu_seconds_all": [e["cpu"] for e in worker.epochs],
                "epoch_losses": [e["loss"] for e in worker.epochs],
                "source": worker.info["medtoolkit"], "threads": worker.info["threads"]}

    old, new = summary(workers["old"]), summary(workers["new"])
    head = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPOSITORY), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    result = {
        "preset": args.preset,
        "device": args.device,
        "machine": machine(),
        "threads": args.threads or torch.get_num_threads(),
        "load_average_start": list(load_start),
        "load_average_end": list(load_end),
        "train_patients": workers["new"].info["train_patients"],
        "train_visits": workers["new"].info["train_visits"],
        "epochs_per_variant": args.batched_epochs,
        "schedule": "one warm-up epoch each, then alternating old/new epochs (order flipped every round); "
                    "medians over the epochs after the warm-up",
        "old_commit": commit,
        "new_overrides": args.new_override,
        "new_tree": f"{head.stdout.strip()}{' + uncommitted changes' if dirty else ''}",
        "old": old,
        "new": new,
        "old_epoch_seconds": old["epoch_seconds"],
        "new_epoch_seconds": new["epoch_seconds"],
        "speedup": old["epoch_seconds"] / new["epoch_seconds"],
        "speedup_cpu_seconds": old["epoch_cpu_seconds"] / new["epoch_cpu_seconds"],
        "wall_seconds": time.time() - started,
    }
    print(f"{args.preset}, {result['threads']} thread(s): old {commit[:10]} epoch {old['epoch_seconds']:.3f} s, "
          f"new {new['epoch_seconds']:.3f} s: {result['speedup']:.2f}x faster "
          f"(CPU seconds {result['speedup_cpu_seconds']:.2f}x); load {load_start[0]:.2f} -> {load_end[0]:.2f}")
    if args.out:
        write_json(result, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gamenet")
    parser.add_argument("--data", required=True, help="processed MIMIC-III directory (safedrug pickles)")
    parser.add_argument("--papers-patients", default="all", help="'all' or a number of training patients")
    parser.add_argument("--batched-epochs", type=int, default=6, help="batched epochs timed (first is warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--baseline", default=None, help="also time this preset's batched epochs (e.g. gamenet)")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--compare-commit", default=None, metavar="REV",
                        help="time this tree's batched epochs beside commit REV's (interleaved, in two workers)")
    parser.add_argument("--new-override", action="append", default=[],
                        help="with --compare-commit: an override for this tree's worker only (e.g. trainer.prefetch=0)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (e.g. 1)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return
    if args.compare_commit:
        compare_main(args)
        return
    overrides = speed_overrides(args)
    experiment, device, data, split, schema = prepare(args)
    config = experiment.config
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
