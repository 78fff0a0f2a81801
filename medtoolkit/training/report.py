"""Run reports: metrics table (markdown), training curves (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def format_metric(value: dict[str, float]) -> str:
    """``mean ± std`` with 4 decimals."""
    return f"{value['mean']:.4f} ± {value['std']:.4f}"


def metrics_table(test: dict[str, Any], title: str = "") -> str:
    """A markdown table of the test metrics (mean ± std)."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| metric | mean ± std |", "|---|---|"]
    for name in METRIC_ORDER:
        if name in test:
            lines.append(f"| {METRIC_LABELS[name]} | {format_metric(test[name])} |")
    return "\n".join(lines) + "\n"


def render_report(metrics: dict[str, Any]) -> str:
    """The full ``report.md`` text for a run's ``metrics.json`` content."""
    data = metrics.get("data", {})
    lines = [f"# {metrics.get('name', 'run')}", ""]
    lines.append(metrics_table(metrics["test"]))
    protocol = metrics.get("protocol", {})
    lines += [
        "",
        f"- model: `{metrics.get('model', '?')}`, parameters: {metrics.get('n_params', 0):,}",
        f"- data: {data.get('patients', '?')} patients, {data.get('visits', '?')} visits, "
        f"{data.get('n_drugs', '?')} drugs, ground-truth DDI rate {data.get('ground_truth_ddi_rate', float('nan')):.4f}",
        f"- protocol: {protocol.get('name', '?')}; averaging per {protocol.get('averaging', '?')}; "
        f"{protocol.get('bootstrap_rounds', '?')} bootstrap rounds of {protocol.get('bootstrap_fraction', '?')} "
        f"of test patients; threshold {protocol.get('threshold', '?')}",
    ]
    seconds = metrics.get("epoch_seconds", [])
    if seconds:
        lines.append(
            f"- epochs: {len(seconds)}, mean epoch time {sum(seconds) / len(seconds):.2f} s, "
            f"best epoch {metrics.get('best_epochs')}"
        )
    if metrics.get("wall_seconds") is not None:
        lines.append(f"- wall time: {metrics['wall_seconds']:.1f} s; device: {metrics.get('device', '?')}")
    if metrics.get("peak_memory_mb") is not None:
        lines.append(f"- peak memory: {metrics['peak_memory_mb']:.0f} MB")
    if metrics.get("data_fingerprint"):
        lines.append(f"- data fingerprint: `{metrics['data_fingerprint'][:16]}`")
    return "\n".join(lines) + "\n"


def plot_curves(histories: dict[str, dict[str, Any]], path: Path) -> bool:
    """Training loss and validation Jaccard per epoch, one line per split; False if nothing to plot."""
    if not any(h.get("epochs") for h in histories.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, val_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for split_name, history in histories.items():
        epochs = [e["epoch"] for e in history["epochs"]]
        loss_axis.plot(epochs, [e["train_loss"] for e in history["epochs"]], label=split_name)
        if history["epochs"] and history["epochs"][0]["validation"]:
            val_axis.plot(epochs, [e["validation"]["jaccard"] for e in history["epochs"]], label=split_name)
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="loss")
    val_axis.set(title="validation Jaccard", xlabel="epoch", ylabel="Jaccard")
    for axis in (loss_axis, val_axis):
        axis.grid(alpha=0.3)
        if len(histories) > 1:
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
