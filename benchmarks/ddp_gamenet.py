"""GAMENet trained in one process and with ``torchrun --nproc_per_node N`` (gloo on CPU, NCCL on CUDA), same global batch.

Usage::

    python benchmarks/ddp_gamenet.py --data ../shared/data/mimic3-safedrug \
        [--nproc 2] [--single-threads 2] [--device cpu] [-o trainer.epochs=40] \
        [--out benchmarks/results/ddp_gamenet.json]

Both runs are fresh ``medtoolkit train gamenet`` processes on the legacy protocol with the
preset's global batch (``trainer.batch_size`` patients per step, shared by the ranks under
torchrun) and are timed in the same invocation, one after the other. The one-process run
uses ``--single-threads`` torch threads, every torchrun rank one thread, so both use the
same cores. Recorded per run: test Jaccard (mean ± bootstrap std), best epoch, mean epoch
seconds (training only), the run's wall seconds and the command's wall seconds.
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

from common import machine, write_json


def run(command: list[str], out: Path, threads: int) -> dict:
    """Run one training command; read its ``metrics.json``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed:\n{finished.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    epochs = metrics["epoch_seconds"]
    test = metrics["test"]
    return {
        "command": " ".join(command),
        "jaccard": test["jaccard"], "prauc": test["prauc"], "f1": test["f1"], "ddi_rate": test["ddi_rate"],
        "best_epoch": next(iter(metrics["best_epochs"].values())),
        "epochs": len(epochs),
        "epoch_seconds_mean": sum(epochs) / len(epochs),
        "run_wall_seconds": metrics["wall_seconds"],
        "command_seconds": seconds,
        "peak_memory_mb_rank0": metrics["peak_memory_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="processed MIMIC-III directory (safedrug pickles)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--single-threads", type=int, default=2, help="torch threads of the one-process run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    common = ["gamenet", "-o", "dataset.type=safedrug_pickle", "-o", f"dataset.root={Path(args.data).resolve()}",
              "-o", "task.protocol=legacy", "-o", "trainer.progress=none", "-o", f"device={args.device}"]
    for override in args.override:
        common += ["-o", override]
    load = {"start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as work:
        single_out, parallel_out = Path(work) / "single", Path(work) / "ddp"
        single = run([sys.executable, "-m", "medtoolkit", "train", *common, "-o",
                      f"trainer.num_threads={args.single_threads}", "--out", str(single_out)],
                     single_out, args.single_threads)
        print(f"one process ({args.single_threads} threads): Jaccard {single['jaccard']['mean']:.4f}, "
              f"{single['epoch_seconds_mean']:.2f} s/epoch", flush=True)
        parallel = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                        str(args.nproc), "-m", "medtoolkit", "train", *common, "-o", "trainer.num_threads=1",
                        "--out", str(parallel_out)], parallel_out, 1)
        print(f"torchrun x{args.nproc} (1 thread each): Jaccard {parallel['jaccard']['mean']:.4f}, "
              f"{parallel['epoch_seconds_mean']:.2f} s/epoch", flush=True)
    load["end"] = os.getloadavg()
    difference = parallel["jaccard"]["mean"] - single["jaccard"]["mean"]
    result = {
        "machine": machine(), "device": args.device, "nproc": args.nproc, "overrides": args.override,
        "threads": {"single": args.single_threads, "per_rank": 1}, "load_average": load,
        "single": single, "torchrun": parallel,
        "jaccard_difference": difference, "within_0_005": abs(difference) <= 0.005,
        "epoch_speedup": single["epoch_seconds_mean"] / parallel["epoch_seconds_mean"],
    }
    print(f"Jaccard difference {difference:+.4f}; epoch speed-up {result['epoch_speedup']:.2f}x")
    if args.out:
        write_json(result, args.out)


if __name__ == "__main__":
    main()
