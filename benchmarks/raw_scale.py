"""Scale: write MIMIC-III shaped raw tables, then load them with ``MIMIC3Dataset`` (build, then cache hit).

Usage::

    python benchmarks/raw_scale.py [--sizes 1000000 2500000 5000000] [--compress] [--out FILE]
    python benchmarks/raw_scale.py --sizes 5000000 --write-only DIR   # just write the tables

For every size (number of PRESCRIPTIONS rows; the other tables are proportional, see
:func:`medtoolkit.data.raw_generator.write_mimic3_tables`) the tables are written to a
temporary directory, then loaded three times, each in a **fresh subprocess** so that the
peak resident memory (``ru_maxrss``) is that of one load:

* ``import``: the interpreter with medtoolkit and the loader imported (baseline memory),
* ``build``: ``MIMIC3Dataset(root=..., cache_dir=<empty dir>).load()`` - reads, maps, assembles
  and writes the cache,
* ``cache_hit``: the same call again - must be served from the cache.

Targets (issue 3): 5,000,000 rows load in < 120 s with < 4 GB peak; a second load hits the
cache in < 5 s. Results go to ``benchmarks/results/raw_scale.json``.
"""

from __future__ import annotations

import argparse
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

RESULTS = Path(__file__).resolve().parent / "results" / "raw_scale.json"
TARGETS = {"rows": 5_000_000, "build_seconds": 120.0, "build_peak_rss_mb": 4096.0, "cache_hit_seconds": 5.0}


def _child(mode: str, root: str, cache_dir: str) -> None:
    """Run one measured step in this (fresh) process and print a JSON line."""
    started = time.perf_counter()
    result: dict[str, Any] = {"mode": mode}
    if mode == "generate":
        from medtoolkit.data.raw_generator import write_mimic3_tables

        result["counts"] = write_mimic3_tables(Path(root), int(cache_dir.split(":")[0]),
                                               compress=cache_dir.endswith(":gz"))
    else:
        from medtoolkit.data.loaders.mimic3 import MIMIC3Dataset

        import_seconds = time.perf_counter() - started
        result["import_seconds"] = import_seconds
        if mode != "import":
            started = time.perf_counter()
            data = MIMIC3Dataset(MIMIC3Dataset.Params(root=Path(root), cache_dir=Path(cache_dir))).load(progress=False)
            result["data"] = {
                "patients": int(data.n_patients), "visits": int(data.n_visits),
                "medications": len(data.vocabularies["medications"]),
                "diagnoses": len(data.vocabularies["diagnoses"]),
                "dropped_total": int(data.provenance.get("report", {}).get("dropped_total", -1))
                if isinstance(data.provenance.get("report"), dict) else None,
                "cache": {k: v for k, v in data.provenance.items() if "cache" in str(k).lower()} or None,
            }
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("RESULT " + json.dumps(result, default=str), flush=True)


def _run(mode: str, root: Path, extra: str) -> dict[str, Any]:
    """Run :func:`_child` in a fresh interpreter; add its total wall time (start-up included)."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(root), extra],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    line = next(x for x in completed.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["process_seconds"] = wall
    return result


def _machine() -> dict[str, Any]:
    import platform

    import numpy
    import pandas

    return {"python": platform.python_version(), "pandas": pandas.__version__, "numpy": numpy.__version__,
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}


def _without_machine_paths(text: str) -> str:
    """Replace this machine's absolute paths (temporary dirs, the checkout) with placeholders."""
    import re
    import tempfile

    repo = str(Path(__file__).resolve().parents[1])
    text = text.replace(repo, "<repo>")
    return re.sub(re.escape(tempfile.gettempdir()) + r"/[^/\"]+", "<tmp>", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_500_000, 5_000_000])
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

    base = Path(tempfile.mkdtemp(prefix="raw_scale_", dir=args.workdir))
    runs: list[dict[str, Any]] = []
    try:
        baseline = _run("import", base, "-")
        print(f"import baseline: {baseline['peak_rss_mb']:.0f} MB peak, {baseline['process_seconds']:.1f} s")
        for size in args.sizes:
            root, cache = base / f"tables_{size}", base / f"cache_{size}"
            generated = _run("generate", root, f"{size}:gz" if args.compress else str(size))
            build = _run("build", root, str(cache))
            hit = _run("cache_hit", root, str(cache))
            run = {"prescriptions": size, "generate": generated, "build": build, "cache_hit": hit}
            runs.append(run)
            print(f"{size:>10,} rows: generate {generated['seconds']:.1f} s | build {build['seconds']:.1f} s, "
                  f"peak {build['peak_rss_mb']:.0f} MB | cache hit {hit['seconds']:.2f} s, "
                  f"peak {hit['peak_rss_mb']:.0f} MB", flush=True)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    largest = max(runs, key=lambda r: r["prescriptions"])
    per_million = [r["build"]["seconds"] / (r["prescriptions"] / 1e6) for r in runs]
    result = {
        "machine": _machine(),
        "compressed": bool(args.compress),
        "import_baseline": baseline,
        "runs": runs,
        "build_seconds_per_million_rows": per_million,
        "targets": TARGETS,
        "meets_targets": {
            "build_seconds": largest["prescriptions"] >= TARGETS["rows"]
            and largest["build"]["seconds"] < TARGETS["build_seconds"],
            "build_peak_rss_mb": largest["build"]["peak_rss_mb"] < TARGETS["build_peak_rss_mb"],
            "cache_hit_seconds": largest["cache_hit"]["seconds"] < TARGETS["cache_hit_seconds"],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_without_machine_paths(json.dumps(result, indent=2, default=str)) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
