"""Small multi-task and segmentation models for the throughput benchmarks (predict.py --task-model).

    python benchmarks/task_models.py --workdir /tmp/bench-models

Trains, for 1 epoch each (throughput, not accuracy: the same network trained longer runs at the same
speed), with the bundled recipes' settings:
  multitask     multitask_efficientnet_lite0_fashion-product-small (80 px) on --multitask-images
                products of fashion-product-small (an evenly spaced subset: linked images, a filtered table)
  segmentation  report001_unet_ce_cpu (UNet on EfficientNet-Lite0, 128 px) on imat-fashion-seg
Prints the two run directories.
"""
import sys
from pathlib import Path

import common

PRODUCTS = common.DATASETS / "fashion-product-small"
IMAT = common.DATASETS / "imat-fashion-seg"


def parse():
    p = common.parser(__doc__)
    p.add_argument("--multitask-images", type=int, default=1500)
    return p.parse_args()


def product_subset(n, dst):
    """dst/products.parquet with ``n`` evenly spaced rows of fashion-product-small and dst/images/ links."""
    import pyarrow.parquet as pq

    table = pq.read_table(PRODUCTS / "products.parquet")
    rows = table.take(list(range(0, table.num_rows, max(1, table.num_rows // n)))[:n])
    (dst / "images").mkdir(parents=True)
    for url in rows.column("image_url").to_pylist():
        name = url.replace("\\", "/").rsplit("/", 1)[-1]
        if (PRODUCTS / "images" / name).is_file():
            (dst / "images" / name).symlink_to(PRODUCTS / "images" / name)
    pq.write_table(rows, dst / "products.parquet")
    return dst


def train_one(recipe, overrides, work, name):
    from fashioncli.recipe import load_recipe
    from fashioncli.train import train

    summary = train(load_recipe(recipe, [*overrides, "train.epochs=1", f"output.dir={work}/runs",
                                         f"output.name={name}"]), spec=name, progress=False)
    return summary["run_dir"]


def main():
    args = parse()
    from fashioncli.prepare import prepare

    if not args.workdir:
        sys.exit("--workdir is required: the models are for later runs")
    with common.workdir(args.workdir) as work:
        source = product_subset(args.multitask_images, work / "products")
        prepare(str(source), str(work / "data-multitask"), importer="fashion-product", image_size=80, progress=False,
                heads=["master", "sub", "article", "colour"])
        multitask = train_one("multitask_efficientnet_lite0_fashion-product-small",
                              [f"data.root={work / 'data-multitask'}"], work, "multitask")
        prepare(str(IMAT), str(work / "data-segmentation"), image_size=128, progress=False)
        segmentation = train_one("report001_unet_ce_cpu",
                                 [f"data.root={work / 'data-segmentation'}"], work, "segmentation")
    print(f"multitask={Path(multitask)}\nsegmentation={Path(segmentation)}")


if __name__ == "__main__":
    main()
