"""`fashion reproduce REPORT`: run a report's table of recipes and write it beside the report's figures.

manifest.py reads the table's description, runner.py plans and runs its rows (prepare once,
train / resume / skip, eval), table.py writes table.md, table.json and table.png.
"""
from .manifest import SCALES, bundled_reports, load_manifest
from .runner import folder, plan, read_state, run_step
from . import table as tables


def hardware():
    """What the rows ran on, in words: 'cpu: 2 cores (model)' or 'cuda: NVIDIA H200 x1'."""
    import os
    import platform

    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu: {cores} cores ({platform.processor() or platform.machine()}), torch {torch.__version__}"


def describe_plan(manifest, steps, scale):
    """The --dry-run text: one line per row with what would happen and the estimated minutes."""
    lines = [f"report {manifest.report} ({manifest.title}), scale {scale}: {len(steps)} rows"]
    total = 0.0
    for i, step in enumerate(steps, 1):
        if step.estimate is not None and step.status not in ("done", "skip"):
            total += step.estimate
        estimate = "?" if step.estimate is None else f"~{step.estimate:.1f} min ({step.estimate_from})"
        lines.append(f"{i:3d}. {step.row.name:<34} {step.spec or '—':<40} {step.status:<8} {estimate}")
    lines.append(f"estimated training time for the rows to run: ~{total:.0f} min"
                 + ("" if all(s.estimate is not None for s in steps if s.status not in ("done", "skip")) else
                    " (some rows have no recorded time)"))
    return "\n".join(lines)


def reproduce(spec, scale="cpu", only=None, dry_run=False, devices=1, replace=False, root="reproductions",
              progress=True, log=print):
    """Run (or with ``dry_run`` only plan) report ``spec``'s rows at ``scale`` -> a summary dict."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}")
    manifest = load_manifest(spec)
    steps = plan(manifest, scale, only, root)
    base = folder(manifest, root)
    if dry_run:
        return {"report": manifest.report, "scale": scale, "plan": describe_plan(manifest, steps, scale),
                "rows": [{"name": s.row.name, "recipe": s.spec, "status": s.status, "estimate_minutes": s.estimate}
                         for s in steps]}
    machine = hardware()
    states = {}
    for step in steps:
        if step.status == "done":
            log(f"[{step.row.name}] finished with this recipe already: skipped")
            states[step.row.name] = read_state(base, step)
        elif step.spec is not None:
            states[step.row.name] = run_step(step, base, devices, replace, progress, log, machine)
        tables.write(tables.build(manifest, steps, states, scale, machine), base)
    files = tables.write(tables.build(manifest, steps, states, scale, machine), base)
    return {"report": manifest.report, "scale": scale, "rows": len(steps),
            "measured": sum(1 for s in states.values() if s), "files": [str(f) for f in files]}


__all__ = ["reproduce", "bundled_reports", "load_manifest", "plan", "describe_plan", "hardware"]
