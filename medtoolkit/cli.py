"""Command line: ``medtoolkit plugins|components|presets|validate|train|evaluate|data``.

Exit codes: 0 success, 1 invalid input (config errors, bad data), 2 usage errors,
130 interrupted (Ctrl-C).

Failures end in one ``error: ...`` line on stderr (see :mod:`medtoolkit.errors`); the
global ``--debug`` flag (or ``MEDTOOLKIT_DEBUG=1``) prints the full traceback first.

``medtoolkit --version``, ``--help`` and the built-in commands' parsers are built without
importing plugins (or torch): the plugin host is loaded only when a command runs that needs
it, or when the command name is not a built-in one (it may come from a plugin). The
top-level ``--help`` therefore lists built-in commands only; ``medtoolkit plugins`` shows
the commands plugins add.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from medtoolkit.errors import error_details, error_message

PLUGIN_COMMANDS_NOTE = ("Commands added by plugins are not listed here (listing them imports every plugin): "
                        "`medtoolkit plugins` shows them, `medtoolkit COMMAND --help` describes one.")


def _host() -> Any:
    from medtoolkit.plugins import default_host

    return default_host()


def _rate(value: float | None) -> str:
    """A DDI rate with 4 decimals, or ``n/a`` when the dataset has no DDI matrix."""
    return "n/a" if value is None else f"{value:.4f}"


def _first_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


# ---------------------------------------------------------------------------- commands
def cmd_plugins(args: argparse.Namespace) -> int:
    host = _host()
    if getattr(args, "debug", False) or _debug_from_env():  # the full tracebacks, kept out of stdout
        for plugin in host.broken:
            print(f"--- {plugin.name} {plugin.version}: {plugin.error}\n{plugin.details}", file=sys.stderr)
    if args.json:
        print(json.dumps([p.to_json() for p in host.plugins], indent=2))
        return 0
    print(f"{'plugin':<28} {'version':<10} {'status':<9} registered / error")
    for plugin in host.plugins:
        if plugin.status == "ok":
            what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in plugin.registered.items())
        else:
            what = plugin.error
        print(f"{plugin.name:<28} {plugin.version:<10} {plugin.status:<9} {what}")
    return 0


def cmd_components(args: argparse.Namespace) -> int:
    host = _host()
    kinds = [args.kind] if args.kind else [k for k in host.registries if k not in ("preset", "command")]
    rows = []
    for kind in kinds:
        for entry in host.registry(kind):
            rows.append({"kind": kind, "name": entry.name, "plugin": entry.plugin, "version": entry.version,
                         "summary": _first_line(entry.obj)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'kind':<12} {'name':<26} {'plugin':<24} summary")
    for row in rows:
        print(f"{row['kind']:<12} {row['name']:<26} {row['plugin'] + ' ' + row['version']:<24} {row['summary']}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    host = _host()
    registry = host.registry("preset")
    if args.action == "list":
        for entry in registry:
            print(f"{entry.name:<28} {entry.plugin} {entry.version}")
        return 0
    if not args.name or not args.dest:
        print("usage: medtoolkit presets copy NAME DEST", file=sys.stderr)
        return 2
    from medtoolkit.presets import preset_config

    import yaml

    raw = preset_config(args.name, host=host)
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / f"{args.name}.yaml"
    if dest.is_dir():  # DEST/NAME.yaml is itself a directory: --force cannot help
        print(f"error: {dest} is a directory", file=sys.stderr)
        return 1
    if dest.exists() and not args.force:
        print(f"error: {dest} exists; pass --force to overwrite", file=sys.stderr)
        return 1
    source = registry.get(args.name).obj
    if isinstance(source, (str, Path)):
        shutil.copyfile(source, dest)
    else:
        dest.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    print(f"wrote {dest}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from medtoolkit.experiment import Experiment

    experiment = Experiment.from_config(args.run, overrides=args.override)
    for note in experiment.notes:
        print(f"note: {note}", file=sys.stderr)
    config = experiment.config
    losses = ", ".join(n.type for n in config.losses) or "none"
    stages = ""
    if config.stages:
        named = [s.name + (f" per {s.repeat_per}" if s.repeat_per else "") for s in config.stages]
        stages = f" stages=[{', '.join(named)}]"
    print(f"OK: {args.run}: dataset={config.dataset.type} task={config.task.type} "
          f"model={config.model.type} losses=[{losses}]{stages}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from medtoolkit.experiment import Experiment
    from medtoolkit.training.report import groups_table, metrics_table

    overrides = list(args.override)
    if args.device:
        overrides.append(f"device={args.device}")
    experiment = Experiment.from_config(args.run, overrides=overrides)
    for note in experiment.notes:
        print(f"note: {note}", file=sys.stderr)
    result = experiment.run(out_dir=args.out, resume=args.resume, overwrite=args.overwrite)
    metrics = result.metrics
    if not metrics:  # a torchrun rank other than 0: rank 0 prints and writes the report
        return 0
    data = metrics["data"]
    print(metrics_table(metrics["test"], title=f"{metrics['name']} ({metrics['model']}) - test"))
    print(f"data: {data['patients']} patients, {data['visits']} visits, {data['n_drugs']} drugs, "
          f"ground-truth DDI rate {_rate(data['ground_truth_ddi_rate'])}")
    seconds = metrics["epoch_seconds"]
    if seconds:
        print(f"epochs: {len(seconds)}, mean {sum(seconds) / len(seconds):.2f} s/epoch; "
              f"parameters: {metrics['n_params']:,}; wall {metrics['wall_seconds']:.1f} s")
    for stage in metrics.get("stages") or []:
        print(stage_line(stage))
    if (metrics["test"].get("groups") or {}).get("per_bin"):
        print(groups_table(metrics["test"]), end="")
    if args.out:
        print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def stage_line(stage: dict[str, Any]) -> str:
    """One line about a stage of ``metrics.json``'s ``stages``: units, trainable parameters, time.

    Example: ``stage tune (per hospital, adapter finetune): 98 of 100 units trained, 2 skipped;
    trainable 1,234 of 56,789 parameters (2.17%); 12.3 s``.
    """
    about = [f"per {stage['repeat_per']}"] if stage.get("repeat_per") else []
    if stage.get("adapter"):
        about.append(f"adapter {stage['adapter']}")
    if stage.get("init_from"):
        about.append(f"from {stage['init_from']}")
    name = f"stage {stage.get('name', '?')}" + (f" ({', '.join(about)})" if about else "")
    units, trained = stage.get("units", 0), stage.get("trained_units", 0)
    skipped = len(stage.get("skipped_units") or [])
    what = f"{trained} of {units} units trained" + (f", {skipped} skipped" if skipped else "")
    share = stage.get("trainable_share")
    share_text = f" ({share:.2%})" if isinstance(share, (int, float)) else ""
    return (f"{name}: {what}; trainable {stage.get('trainable_params', 0):,} of {stage.get('total_params', 0):,} "
            f"parameters{share_text}; {stage.get('seconds', 0.0):.1f} s")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medtoolkit.experiment import evaluate_run
    from medtoolkit.training.report import metrics_table

    metrics = evaluate_run(args.run_dir, device_name=args.device, overrides=args.override)
    print(metrics_table(metrics["test"], title=f"{metrics['name']} ({metrics['model']}) - test"))
    if args.json:
        print(json.dumps(metrics, indent=2))
    return 0


def _dataset_from_spec(spec: str, overrides: list[str], host: Any) -> Any:
    """A dataset component from a run file, a preset name or a dataset type name."""
    from medtoolkit.config import parse_override

    names = {entry.name for entry in host.registry("dataset")}
    if spec in names and not Path(spec).exists():
        cls = host.get("dataset", spec)
        cls = getattr(cls, "obj", cls)
        values: dict[str, Any] = {}
        for text in overrides:
            key, value = parse_override(text)
            if len(key) != 1:
                raise ValueError(f"override {text!r}: a dataset option is a single key (e.g. root=PATH)")
            values[key[0]] = value
        try:
            params = cls.Params(**values)
        except Exception as error:  # pydantic ValidationError -> a readable message
            from medtoolkit.errors import _is_pydantic_error, _pydantic_message

            reason = _pydantic_message(error) if _is_pydantic_error(error) else f"invalid options: {error}"
            raise ValueError(f"dataset {spec!r}: {reason}") from None
        return cls(params)
    from medtoolkit.experiment import Experiment

    prefixed = [text if text.startswith("dataset.") else f"dataset.{text}" for text in overrides]
    experiment = Experiment.from_config(spec, overrides=prefixed, host=host)
    return experiment.config.dataset.build(None)


def cmd_data(args: argparse.Namespace) -> int:
    from medtoolkit.data.report import DataReport

    host = _host()
    dataset = _dataset_from_spec(args.spec, list(args.override), host)
    data = dataset.load(progress=False)
    stats = data.statistics()
    report = DataReport.from_json(data.provenance.get("report", {}))
    cache = data.provenance.get("cache", {})
    if args.json:
        print(json.dumps({"name": data.name, "statistics": stats, "report": report.to_json(),
                          "cache": cache, "fingerprint": data.fingerprint()}, indent=2, default=str))
        return 0
    print(f"dataset: {data.name}  (fingerprint {data.fingerprint()[:16]})")
    print(f"patients: {stats['patients']:,}")
    print(f"visits: {stats['visits']:,}  ({stats['visits_per_patient']:.2f} per patient, "
          f"max {stats['max_visits_per_patient']})")
    for vocab in data.vocabularies:
        print(f"{vocab}: vocabulary {stats[f'vocab_{vocab}']:,}, "
              f"{stats[f'per_visit_{vocab}']:.2f} per visit")
    if data.knowledge.has_ddi:
        print(f"ground-truth DDI rate: {stats['ground_truth_ddi_rate']:.4f} "
              f"({data.knowledge.n_ddi_pairs} interacting pairs)")
    else:
        print("ground-truth DDI rate: n/a (the dataset has no DDI matrix)")
    if "hospitals" in stats:
        print(f"hospitals: {stats['hospitals']:,}")
    if cache:
        print(f"cache: {'hit' if cache.get('hit') else 'miss'} {cache.get('path', '')}".rstrip())
    if data.provenance.get("report") is not None:
        print()
        print(report.to_markdown())
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser(host: Any | None = None, with_plugins: bool = True) -> argparse.ArgumentParser:
    """The argument parser (plugins may add sub-commands through ``register_commands``).

    Args:
        host: plugin host whose commands are added (default: every installed plugin).
        with_plugins: False builds the built-in commands only, without loading any plugin.
    """
    from medtoolkit import __version__

    parser = argparse.ArgumentParser(prog="medtoolkit", description="Safe medication recommendation toolkit.",
                                     epilog=PLUGIN_COMMANDS_NOTE)
    parser.add_argument("--version", action="version", version=f"medtoolkit {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback of a failure (also MEDTOOLKIT_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins and what they register")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("components", help="list registered components")
    p.add_argument("--kind", choices=["dataset", "task", "encoder", "memory", "loss", "recommender", "adapter"])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_components)

    p = sub.add_parser("presets", help="list or copy shipped run files")
    p.add_argument("action", choices=["list", "copy"])
    p.add_argument("name", nargs="?")
    p.add_argument("dest", nargs="?")
    p.add_argument("--force", action="store_true", help="overwrite DEST")
    p.set_defaults(func=cmd_presets)

    for name, func, text in (("validate", cmd_validate, "check a run file without doing any work"),
                             ("train", cmd_train, "train and evaluate a run file or preset")):
        p = sub.add_parser(name, help=text)
        p.add_argument("run", help="run file (YAML) or preset name")
        p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. -o trainer.epochs=5 (repeatable)")
        if name == "train":
            p.add_argument("--out", help="report directory (metrics.json, report.md, curves.png, models)")
            p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
            p.add_argument("--overwrite", action="store_true",
                           help="replace the run already in --out (removes only the files medtoolkit writes)")
            p.add_argument("--device", help="override the device (cpu, cuda, cuda:1)")
        p.set_defaults(func=func)

    p = sub.add_parser("data", help="inspect a dataset: counts, vocabularies, drops and mapping coverage")
    p.add_argument("action", choices=["info"])
    p.add_argument("spec", help="run file, preset name or dataset type (e.g. mimic3)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. -o root=PATH (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("evaluate", help="re-evaluate a finished run directory on its test split")
    p.add_argument("run_dir")
    p.add_argument("-o", "--override", action="append", default=[], metavar="task.KEY=VALUE",
                   help="change one of the task's prediction parameters (e.g. task.generate=true)")
    p.add_argument("--device")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    if with_plugins:
        _add_plugin_commands(sub, host or _host())
    for command_parser in sub.choices.values():  # `medtoolkit train x --debug` works too
        if "--debug" in command_parser._option_string_actions:  # a plugin command has its own
            continue
        command_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                    help="print the full traceback of a failure")
    return parser


def _add_plugin_commands(sub: Any, host: Any) -> None:
    """Add the commands plugins registered to the sub-parsers ``sub``."""
    for entry in host.registry("command"):
        command = entry.obj
        if entry.name in sub.choices:
            print(f"warning: command {entry.name!r} from {entry.plugin} clashes with a built-in command; "
                  "ignored", file=sys.stderr)
            continue
        text = getattr(command, "help", _first_line(command))
        p = sub.add_parser(entry.name, help=text, description=text)
        try:
            command.add_arguments(p)
        except Exception as error:  # noqa: BLE001 - a broken plugin command must not take the CLI down
            print(f"warning: command {entry.name!r} from {entry.plugin} is unusable: {error}", file=sys.stderr)
            sub._name_parser_map.pop(entry.name, None)
            continue
        p.set_defaults(func=lambda args, c=command, h=host: c.run(args, h))


# ---------------------------------------------------------------------------- main
def _first_positional(argv: list[str]) -> str | None:
    """The command name in ``argv`` (global options take no value), or None."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token
    return None


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """The parser for ``argv``: plugins are loaded only for a command that is not built in."""
    parser = build_parser(with_plugins=False)
    command = _first_positional(argv)
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    if command is None or command in commands.choices:
        return parser
    return build_parser()


def _debug_from_env() -> bool:
    """Whether ``MEDTOOLKIT_DEBUG`` asks for tracebacks (any value but empty, 0, false, no, off)."""
    return os.environ.get("MEDTOOLKIT_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or _debug_from_env()


def _subject(args: argparse.Namespace | None) -> str | None:
    """The file or directory a command works on (named in front of vague error messages)."""
    for name in ("run_dir", "run", "spec"):
        value = getattr(args, name, None)
        if isinstance(value, (str, Path)) and str(value):
            return str(value)
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medtoolkit`` command.

    Every failure ends in one ``error: ...`` line on stderr and exit code 1 (see
    :mod:`medtoolkit.errors`); with ``--debug`` or ``MEDTOOLKIT_DEBUG=1`` the traceback is
    printed before it. Ctrl-C prints ``error: interrupted`` and exits with 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    if debug:
        return _main(argv, debug)
    formatwarning = warnings.formatwarning
    warnings.formatwarning = _one_line_warning  # "warning: ..." instead of file:line + source line
    try:
        return _main(argv, debug)
    finally:
        warnings.formatwarning = formatwarning


def _one_line_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    return f"warning: {' '.join(str(message).split())}\n"


def _main(argv: list[str], debug: bool) -> int:
    args: argparse.Namespace | None = None
    try:
        parser = _parser_for(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if args.command == "train" and args.out is not None and not args.out.strip():
            parser.error("--out needs a directory name (got an empty string)")
        if args.command == "train" and args.resume and not args.out:
            parser.error("--resume needs --out DIR")
        if args.command == "train" and args.overwrite and not args.out:
            parser.error("--overwrite needs --out DIR")
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the command line reports, it never dumps a traceback
        if debug:
            traceback.print_exc()
        from medtoolkit.training.distributed import PeerFailed, launch_rank

        rank = launch_rank()
        if isinstance(error, PeerFailed) and not debug:  # the failing rank printed the reason
            return 1
        details = error_details(error)
        if details:
            print(details, file=sys.stderr)
        where = f"rank {rank}: " if rank else ""  # torchrun's ranks other than 0 say who they are
        print(f"error: {where}{error_message(error, _subject(args))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
