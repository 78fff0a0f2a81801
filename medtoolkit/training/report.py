"""Run reports: metrics table (markdown), ``report.md`` text, training curves (PNG).

A metric value may be missing (``None``), e.g. the DDI rate of a dataset without a DDI
matrix: tables and the report write it as ``n/a`` and the curves leave it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

METRIC_ORDER = ("jaccard", "prauc", "f1", "precision", "recall", "ddi_rate", "avg_drugs")
METRIC_LABELS = {
    "jaccard": "Jaccard",
    "prauc": "PRAUC",
    "f1": "F1",
    "precision": "Precision",
    "recall": "Recall",
    "ddi_rate": "DDI rate",
    "avg_drugs": "Avg # drugs",
}
#: how a missing value (``None`` or NaN) is written
MISSING = "n/a"


def _is_missing(value: Any) -> bool:
    """True for ``None`` and NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, or ``n/a`` when it is missing (None or NaN).

    Args:
        value: the number.
        digits: decimals.

    Returns:
        The formatted text.
    """
    return MISSING if _is_missing(value) else f"{value:.{digits}f}"


def format_metric(value: dict[str, float | None] | None) -> str:
    """``mean ± std`` with 4 decimals; ``n/a`` when the metric or its mean is missing.

    Args:
        value: ``{"mean": ..., "std": ...}`` or None.

    Returns:
        The formatted text (``"0.5235 ± 0.0012"``, ``"n/a"``).
    """
    if value is None or _is_missing(value.get("mean")):
        return MISSING
    return f"{format_number(value['mean'])} ± {format_number(value.get('std'))}"


def metrics_table(test: dict[str, Any], title: str = "") -> str:
    """A markdown table of the test metrics (mean ± std), in :data:`METRIC_ORDER`.

    Args:
        test: ``{metric: {"mean", "std"} or None}``; other keys are ignored.
        title: written as a ``###`` heading above the table when given.

    Returns:
        The markdown text, ending with a newline. A metric whose value is None reads ``n/a``.
    """
    lines = [f"### {title}", ""] if title else []
    lines += ["| metric | mean ± std |", "|---|---|"]
    for name in METRIC_ORDER:
        if name in test:
            lines.append(f"| {METRIC_LABELS[name]} | {format_metric(test[name])} |")
    return "\n".join(lines) + "\n"


def format_best_epochs(
    best_epochs: dict[str, int | None] | None, epochs_run: dict[str, int] | None = None
) -> str:
    """The selected epoch(s) in words: ``"12"`` for one split, ``"12 (seed0), 30 (seed1)"`` else.

    Args:
        best_epochs: ``{split name: best epoch or None}``.
        epochs_run: ``{split name: epochs trained}``; when given, each epoch reads
            ``"12 of 40"``.

    Returns:
        The text; ``n/a`` for a split without a selected epoch (or when there is none).
    """
    if not best_epochs:
        return MISSING

    def one(name: str, epoch: int | None) -> str:
        if epoch is None:
            return MISSING
        total = (epochs_run or {}).get(name)
        return f"{epoch} of {total}" if total else str(epoch)

    if len(best_epochs) == 1:
        ((name, epoch),) = best_epochs.items()
        return one(name, epoch)
    return ", ".join(f"{one(name, e)} ({name})" for name, e in best_epochs.items())


#: how the trainer's ``select_metric`` reads in the report
SELECTION_LABELS = {
    "jaccard": "highest validation Jaccard",
    "prauc": "highest validation PRAUC",
    "f1": "highest validation F1",
    "loss": "lowest validation loss",
}


def selection_metric(histories: dict[str, dict[str, Any]] | None) -> str | None:
    """The trainer's ``select_metric`` (``jaccard``, ``prauc``, ``f1``, ``loss``) read off the histories.

    The trainer keeps the best epoch's score (``best_score``): the validation value of the
    selection metric, or minus the validation loss for ``loss`` (the record's
    ``validation["loss"]``; minus the training loss in a ``metrics.json`` written before
    the validation loss existed). The metric is the one whose value at the best epoch
    equals that score, in every split that has one.

    Args:
        histories: ``{split name: TrainingHistory.to_json()}``.

    Returns:
        The metric's name, or None when it cannot be told.
    """
    found: set[str] = set()
    for history in (histories or {}).values():
        best, score = history.get("best_epoch"), history.get("best_score")
        record = next((r for r in history.get("epochs", []) if r.get("epoch") == best), None)
        if record is None or _is_missing(score):
            continue
        validation = record.get("validation") or {}
        candidates = {name for name in ("jaccard", "prauc", "f1") if validation.get(name) == score}
        loss = validation.get("loss") if not _is_missing(validation.get("loss")) else record.get("train_loss")
        if not _is_missing(loss) and -loss == score:
            candidates.add("loss")
        if not candidates:
            return None
        found = candidates if not found else found & candidates
        if not found:
            return None
    return next((name for name in SELECTION_LABELS if name in found), None)


def _count(value: Any) -> str:
    """An integer with thousands separators (``1,002``); ``?`` when absent."""
    return f"{value:,}" if isinstance(value, int) else "?" if value is None else str(value)


def _test_caption(test: dict[str, Any], protocol: dict[str, Any], n_splits: int) -> str:
    """What the table's ``mean ± std`` is taken over, and on how many test patients."""
    rounds, fraction = protocol.get("bootstrap_rounds"), protocol.get("bootstrap_fraction")
    share = f"{fraction:.0%} of" if isinstance(fraction, (int, float)) else "a share of"
    if n_splits > 1:
        if rounds == 0:
            each = " (each split scored once on all its test patients)"
        elif rounds is not None:
            each = f" (each split's value: the mean of {rounds} bootstrap rounds, each drawing {share} its test patients)"
        else:
            each = ""
        return f"Test metrics: mean ± std over the {n_splits} splits{each}."
    size = ""
    if isinstance(test.get("n_patients"), int):
        size = f" ({test['n_patients']:,} test patients"
        size += f", {test['n_visits']:,} visits)" if isinstance(test.get("n_visits"), int) else ")"
    if rounds == 0:
        return f"Test metrics{size}: scored once on all test patients (std 0)."
    if rounds is None:
        return f"Test metrics{size}: mean ± std."
    return f"Test metrics{size}: mean ± std over {rounds} bootstrap rounds, each drawing {share} the test patients."


def format_molecules(summary: dict[str, Any]) -> str:
    """The molecule knowledge a run used, in words (``report.md``'s ``molecules`` line).

    Args:
        summary: ``data.molecules`` of ``metrics.json`` (``DataSchema.molecule_summary()``):
            the counts ``drugs``, ``molecules``, ``atoms``, ``bonds``, ``failed`` (SMILES
            rdkit could not parse) and ``drugs_without_molecules``, and ``substructures``
            (mask columns); each may be absent.

    Returns:
        E.g. ``"131 drugs, 190 molecules (3,012 atoms, 3,200 bonds); 2 SMILES rdkit could
        not parse; 3 drugs without a parsed molecule; 491 substructures"``; the parts whose
        counts are absent are left out (``n/a`` when none is there).
    """
    parts = []
    if "molecules" in summary:
        graph = f"{_count(summary.get('drugs'))} drugs, {_count(summary.get('molecules'))} molecules"
        if "atoms" in summary:
            graph += f" ({_count(summary.get('atoms'))} atoms, {_count(summary.get('bonds'))} bonds)"
        parts.append(graph)
    if "failed" in summary:
        parts.append(f"{_count(summary['failed'])} SMILES rdkit could not parse")
    if "drugs_without_molecules" in summary:
        parts.append(f"{_count(summary['drugs_without_molecules'])} drugs without a parsed molecule")
    if "substructures" in summary:
        parts.append(f"{_count(summary['substructures'])} substructures")
    return "; ".join(parts) if parts else MISSING


def format_statistics(summary: dict[str, Any]) -> str:
    """The training-split statistics a run computed, in words (``report.md``'s ``statistics`` line).

    Args:
        summary: ``data.statistics`` of ``metrics.json``
            (``DataSchema.statistics_summary()``): ``{name: shape}``.

    Returns:
        E.g. ``"`code_counts/medications` [131], `pair_counts/diagnoses/medications` [1958 x 131]"``
        (``n/a`` when empty).
    """
    parts = []
    for name, shape in summary.items():
        dims = " x ".join(str(d) for d in shape) if isinstance(shape, (list, tuple)) else str(shape)
        parts.append(f"`{name}` [{dims}]")
    return ", ".join(parts) if parts else MISSING


#: the metrics of the groups table, in the paper's order (Table 7)
GROUP_METRICS = ("prauc", "jaccard", "f1")


def _cell(value: Any) -> str:
    """A table cell: ``mean ± std`` for a combined value, 4 decimals for a number, ``n/a`` when missing."""
    if isinstance(value, dict):
        return format_metric(value)
    return format_number(value)


def _hospital_count(value: Any) -> str:
    """Hospitals in a bin: an int, or ``{"mean", "std"}`` over splits (an int when it did not vary)."""
    if isinstance(value, dict):
        mean, std = value.get("mean"), value.get("std")
        if _is_missing(mean):
            return MISSING
        return f"{mean:g}" if not std else f"{mean:.1f} ± {std:.1f}"
    return MISSING if value is None else str(value)


def groups_table(test: dict[str, Any]) -> str:
    """The grouped test metrics as a markdown table (the TEMPT paper's Table 7 layout).

    One row per hospital-size bin (``small``, ``medium``, ``large`` for the paper's bins)
    and ``all``; columns: the bin's record range, its number of hospitals, PRAUC, Jaccard
    and F1 (each the mean over the bin's hospitals; ``mean ± std`` over splits when the
    run has several).

    Args:
        test: the run's test metrics; reads ``test["groups"]["per_bin"]``.

    Returns:
        The markdown text ending with a newline; ``""`` when the run has no grouped metrics.
    """
    groups = test.get("groups") or {}
    per_bin = groups.get("per_bin") or {}
    if not per_bin:
        return ""
    labels = " | ".join(METRIC_LABELS[m] for m in GROUP_METRICS)
    header = f"| group | records per hospital | hospitals | {labels} |"
    lines = [header, "|" + "---|" * (3 + len(GROUP_METRICS))]
    for name, entry in per_bin.items():
        cells = [name, entry.get("bounds", "?"), _hospital_count(entry.get("hospitals"))]
        cells += [_cell(entry.get(metric)) for metric in GROUP_METRICS]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _stage_name(stage: dict[str, Any]) -> str:
    """A stage's name with its adapter and the stage it starts from."""
    name = f"`{stage.get('name', '?')}`"
    extras = []
    adapter = stage.get("adapter")
    if isinstance(adapter, dict):
        adapter = adapter.get("type")
    if adapter:
        extras.append(f"adapter `{adapter}`")
    if stage.get("init_from"):
        extras.append(f"from `{stage['init_from']}`")
    return name + (f" ({', '.join(extras)})" if extras else "")


def stages_table(stages: list[dict[str, Any]]) -> str:
    """A staged run's stages as a markdown table.

    Args:
        stages: ``metrics["stages"]``: per stage ``name``, ``repeat_per``, ``init_from``,
            ``adapter``, ``units``, ``trained_units``, ``skipped_units`` (ids, or a count),
            ``trainable_params``, ``total_params``, ``trainable_share``, ``seconds``,
            ``select_metric``; each may be absent (``?``/``n/a``).

    Returns:
        The markdown text ending with a newline (``""`` without stages); columns: stage
        (with adapter and ``init_from``), repeat per, units trained / skipped, trainable
        parameters (of all), share, seconds, selection metric.
    """
    if not stages:
        return ""
    lines = ["| stage | repeat per | units trained / skipped | trainable params | share | seconds | selected by |",
             "|---|---|---|---|---|---|---|"]
    for stage in stages:
        skipped = stage.get("skipped_units")
        n_skipped = len(skipped) if isinstance(skipped, (list, tuple)) else skipped
        trained = stage.get("trained_units")
        units = f"{_count(trained)} / {_count(n_skipped if n_skipped is not None else 0)}"
        params = _count(stage.get("trainable_params"))
        if stage.get("total_params") is not None:
            params += f" of {_count(stage.get('total_params'))}"
        share = stage.get("trainable_share")
        share_text = MISSING if _is_missing(share) or not isinstance(share, (int, float)) else f"{share:.2%}"
        seconds = stage.get("seconds")
        seconds_text = MISSING if not isinstance(seconds, (int, float)) else f"{seconds:.1f}"
        selected = stage.get("select_metric")
        cells = [_stage_name(stage), stage.get("repeat_per") or "-", units, params, share_text, seconds_text,
                 SELECTION_LABELS.get(selected, selected or MISSING)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _groups_caption(test: dict[str, Any], n_splits: int) -> str:
    """What the groups table's values are."""
    over = f"; mean ± std over the {n_splits} splits" if n_splits > 1 else ""
    return ("Test metrics per hospital-size group: each hospital is scored on its own test visits (visit "
            f"averages), then the hospitals of a group are averaged{over}. A hospital's size is its number of "
            "records in the data. Per-hospital values: `metrics.json`, "
            + ("`test.splits.<split>.groups.per_group`." if n_splits > 1 else "`test.groups.per_group`."))


def render_report(metrics: dict[str, Any]) -> str:
    """The full ``report.md`` text for a run's ``metrics.json`` content.

    The header names the model, the dataset (``data.name``) and the protocol
    (``protocol.name`` and its splits); a caption says what the table's ``mean ± std`` is
    taken over (bootstrap rounds of how many test patients, or the splits); the table holds
    the test metrics; the list below it the data counts, scoring settings, best epoch per
    split (of how many trained, and the selection metric: ``protocol.select_metric``, or
    what the histories tell for an older ``metrics.json``), the molecules used (when
    ``data.molecules`` is there, see :func:`format_molecules`), the training-split
    statistics computed (when ``data.statistics`` is there, see :func:`format_statistics`)
    and timings. Grouped test metrics (``test["groups"]``) add a section with
    :func:`groups_table`; a staged run (``stages``) a section with :func:`stages_table`.

    Args:
        metrics: the run's metrics (the ``metrics.json`` mapping); only ``test`` is required.

    Returns:
        The markdown text, ending with a newline.
    """
    data = metrics.get("data", {})
    protocol = metrics.get("protocol", {})
    splits = list(protocol.get("splits") or metrics.get("best_epochs") or [])
    dataset = data.get("name", "?")
    protocol_name = protocol.get("name", "?")
    split_text = f"{len(splits)} split{'s' if len(splits) != 1 else ''}: {', '.join(splits)}" if splits else ""
    lines = [
        f"# {metrics.get('name', 'run')}",
        "",
        f"`{metrics.get('model', '?')}` on `{dataset}`, protocol `{protocol_name}`"
        + (f" ({split_text})" if split_text else ""),
        "",
        _test_caption(metrics["test"], protocol, len(splits)),
        "",
        metrics_table(metrics["test"]),
        f"- model: `{metrics.get('model', '?')}`, parameters: {metrics.get('n_params', 0):,}",
        f"- dataset: `{dataset}`: {_count(data.get('patients'))} patients, {_count(data.get('visits'))} visits, "
        f"{_count(data.get('n_drugs'))} drugs, ground-truth DDI rate {format_number(data.get('ground_truth_ddi_rate'))}",
        f"- scoring: metrics averaged per {protocol.get('averaging', '?')}; a drug is recommended at "
        f"probability {protocol.get('threshold', '?')} or more",
    ]
    if data.get("molecules"):
        lines.append(f"- molecules: {format_molecules(data['molecules'])}")
    if data.get("statistics"):
        lines.append(f"- training statistics: {format_statistics(data['statistics'])}")
    seconds = metrics.get("epoch_seconds", [])
    if seconds:
        over = f" in all over {len(splits)} splits" if len(splits) > 1 else ""
        lines.append(f"- epochs: {len(seconds)}{over}, mean epoch time {sum(seconds) / len(seconds):.2f} s")
        histories = metrics.get("history") or {}
        epochs_run = {name: len(h.get("epochs", [])) for name, h in histories.items() if h.get("epochs")}
        selected = protocol.get("select_metric") or selection_metric(histories)
        by = f" ({SELECTION_LABELS[selected]})" if selected in SELECTION_LABELS else ""
        lines.append(f"- best epoch: {format_best_epochs(metrics.get('best_epochs'), epochs_run)}{by}")
    if metrics.get("wall_seconds") is not None:
        lines.append(f"- wall time: {metrics['wall_seconds']:.1f} s; device: {metrics.get('device', '?')}")
    if metrics.get("peak_memory_mb") is not None:
        lines.append(f"- peak memory: {metrics['peak_memory_mb']:.0f} MB")
    if metrics.get("data_fingerprint"):
        lines.append(f"- data fingerprint: `{metrics['data_fingerprint'][:16]}`")
    groups = groups_table(metrics["test"])
    if groups:
        lines += ["", "## Hospital-size groups", "", _groups_caption(metrics["test"], len(splits)), "",
                  groups.rstrip("\n")]
    stages = stages_table(metrics.get("stages") or [])
    if stages:
        lines += ["", "## Stages", "", stages.rstrip("\n")]
    return "\n".join(lines) + "\n"


def curves_title(metrics: dict[str, Any]) -> str:
    """The curves figure's title for a run's ``metrics.json`` content: run, model, dataset, protocol.

    Args:
        metrics: the run's metrics mapping.

    Returns:
        E.g. ``"gamenet on mimic3, protocol random"`` (``"my-run: gamenet on ..."`` when the
        run's name is not the model's).
    """
    name, model = metrics.get("name", "run"), metrics.get("model", "?")
    dataset = (metrics.get("data") or {}).get("name", "?")
    protocol = (metrics.get("protocol") or {}).get("name", "?")
    run = f"{model} on {dataset}, protocol {protocol}"
    return run if name == model else f"{name}: {run}"


@dataclass
class Series:
    """One value per epoch.

    Attributes:
        epochs: epoch numbers (1-based) that have a value.
        values: the values, one per epoch in ``epochs``.
    """

    epochs: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class Curves:
    """What the curves figure draws for one split.

    Attributes:
        epochs: epoch numbers (1-based) with a training loss.
        train_loss: training loss per epoch.
        val_epochs / val_jaccard: epochs with a validation Jaccard, and its values.
        val_ddi_epochs / val_ddi_rate: epochs with a validation DDI rate (missing values
            are left out), and its values.
        best_epoch: the selected epoch (a vertical line), or None.
        tracked: the values the loss terms tracked per epoch (the records' ``losses``),
            keyed ``"<loss label> <value name>"`` (``"1.ddi ddi_rate"``), in order of first
            appearance; a ``target`` is not a series (see ``targets``).
        targets: ``{loss label: target}``, the last ``target`` each loss term recorded.
    """

    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_epochs: list[int] = field(default_factory=list)
    val_jaccard: list[float] = field(default_factory=list)
    val_ddi_epochs: list[int] = field(default_factory=list)
    val_ddi_rate: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    tracked: dict[str, Series] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)


def curve_data(histories: dict[str, dict[str, Any]]) -> dict[str, Curves]:
    """The series :func:`plot_curves` draws, per split, from the trainer's histories.

    Args:
        histories: ``{split name: TrainingHistory.to_json()}`` (``epochs`` records with
            ``epoch``, ``train_loss``, a ``validation`` metrics mapping and, when the loss
            terms tracked values, ``losses``; ``best_epoch``).

    Returns:
        ``{split name: Curves}``; missing values (None, NaN) are left out of their series.
    """
    curves: dict[str, Curves] = {}
    for split_name, history in histories.items():
        item = Curves(best_epoch=history.get("best_epoch"))
        for record in history.get("epochs", []):
            epoch = record["epoch"]
            if not _is_missing(record.get("train_loss")):
                item.epochs.append(epoch)
                item.train_loss.append(record["train_loss"])
            validation = record.get("validation") or {}
            if not _is_missing(validation.get("jaccard")):
                item.val_epochs.append(epoch)
                item.val_jaccard.append(validation["jaccard"])
            if not _is_missing(validation.get("ddi_rate")):
                item.val_ddi_epochs.append(epoch)
                item.val_ddi_rate.append(validation["ddi_rate"])
            for label, values in (record.get("losses") or {}).items():
                for name, value in values.items():
                    if _is_missing(value):
                        continue
                    if name == "target":
                        item.targets[label] = value
                        continue
                    series = item.tracked.setdefault(f"{label} {name}", Series())
                    series.epochs.append(epoch)
                    series.values.append(value)
        curves[split_name] = item
    return curves


def curves_figure(histories: dict[str, dict[str, Any]], title: str | None = None) -> "Figure | None":
    """The curves figure: training loss, validation Jaccard, validation DDI rate and loss terms per epoch.

    One line per split (labelled ``split <name>``); a dashed vertical line marks each
    split's best epoch on every panel, its legend entry naming the selection metric when the
    histories tell it (:func:`selection_metric`). One legend, below the panels, serves them
    all. The DDI panel is left out when no epoch has a validation DDI rate.

    The last panel, "loss terms (training)", draws every value the loss terms tracked
    (:attr:`Curves.tracked`, one line per value, split and loss; several splits differ by
    line style) and a dashed horizontal line at each loss term's ``target``, in the colour
    of its ``ddi_rate`` line; its own legend names them. It is left out when no epoch has a
    tracked value.

    Args:
        histories: ``{split name: TrainingHistory.to_json()}``.
        title: the figure's title (:func:`curves_title` for a run), or None.

    Returns:
        The matplotlib figure (close it after use), or None when no split has an epoch.
    """
    curves = curve_data(histories)
    if not any(c.epochs for c in curves.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_ddi = any(c.val_ddi_rate for c in curves.values())
    with_tracked = any(series.values for c in curves.values() for series in c.tracked.values())
    selected = selection_metric(histories)
    criterion = f", {SELECTION_LABELS[selected]}" if selected else ""
    n_panels = 2 + int(with_ddi) + int(with_tracked)
    figure, axes = plt.subplots(1, n_panels, figsize=(5 * n_panels, 4))
    loss_axis, jaccard_axis = axes[0], axes[1]
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="loss")
    jaccard_axis.set(title="validation Jaccard", xlabel="epoch", ylabel="Jaccard")
    if with_ddi:
        axes[2].set(title="validation DDI rate", xlabel="epoch", ylabel="DDI rate")
    if with_tracked:
        _draw_tracked(axes[-1], curves)
    for split_name, item in curves.items():
        (line,) = loss_axis.plot(item.epochs, item.train_loss, label=f"split {split_name}")
        color = line.get_color()
        jaccard_axis.plot(item.val_epochs, item.val_jaccard, label=f"split {split_name}", color=color)
        if with_ddi:
            axes[2].plot(item.val_ddi_epochs, item.val_ddi_rate, label=f"split {split_name}", color=color)
        if item.best_epoch is not None:
            label = f"best epoch {item.best_epoch}" + (f" ({split_name})" if len(curves) > 1 else criterion)
            for axis in axes:
                axis.axvline(item.best_epoch, color=color, linestyle="--", alpha=0.7, label=label)
    for axis in axes:
        axis.grid(alpha=0.3)
    # one legend for all panels, below them, so that it never hides a curve
    # (one column per split: its line above its best-epoch line)
    handles, labels = loss_axis.get_legend_handles_labels()
    columns = len(labels) if len(curves) == 1 else min(len(curves), 5)
    rows = math.ceil(len(labels) / columns)
    figure.legend(handles, labels, loc="lower center", ncol=columns, fontsize="small", frameon=False)
    if title:
        figure.suptitle(title)
    figure.tight_layout(rect=(0, min(0.055 * rows + 0.02, 0.4), 1, 1))
    return figure


def _draw_tracked(axis: Any, curves: dict[str, Curves]) -> None:
    """The "loss terms (training)" panel: tracked values per epoch, targets as dashed lines, a legend."""
    import matplotlib.pyplot as plt

    axis.set(title="loss terms (training)", xlabel="epoch", ylabel="value")
    palette = plt.rcParams["axes.prop_cycle"].by_key().get("color") or ["C0"]
    names = list(dict.fromkeys(name for c in curves.values() for name in c.tracked))
    colors = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    styles = ("-", ":", "-.", (0, (5, 1)))
    handles = []
    for i, (split_name, item) in enumerate(curves.items()):
        suffix = f" ({split_name})" if len(curves) > 1 else ""
        for name, series in item.tracked.items():
            (line,) = axis.plot(series.epochs, series.values, color=colors[name],
                                linestyle=styles[i % len(styles)], marker=".", label=name + suffix)
            handles.append(line)
        for label, target in item.targets.items():
            color = colors.get(f"{label} ddi_rate", "grey")
            handles.append(axis.axhline(target, color=color, linestyle="--", linewidth=1,
                                        label=f"{label} target {target:g}{suffix}"))
    axis.legend(handles=handles, fontsize="x-small")


def plot_curves(histories: dict[str, dict[str, Any]], path: Path, title: str | None = None) -> bool:
    """Write :func:`curves_figure` as a PNG.

    Args:
        histories: ``{split name: TrainingHistory.to_json()}``.
        path: the PNG file to write.
        title: the figure's title (:func:`curves_title` for a run), or None.

    Returns:
        False (and nothing written) when no split has an epoch to plot.
    """
    return _save_figure(curves_figure(histories, title), path)


def _split_groups(test: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{split name: groups}`` of a run's test metrics (one split: ``{"": groups}``)."""
    splits = test.get("splits")
    if isinstance(splits, dict):
        return {name: m["groups"] for name, m in splits.items() if isinstance(m, dict) and m.get("groups")}
    return {"": test["groups"]} if test.get("groups") else {}


def groups_figure(test: dict[str, Any], metric: str = "jaccard") -> "Figure | None":
    """Per-hospital test ``metric`` against hospital size (log x), with the size bins.

    One point per hospital with test visits (one colour per split when the run has
    several); dashed vertical lines at the bin bounds; a horizontal segment across each
    bin at the mean over its hospitals (over splits too when there are several), labelled
    with the bin's name.

    Args:
        test: the run's test metrics (``test["groups"]``, and ``test["splits"][*]["groups"]``
            for several splits).
        metric: the metric drawn (default Jaccard).

    Returns:
        The matplotlib figure (close it after use), or None when no hospital has a value.
    """
    per_split = _split_groups(test)
    points = {name: [(g["size"], g[metric]) for g in groups.get("per_group", {}).values()
                     if not _is_missing(g.get(metric)) and g.get("size")]
              for name, groups in per_split.items()}
    if not any(points.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, values in points.items():
        if values:
            sizes, scores = zip(*values)
            axis.scatter(sizes, scores, s=14, alpha=0.7, label=f"split {name}" if name else "hospitals")
    all_sizes = [size for values in points.values() for size, _ in values]
    low, high = min(all_sizes) / 1.5, max(all_sizes) * 1.5
    groups = test.get("groups") or next(iter(per_split.values()))
    bounds = [b for b in groups.get("bins", []) if isinstance(b, (int, float))]
    for bound in bounds:
        if low < bound < high:
            axis.axvline(bound, color="grey", linestyle="--", linewidth=1)
    names = [name for name in (groups.get("per_bin") or {}) if name != "all"]
    for k, name in enumerate(names):
        entry = groups["per_bin"][name]
        value = entry.get(metric)
        mean = value.get("mean") if isinstance(value, dict) else value
        if _is_missing(mean):
            continue
        left = low if k == 0 else max(low, bounds[k - 1])
        right = high if k >= len(bounds) else min(high, bounds[k])
        if left >= right:
            continue
        axis.hlines(mean, left, right, color="black", linewidth=2)
        axis.annotate(f"{name}: {mean:.3f}", ((left * right) ** 0.5, mean), textcoords="offset points",
                      xytext=(0, 5), ha="center", fontsize="small",
                      bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
    axis.set_xscale("log")
    axis.set_xlim(low, high)
    label = METRIC_LABELS.get(metric, metric)
    axis.set(xlabel="records per hospital (log scale)", ylabel=f"test {label}",
             title=f"test {label} per hospital; black: mean per size group")
    axis.grid(alpha=0.3)
    if len(points) > 1:
        axis.legend(fontsize="small")
    figure.tight_layout()
    return figure


def plot_groups(test: dict[str, Any], path: Path, metric: str = "jaccard") -> bool:
    """Write :func:`groups_figure` as a PNG (``groups.png`` of a run with ``eval.group_by: hospital``).

    Args:
        test: the run's test metrics.
        path: the PNG file to write.
        metric: the metric drawn.

    Returns:
        False (and nothing written) when the run has no per-hospital values.
    """
    return _save_figure(groups_figure(test, metric), path)


def _save_figure(figure: "Figure | None", path: Path) -> bool:
    """Write ``figure`` as a PNG and close it; False (nothing written) when it is None."""
    if figure is None:
        return False
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
