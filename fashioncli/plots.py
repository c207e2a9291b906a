"""PNG plots for run directories and eval reports: confusion matrices, training curves, bar charts
(matplotlib, Agg)."""
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .io import ENCODING, CsvReader, atomic_path  # noqa: E402


def save_figure(fig, path, fmt="png"):
    try:
        with atomic_path(path) as tmp:
            # The temporary name ends in .tmp, so the format must be explicit.
            fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)  # pyplot keeps every open figure: a training loop would leak one per epoch


def figure_png(fig):
    """A figure as PNG bytes (for report.html, which embeds its pictures), closed after."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def bar_chart(labels, values, title, xlabel, lines=None):
    """Horizontal bars, one per label (values in [0, 1]; None or NaN drawn as "n/a"), with
    ``lines`` ({name: value}) as labelled vertical lines (a mean, a report's figure) -> PNG bytes."""
    values = [math.nan if v is None else float(v) for v in values]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(6.4, max(1.6, 0.24 * n + 1.0)))
    y = np.arange(n)
    ax.barh(y, np.nan_to_num(values), color="#3b82f6", height=0.7)
    for i, v in enumerate(values):
        ax.text(0.005 if math.isnan(v) else v + 0.01, i, "n/a" if math.isnan(v) else f"{v:.2f}",
                va="center", fontsize=7, color="0.35")
    ax.set_yticks(y, labels=labels, fontsize=8 if n <= 40 else 6)
    ax.invert_yaxis()  # the first label on top, as in the tables
    ax.set_xlim(0, 1.08)
    colours = plt.get_cmap("tab10")
    for k, (name, value) in enumerate((lines or {}).items()):
        if value is not None and not math.isnan(float(value)):
            ax.axvline(float(value), color=colours(k + 1), linestyle="--", linewidth=1.4, label=f"{name} {float(value):.3f}")
    if lines:
        ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return figure_png(fig)


def plot_confusion_matrix(matrix, classes, path, normalize=True):
    """Write a C x C confusion matrix (rows true, columns predicted) as a PNG heat map.

    ``normalize`` colours each row by its share of the true class (recall), so rare classes
    stay visible; cells are annotated while the matrix is small enough to read.
    """
    counts = np.asarray(matrix, dtype=float)
    n = len(classes)
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    else:
        values = counts
    side = min(max(4.0, 0.45 * n + 2), 40.0)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    rotation = 45 if n <= 6 else 90
    ax.set_xticks(range(n), labels=classes, rotation=rotation, ha="right" if rotation == 45 else "center",
                  rotation_mode="anchor" if rotation == 45 else "default")
    ax.set_yticks(range(n), labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if n <= 30:
        limit = values.max() / 2 if values.size else 0
        for i in range(n):
            for j in range(n):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > limit else "black")
    save_figure(fig, path)


def _read_columns(csv_path):
    """CSV -> {column: [float or nan]} for numeric columns; empty cells are nan."""
    with open(csv_path, newline="", **ENCODING) as f:
        rows = list(CsvReader(f))
    columns = {}
    for name in (rows[0].keys() if rows else ()):
        try:
            columns[name] = [float(r[name]) if r[name] not in ("", None) else math.nan for r in rows]
        except ValueError:
            continue  # text column (e.g. a timestamp): not plottable
    return columns


# A metric's family by the words in its name: the panels of curves.png when the task names none.
FAMILIES = (("loss", "loss"), ("iou", "IoU"), ("miou", "IoU"), ("accuracy", "accuracy"), ("exact_match", "accuracy"),
            ("precision", "precision / recall / F1"), ("recall", "precision / recall / F1"),
            ("f1", "precision / recall / F1"), ("auroc", "AUROC / AP"), ("map", "AUROC / AP"), ("ap", "AUROC / AP"))


def metric_family(name):
    """The panel of a metrics.csv column: loss, accuracy, IoU, ..., or the column's own name."""
    words = name.removeprefix("train_").removeprefix("val_").split("_")
    for word, family in FAMILIES:
        if word in words:
            return family
    return name.removeprefix("train_").removeprefix("val_").replace("_", " ")


def _read_steps(lr_csv_path):
    """lr.csv (step, epoch, lr: one row per optimizer step) -> (epochs, lrs), or None when absent."""
    if lr_csv_path is None or not lr_csv_path.is_file():
        return None
    columns = _read_columns(lr_csv_path)
    return (columns["epoch"], columns["lr"]) if columns.get("lr") else None


def plot_curves(metrics_csv_path, png_path, lr_csv_path=None, panel_of=None):
    """Plot every numeric column of a per-epoch CSV against ``epoch``, a panel per head or metric
    family (``panel_of(column)``, the task's, else ``metric_family``), losses first, every line
    its own colour (train dashed, validation solid), and the learning rate of every optimizer
    step from ``lr_csv_path`` (else the per-epoch ``lr`` column) in a panel of its own."""
    columns = _read_columns(metrics_csv_path)
    x = columns.pop("epoch", None)
    if x is None:
        x = list(range(1, len(next(iter(columns.values()), [])) + 1))
    steps = _read_steps(Path(lr_csv_path) if lr_csv_path else None)
    panels = {}
    for name, values in columns.items():
        if all(math.isnan(v) for v in values):
            continue  # never measured (e.g. AUROC with one class in validation)
        if name == "lr" or name.startswith("lr_"):
            panel = None if steps else "learning rate"
        elif "loss" in name:
            panel = "loss"
        elif not all(0 <= v <= 1 for v in values if not math.isnan(v)):
            panel = "throughput" if name.endswith("_per_s") else metric_family(name)  # seconds, counts: apart
        else:
            panel = (panel_of(name) if panel_of else None) or metric_family(name)
        if panel:
            panels.setdefault(panel, []).append(name)
    order = sorted(panels, key=lambda p: (p != "loss", p in ("learning rate", "throughput")))
    if steps:
        order.append("learning rate (per step)")
    count = max(1, len(order))
    ncols = min(3, count)
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.6 * nrows), squeeze=False)
    palette = _palette(sum(len(v) for v in panels.values()) + 1)
    colour = iter(palette)
    for ax, panel in zip(axes.flat, order):
        if panel == "learning rate (per step)":
            ax.plot(steps[0], steps[1], color=next(colour), linewidth=1.2, label="lr")
            lrs = [v for v in steps[1] if not math.isnan(v)]
        else:
            for name in panels[panel]:
                ax.plot(x, columns[name], marker="o" if len(x) < 30 else None, markersize=3, label=name,
                        color=next(colour), linestyle="--" if name.startswith("train_") else "-")
            lrs = [v for n in panels[panel] for v in columns[n] if not math.isnan(v)] if "learning" in panel else []
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if lrs and min(lrs) > 0 and max(lrs) / min(lrs) > 10:  # schedules span decades
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(order):]:
        ax.set_axis_off()
    if not order:
        axes[0][0].text(0.5, 0.5, "no numeric columns yet", ha="center", va="center")
    fig.tight_layout()
    save_figure(fig, png_path)


def _palette(n):
    """``n`` distinct colours: tab10, then tab20's lighter ones, then evenly spaced hues."""
    colours = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("tab20").colors[1::2])
    if n > len(colours):
        colours += [plt.get_cmap("hsv")(i / (n - len(colours) + 1)) for i in range(n - len(colours))]
    return colours


def save_image_grid(path, tiles, columns=4):
    """Write ``tiles`` [(uint8 RGB image, caption)] as a JPEG grid with the captions above (train_batch.jpg)."""
    rows = max(1, math.ceil(len(tiles) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (image, caption) in zip(axes.flat, tiles):
        ax.imshow(np.asarray(image), interpolation="nearest")
        ax.set_title(caption, fontsize=7, wrap=True)
    fig.tight_layout()
    save_figure(fig, path, fmt="jpeg")


def _project_2d(points, *others):
    """Embeddings (N, D) -> 2-D: the raw axes when D == 2, else the first two principal components
    of ``points``; ``others`` (e.g. prototypes) go through the same projection -> (arrays, axis names)."""
    points = np.asarray(points, dtype=float)
    if points.shape[1] == 2:
        return [points, *(np.asarray(o, dtype=float) for o in others)], ("dimension 1", "dimension 2")
    centre = points.mean(axis=0)
    axes = np.linalg.svd(points - centre, full_matrices=False)[2][:2].T  # D x min(2, N, D)
    axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))  # D == 1 (or N == 1): a flat second axis
    return [(np.asarray(a, dtype=float) - centre) @ axes for a in (points, *others)], ("PC 1", "PC 2")


def plot_embedding(embedding, labels, classes, known, path, prototypes=None):
    """Write a 2-D scatter of embeddings (N, D) coloured by class, with prototypes as stars.

    ``labels`` index ``classes``; the first ``known`` are the model's (one colour each), the rest
    unseen classes (grey crosses). ``prototypes`` (C*K, D) are in class order, K per known class.
    D > 2 is shown on the embeddings' first two principal components.
    """
    labels = np.asarray(labels)
    have_prototypes = prototypes is not None and len(prototypes)
    (points, *rest), names = _project_2d(embedding, *([prototypes] if have_prototypes else []))
    colours = plt.get_cmap("tab10" if known <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7, 6))
    unseen = labels >= known
    if unseen.any():
        ax.scatter(*points[unseen].T, s=10, marker="x", color="0.6", alpha=0.6,
                   label=f"unseen ({', '.join(classes[i] for i in np.unique(labels[unseen]))})")
    for i in range(known):
        mine = labels == i
        if mine.any():
            ax.scatter(*points[mine].T, s=10, color=colours(i % colours.N), alpha=0.6, label=classes[i])
    if have_prototypes:
        owner = np.arange(len(rest[0])) // max(1, len(rest[0]) // known)  # each prototype's class
        ax.scatter(*rest[0].T, s=220, marker="*", color=[colours(i % colours.N) for i in owner],
                   edgecolors="black", linewidths=1.2, zorder=3)
        ax.scatter([], [], s=120, marker="*", color="white", edgecolors="black", label="prototypes")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title("learned embedding and prototypes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)
