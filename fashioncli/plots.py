"""PNG plots for run directories: confusion matrices and training curves (matplotlib, Agg)."""
import math

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .io import ENCODING, CsvReader, atomic_path  # noqa: E402


def save_figure(fig, path):
    try:
        with atomic_path(path) as tmp:
            # The temporary name ends in .tmp, so the format must be explicit.
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)  # pyplot keeps every open figure: a training loop would leak one per epoch


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


def _group(name, values):
    if "loss" in name:
        return "loss"
    if name == "lr" or name.startswith("lr_") or "learning_rate" in name:
        return "learning rate"
    finite = [v for v in values if not math.isnan(v)]
    # Scores live in [0, 1]; anything else (seconds, counts) would squash them in a shared panel.
    return "metrics" if finite and all(0 <= v <= 1 for v in finite) else "other"


def plot_curves(metrics_csv_path, png_path):
    """Plot every numeric column of a per-epoch CSV against ``epoch``, grouped into panels:
    losses, metrics (values in [0, 1]), learning rate, other (e.g. throughput)."""
    columns = _read_columns(metrics_csv_path)
    x = columns.pop("epoch", None)
    if x is None:
        x = list(range(1, len(next(iter(columns.values()), [])) + 1))
    panels = {}
    for name, values in columns.items():
        if all(math.isnan(v) for v in values):
            continue  # never measured (e.g. AUROC with one class in validation)
        panels.setdefault(_group(name, values), []).append(name)
    order = [p for p in ("loss", "metrics", "learning rate", "other") if p in panels]
    fig, axes = plt.subplots(1, max(1, len(order)), figsize=(5 * max(1, len(order)), 4), squeeze=False)
    for ax, panel in zip(axes[0], order):
        for name in panels[panel]:
            ax.plot(x, columns[name], marker="o" if len(x) < 30 else None, markersize=3, label=name)
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if panel == "learning rate":
            lrs = [v for n in panels[panel] for v in columns[n] if not math.isnan(v)]
            if lrs and min(lrs) > 0 and max(lrs) / min(lrs) > 10:  # schedules span decades
                ax.set_yscale("log")
    if not order:
        axes[0][0].text(0.5, 0.5, "no numeric columns yet", ha="center", va="center")
        axes[0][0].set_axis_off()
    save_figure(fig, png_path)


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
