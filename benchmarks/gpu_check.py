"""GPU check: `fashion` on one CUDA GPU against hand-tuned loops, in one run. Start it with
`benchmarks/gpu_check.sh`, which refuses a machine without CUDA first (in a second, not after imports).

Prints, on the same model (EfficientNet-Lite0 by default), data and batch:
  train img/s     `fashion train` (second epoch) vs a hand-tuned loop: the cached images already on the
                  GPU, flips drawn on the GPU, AMP bf16, channels_last, fused AdamW (target: within 10%)
  loader img/s    `fashion train`'s own DataLoader without the model (it must be well ahead of training)
  GPU utilisation sampled with nvidia-smi while `fashion train` runs
  predict img/s   `fashion predict` over image files vs forward-only on batches already on the GPU
  DDP             `fashion train` and `fashion predict` launched by torchrun with one process
                  (--devices 1): exit codes and img/s
Data: ../shared/datasets/clothing-small when present, else the embedded synthetic set (--data).
"""
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager

import torch

import common
from classification import loader_only, pretrained_model


def hand_tuned_train(trainer, args):
    """The ceiling for this model and data: every cached training image on the GPU, flips drawn there,
    AMP bf16, channels_last, fused AdamW, nothing read back until the end -> img/s of the second epoch."""
    from fashioncli.data.preprocess import normalize

    device, pre = trainer.device, trainer.preprocessing
    dataset = trainer.train_set.dataset if hasattr(trainer.train_set, "dataset") else trainer.train_set
    rows = trainer.train_set.indices if hasattr(trainer.train_set, "indices") else range(len(dataset))
    images = torch.from_numpy(dataset.array[list(rows)]).to(device).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(dataset.labels[list(rows)], device=device)
    model = pretrained_model(args, int(labels.max()) + 1).to(device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    model.train()
    n, b = len(labels), args.batch_size

    def epoch():
        order = torch.randperm(n, device=device)
        for i in range(0, n - b + 1, b):
            idx = order[i:i + b]
            x = images[idx]
            flip = torch.rand(b, 1, 1, 1, device=device) < 0.5
            x = torch.where(flip, x.flip(3), x)
            x = normalize(x, pre.mean, pre.std).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        return (n // b) * b

    epoch()  # warm-up: cuDNN picks its algorithms
    return common.timed(epoch)


def forward_only(run_dir, files, args):
    """Predict's ceiling: the checkpoint's model on batches already decoded and on the GPU."""
    from fashioncli.checkpoint import load_model
    from fashioncli.data.loaders import FileImages
    from fashioncli.data.preprocess import normalize

    model, meta = load_model(run_dir, torch.device("cuda"))
    model = model.to(memory_format=torch.channels_last).eval()
    pre = meta["preprocessing"]
    ds = FileImages(files, pre["image_size"])
    batches = [torch.stack([ds[j][0] for j in range(i, min(i + args.batch_size, len(ds)))]).cuda()
               for i in range(0, len(ds), args.batch_size)]

    def run():
        with torch.inference_mode():
            for x in batches:
                model(normalize(x, pre["mean"], pre["std"]).contiguous(memory_format=torch.channels_last))
        torch.cuda.synchronize()
        return len(ds)

    run()
    return common.timed(run)


@contextmanager
def gpu_utilisation(samples):
    """Sample the GPU's utilisation (%) with nvidia-smi every 200 ms while the block runs, into ``samples``."""
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                            "--id=0", "-lms", "200"], stdout=subprocess.PIPE, text=True)
    try:
        yield
    finally:
        smi.terminate()
        out, _ = smi.communicate()
        samples += [float(v) for v in out.split() if v.replace(".", "").isdigit()]


def torchrun(args, work):
    """`fashion ARGS` under torchrun with one process -> (exit code, its JSON summary or the error's tail)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
           "-m", "fashioncli", *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    out = result.stdout
    summary = json.loads(out[out.index("{"):]) if result.returncode == 0 and "{" in out else result.stderr[-400:]
    return result.returncode, summary


def main():
    p = common.parser(__doc__)
    p.set_defaults(batch_size=128, limit=3000, predict_images=2000, workers=min(8, os.cpu_count() or 1))
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA GPU here; run it on a machine with one (see gpu_check.sh)")
    from fashioncli.predict import predict
    from fashioncli.train import Trainer

    start = time.perf_counter()
    print(common.machine(f", GPU {torch.cuda.get_device_name(0)}"), flush=True)
    with common.workdir(args.workdir) as work:
        src, subset, prepared = common.prepared_subset(args, work)
        trainer = Trainer(common.bench_recipe(args, prepared, work), work / "runs" / "hand-tuned", progress=False)
        ceiling_train = hand_tuned_train(trainer, args)
        del trainer
        busy = []
        with gpu_utilisation(busy):
            ours, run_dir = common.fashion_train(args, prepared, work)
        loader = loader_only(args, prepared, work)

        files = common.predict_files(src, args.predict_images)
        common.warm_page_cache(files)
        ceiling_predict = forward_only(run_dir, files, args)
        predict(run_dir, files[:args.batch_size], work / "warm.csv", batch_size=args.batch_size)
        pred = predict(run_dir, files, work / "preds.csv", batch_size=args.batch_size)["images_per_second"]

        recipe = os.path.join(run_dir, "recipe.yaml")
        ddp_train = torchrun(["train", recipe, "-q", "--devices", "1", "--set", "train.epochs=1",
                              "--set", "output.name=ddp-1gpu"], work)
        listed = work / "files.txt"
        listed.write_text("\n".join(files) + "\n")
        ddp_predict = torchrun(["predict", run_dir, listed, "-o", work / "ddp.csv", "--devices", "1",
                                "--batch-size", args.batch_size], work)

    print()
    print(common.command())
    print(f"model {args.backbone} @ {args.image_size}px, batch {args.batch_size}, loader workers {args.workers}, "
          f"{len(files)} predict images, data {args.data}, {time.perf_counter() - start:.0f} s in all\n")
    print(common.table("Training img/s: `fashion train` vs hand-tuned AMP bf16 + channels_last loop, data on the "
                       "GPU (target >= 0.9x)", ["fashion train", "hand-tuned", "ratio"],
                       [(ours, ceiling_train, ours / ceiling_train)]))
    print(common.table("Loader img/s, no model, vs `fashion train`", ["loader only", "fashion train", "ratio"],
                       [(loader, ours, loader / ours)]))
    mean = sum(busy) / len(busy) if busy else float("nan")
    print(common.table("GPU utilisation during `fashion train` (nvidia-smi, every 200 ms)",
                       ["samples", "mean %", "max %"], [(len(busy), mean, max(busy, default=float("nan")))]))
    print(common.table("Predict img/s: `fashion predict` (files: decode, resize, CSV) vs forward-only on the GPU",
                       ["fashion predict", "forward-only", "ratio"], [(pred, ceiling_predict, pred / ceiling_predict)]))
    rows = [("fashion train --devices 1", ddp_train[0], _rate(ddp_train[1], "train")),
            ("fashion predict --devices 1", ddp_predict[0], _rate(ddp_predict[1], "predict"))]
    print(common.table("DDP: one process under torchrun", ["command", "exit code", "img/s or error"], rows))
    sys.exit(1 if ddp_train[0] or ddp_predict[0] else 0)


def _rate(summary, verb):
    if not isinstance(summary, dict):
        return " ".join(str(summary).split())[-200:]
    value = summary["last"]["train_img_per_s"] if verb == "train" else summary["images_per_second"]
    return f"{value:.1f}"


if __name__ == "__main__":
    main()
