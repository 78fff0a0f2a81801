"""Scale: write MIMIC-III shaped raw tables, then build them with both CSV engines side by side.

Usage::

    python benchmarks/raw_scale.py [--sizes 1000000 5000000 20000000] [--engines pandas arrow] [--out FILE]
    python benchmarks/raw_scale.py --sizes 5000000 --write-only DIR   # just write the tables

For every size (number of PRESCRIPTIONS rows; the other tables are proportional, see
:func:`medtoolkit.data.raw_generator.write_mimic3_tables`, which writes in chunks) the tables
are written to a temporary directory, then loaded, each step in a **fresh subprocess** so that
the peak resident memory (``ru_maxrss``) is that of one step:

* ``generate``: writing the tables;
* ``build`` per engine (``MIMIC3Dataset(root=..., engine=E, cache_dir=<empty dir>).load()``):
  reads, maps, assembles and writes the cache; the engines' fingerprints must be equal;
* ``cache_hit``: the same call again (last engine) - must be served from the cache.

Before the sizes, each raw loader (MIMIC-III, MIMIC-IV, eICU) builds its built-in demo with
each engine (``demos``; no cache), so the MIMIC-IV / eICU engines are measured in the same run.

The machine is shared: every step records the load average before and after, and the
result records the CPU count and the thread settings. Targets (issue 13): 20,000,000 rows
build in < 120 s with < 6 GB peak. Results go to ``benchmarks/results/raw_engines.json``
(``raw_scale.json`` keeps the issue-3 pandas-only record at 1M-5M rows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from paths import without_machine_paths

RESULTS = Path(__file__).resolve().parent / "results" / "raw_engines.json"
TARGETS = {"rows": 20_000_000, "build_seconds": 120.0, "build_peak_rss_mb": 6144.0, "cache_hit_seconds": 5.0}
LOADERS = {
    "mimic3": ("medtoolkit.data.loaders.mimic3", "MIMIC3Dataset"),
    "mimic4": ("medtoolkit.data.loaders.mimic4", "MIMIC4Dataset"),
    "eicu": ("medtoolkit.data.loaders.eicu", "EICUDataset"),
}


def _load(loader: str, engine: str, root: str | None, cache_dir: str | None) -> Any:
    import importlib

    module, name = LOADERS[loader]
    cls = getattr(importlib.import_module(module), name)
    options: dict[str, Any] = {"engine": engine}
    if root is not None:
        options["root"] = Path(root)
    if cache_dir is None:
        options["cache"] = False
    else:
        options["cache_dir"] = Path(cache_dir)
    return cls(cls.Params(**options)).load(progress=False)


def _child(mode: str, root: str, extra: str) -> None:
    """Run one measured step in this (fresh) process and print a JSON line.

    ``extra`` is ``ROWS[:gz]`` for ``generate``, ``ENGINE:CACHE_DIR`` for ``build`` /
    ``cache_hit`` and ``ENGINE:LOADER`` for ``demo``.
    """
    started = time.perf_counter()
    result: dict[str, Any] = {"mode": mode}
    if mode == "generate":
        from medtoolkit.data.raw_generator import write_mimic3_tables

        result["counts"] = write_mimic3_tables(Path(root), int(extra.split(":")[0]), compress=extra.endswith(":gz"))
    else:
        engine, target = extra.split(":", 1)
        result["engine"] = engine
        module = LOADERS[target if mode == "demo" else "mimic3"][0]
        __import__(module)
        result["import_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        if mode == "demo":
            data = _load(target, engine, None, None)
            result["loader"] = target
        else:
            data = _load("mimic3", engine, root, target)
        report = data.provenance.get("report")
        result["data"] = {
            "fingerprint": data.fingerprint(),
            "report_sha256": hashlib.sha256(json.dumps(report, sort_keys=True, default=str).encode()).hexdigest(),
            "patients": int(data.n_patients), "visits": int(data.n_visits),
            "vocabularies": {k: len(v) for k, v in data.vocabularies.items()},
            "dropped_total": int(report.get("dropped_total", -1)) if isinstance(report, dict) else None,
            "cache_hit": bool((data.provenance.get("cache") or {}).get("hit", False))
            if isinstance(data.provenance.get("cache"), dict) else None,
        }
    result["seconds"] = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["peak_rss_mb"] = usage.ru_maxrss / 1024.0
    print("RESULT " + json.dumps(result, default=str), flush=True)


def _run(mode: str, root: Path | str, extra: str) -> dict[str, Any]:
    """Run :func:`_child` in a fresh interpreter; add its wall time and the load average around it."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(root), extra],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{mode} {extra} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    line = next(x for x in completed.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["process_seconds"] = wall
    result["loadavg_before"] = list(load_before)
    result["loadavg_after"] = list(os.getloadavg())
    return result


def _machine() -> dict[str, Any]:
    import platform

    import numpy
    import pandas

    try:
        import pyarrow

        arrow = {"pyarrow": pyarrow.__version__, "arrow_cpu_threads": pyarrow.cpu_count(),
                 "arrow_io_threads": pyarrow.io_thread_count()}
    except ImportError:
        arrow = {"pyarrow": None}
    return {"python": platform.python_version(), "pandas": pandas.__version__, "numpy": numpy.__version__,
            **arrow, "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1),
            "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
            "shared": "machine shared with 3 other workers; see loadavg_before/after of every step"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000, 20_000_000])
    parser.add_argument("--engines", nargs="+", default=["pandas", "arrow"], choices=["pandas", "arrow"])
    parser.add_argument("--no-demos", action="store_true", help="skip the built-in demo builds")
    parser.add_argument("--compress", action="store_true", help="write .csv.gz tables")
    parser.add_argument("--workdir", type=Path, default=None, help="where tables go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--write-only", type=Path, default=None, metavar="DIR",
                        help="only write tables of the first size to DIR (no loading, no JSON)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "ROOT", "EXTRA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return

    if args.write_only is not None:
        from medtoolkit.data.raw_generator import write_mimic3_tables

        started = time.perf_counter()
        counts = write_mimic3_tables(args.write_only, args.sizes[0], compress=args.compress)
        print(json.dumps({**counts, "seconds": time.perf_counter() - started}, indent=2))
        return

    started_at = os.getloadavg()
    demos: list[dict[str, Any]] = []
    if not args.no_demos:
        for loader in LOADERS:
            for engine in args.engines:
                demo = _run("demo", "-", f"{engine}:{loader}")
                demos.append(demo)
                print(f"demo {loader:>6} {engine:>6}: {demo['seconds']:.2f} s, peak {demo['peak_rss_mb']:.0f} MB",
                      flush=True)
    base = Path(tempfile.mkdtemp(prefix="raw_scale_", dir=args.workdir))
    runs: list[dict[str, Any]] = []
    try:
        for size in args.sizes:
            root = base / f"tables_{size}"
            generated = _run("generate", root, f"{size}:gz" if args.compress else str(size))
            print(f"{size:>10,} rows: generate {generated['seconds']:.1f} s, peak {generated['peak_rss_mb']:.0f} MB",
                  flush=True)
            builds: dict[str, Any] = {}
            for engine in args.engines:
                cache = base / f"cache_{size}_{engine}"
                builds[engine] = _run("build", root, f"{engine}:{cache}")
                print(f"{size:>10,} rows: build {engine:>6} {builds[engine]['seconds']:.1f} s "
                      f"(cpu {builds[engine]['cpu_seconds']:.1f} s), peak {builds[engine]['peak_rss_mb']:.0f} MB, "
                      f"load {builds[engine]['loadavg_before'][0]:.1f}", flush=True)
            last = args.engines[-1]
            hit = _run("cache_hit", root, f"{last}:{base / f'cache_{size}_{last}'}")
            fingerprints = {e: (b["data"]["fingerprint"], b["data"]["report_sha256"]) for e, b in builds.items()}
            runs.append({"prescriptions": size, "generate": generated, "builds": builds, "cache_hit": hit,
                         "same_output": len(set(fingerprints.values())) == 1})
            print(f"{size:>10,} rows: cache hit {hit['seconds']:.2f} s; same output: {runs[-1]['same_output']}",
                  flush=True)
            shutil.rmtree(root, ignore_errors=True)
            for engine in args.engines:
                shutil.rmtree(base / f"cache_{size}_{engine}", ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    largest = max(runs, key=lambda r: r["prescriptions"])
    table = [
        {"rows": r["prescriptions"], "engine": e, "seconds": round(b["seconds"], 2),
         "cpu_seconds": round(b["cpu_seconds"], 2), "peak_rss_mb": round(b["peak_rss_mb"], 1)}
        for r in runs for e, b in r["builds"].items()
    ]
    best = min(largest["builds"].values(), key=lambda b: b["seconds"])
    result = {
        "machine": _machine(),
        "loadavg_start": list(started_at),
        "loadavg_end": list(os.getloadavg()),
        "compressed": bool(args.compress),
        "engines": args.engines,
        "demos": demos,
        "demos_same_output": {
            loader: len({(d["data"]["fingerprint"], d["data"]["report_sha256"]) for d in demos
                         if d["loader"] == loader}) == 1 for loader in LOADERS
        } if demos else {},
        "runs": runs,
        "table": table,
        "targets": TARGETS,
        "meets_targets": {
            "rows": largest["prescriptions"] >= TARGETS["rows"],
            "build_seconds": best["seconds"] < TARGETS["build_seconds"],
            "build_peak_rss_mb": best["peak_rss_mb"] < TARGETS["build_peak_rss_mb"],
            "cache_hit_seconds": largest["cache_hit"]["seconds"] < TARGETS["cache_hit_seconds"],
            "same_output": all(r["same_output"] for r in runs),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(without_machine_paths(json.dumps(result, indent=2, default=str)) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
