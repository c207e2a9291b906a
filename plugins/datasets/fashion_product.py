"""Fashion Product Images (Kaggle's `styles.csv` + `images/`, or the small parquet whose `description`
reads "master - sub - article - colour - usage") as a multi-task dataset, one head per attribute."""
from pathlib import Path
from typing import Annotated

from fashioncli.api import DataError, hookimpl, read_table

from .table import table_columns


@hookimpl
def register_datasets(register):
    register("fashion-product", fashion_product, detect=_detect)


# Head name -> styles.csv column; sub-categories belong to a master category, article types to a
# sub-category: predict can enforce that.
STYLES_COLUMNS = {
    "gender": "gender", "master": "masterCategory", "sub": "subCategory", "article": "articleType",
    "colour": "baseColour", "season": "season", "usage": "usage",
}
PARQUET_PARTS = ["master", "sub", "article", "colour", "usage"]
HIERARCHY = {"sub": "master", "article": "sub"}


def fashion_product(
    source,
    heads: Annotated[object, "the attributes to keep as heads, e.g. [master, sub, article, colour] (default: "
                     "all the table has)"] = None,
    group_col: Annotated[str, "a column whose rows of one value are drawn into one split (default: none)"] = None,
):
    """Fashion Product Images: styles.csv or products.parquet + images/, one head per attribute."""
    root = Path(source)
    if (root / "products.parquet").is_file():
        path = root / "products.parquet"
        columns = read_table(path)
        derive = {"description": {"sep": " - ", "into": PARQUET_PARTS}}
        available, image_col = PARQUET_PARTS, "image_url"
    elif (root / "styles.csv").is_file():
        path = root / "styles.csv"
        columns = read_table(path)
        if "id" not in columns:
            raise DataError(f"'{path}' has no 'id' column (columns: {', '.join(columns)})")
        columns["image"] = [f"images/{i}.jpg" for i in columns["id"]]
        for head, column in STYLES_COLUMNS.items():
            if column in columns:
                columns[head] = columns[column]
        derive, available, image_col = None, [h for h in STYLES_COLUMNS if h in columns], "image"
    else:
        raise DataError(f"'{root}' holds neither products.parquet nor styles.csv (Fashion Product Images)")
    wanted = heads or available
    if isinstance(wanted, str):
        wanted = [h.strip() for h in wanted.split(",") if h.strip()]
    if isinstance(wanted, (list, tuple)):
        # A parent kept beside its child makes the hierarchy usable; otherwise it is left out.
        wanted = {h: {"parent": HIERARCHY[h]} if HIERARCHY.get(h) in wanted else None for h in wanted}
    return table_columns(columns, path, image_col=image_col, root=root, heads=wanted, derive=derive, group_col=group_col)


def _detect(source):
    root = Path(source)
    has_table = (root / "products.parquet").is_file() or (root / "styles.csv").is_file()
    return 60 if has_table and (root / "images").is_dir() else 0
