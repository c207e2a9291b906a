"""Every package folder is listed in setup.py, so a plain (non-editable) install ships it."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_installed():
    listed = set(re.findall(r'"((?:fashioncli|fashion_plugins|fashion_recipes)[\w.]*)"', (ROOT / "setup.py").read_text()))
    found = {".".join(init.parent.relative_to(ROOT).parts).replace("plugins", "fashion_plugins", 1)
             .replace("recipes", "fashion_recipes", 1)
             for top in ("fashioncli", "plugins", "recipes") for init in (ROOT / top).rglob("__init__.py")}
    assert found - listed == set()
