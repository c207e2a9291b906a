"""`fashion export` for a multi-task model: one output per head, named after it (softmax or sigmoid
probabilities); parity holds for every head (a sigmoid head's labels on or off alike at its threshold)."""
from ..classification.export import agreement


def export_metadata(meta, size):
    return {"heads": meta["heads"], "thresholds": meta.get("thresholds") or {}, "outputs": [
        {"name": name, "dtype": "float32", "shape": ["N", len(head["classes"])],
         "activation": "softmax" if head["type"] == "categorical" else "sigmoid"}
        for name, head in meta["heads"].items()
    ]}


def parity(heads, thresholds, want, got, atol):
    """-> the worst head's figures, {"heads": {head: its own}} and ok when every head agrees."""
    per_head = {n: agreement(want[n], got[n], thresholds.get(n, 0.5) if h.sigmoid else None, atol)
                for n, h in heads.items()}
    return {
        "max_abs_diff": max(h["max_abs_diff"] for h in per_head.values()),
        "top1_agreement": min(h["top1_agreement"] for h in per_head.values()), "atol": atol,
        "ok": all(h.pop("ok") for h in per_head.values()), "heads": per_head,
    }
