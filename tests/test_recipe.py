import pytest
import yaml

from fashioncli import recipe
from fashioncli.errors import RecipeError


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def base_and_leaf(tmp_path):
    (tmp_path / "_base").mkdir()
    write(tmp_path / "_base" / "a.yaml", {"data": {"root": "x", "batch_size": 8, "augment": {"scale": [0.5, 1.0]}},
                                          "model": {"name": "timm", "args": {"backbone": "resnet18"}},
                                          "train": {"epochs": 4}})
    write(tmp_path / "_base" / "b.yaml", {"train": {"seed": 7}})
    return write(tmp_path / "leaf.yaml", {"base": ["_base/a.yaml", "_base/b.yaml"],
                                          "data": {"batch_size": 16, "augment": {"scale": [0.8, 1.0]}}})


def test_base_inheritance_merges_dicts_and_replaces_lists(base_and_leaf):
    r = recipe.load_recipe(base_and_leaf, validate_components=False)
    assert r["data"]["root"] == "x"  # from the base
    assert r["data"]["batch_size"] == 16  # the leaf wins
    assert r["data"]["augment"]["scale"] == [0.8, 1.0]  # lists replace, they do not concatenate
    assert r["train"]["epochs"] == 4 and r["train"]["seed"] == 7
    assert r["optimizer"]["name"] == "adamw"  # defaults fill the rest


def test_overrides_are_yaml_and_applied_after_bases(base_and_leaf):
    r = recipe.load_recipe(base_and_leaf, ["train.epochs=2", "optimizer.lr=1e-4", "model.args.backbone=resnet34"],
                           validate_components=False)
    assert r["train"]["epochs"] == 2
    assert r["optimizer"]["lr"] == pytest.approx(1e-4)  # '1e-4' is a string to PyYAML: coerced
    assert r["model"]["args"]["backbone"] == "resnet34"


@pytest.mark.parametrize("override,message", [
    ("train.epochz=2", r"train.epochz: unknown key \(did you mean 'epochs'\?\)"),
    ("optimizer.lr=fast", "optimizer.lr: expected a number"),
    ("train.epochs=2.5", "train.epochs: expected a whole number"),
    ("train.epochs=0", "train.epochs: must be greater than 0"),
    ("optimizer.name=adamm", r"optimizer.name: 'adamm' is not an optimizer timm knows.*known: .*adamw, "),
    ("data.augment.scale=[1]", "data.augment.scale: expected 2 values"),
    ("model.nme=x", r"model.nme: unknown key \(did you mean 'name'\?\)"),
    ("train.epochs", "expected KEY=VALUE"),
])
def test_errors_name_the_key(base_and_leaf, override, message):
    with pytest.raises(RecipeError, match=message):
        recipe.load_recipe(base_and_leaf, [override], validate_components=False)


def test_components_are_checked_before_work(base_and_leaf):
    with pytest.raises(RecipeError, match=r"model.name: unknown model 'tim' \(did you mean 'timm'\?\); known: .*timm"):
        recipe.load_recipe(base_and_leaf, ["model.name=tim"])
    with pytest.raises(RecipeError, match=r"model.args.backbon: unknown argument \(did you mean 'backbone'\?\)"):
        recipe.load_recipe(base_and_leaf, ["model.args={backbon: resnet18}"])
    with pytest.raises(RecipeError, match="loss.args.smoothing: unknown argument"):
        recipe.load_recipe(base_and_leaf, ["loss.args.smoothing=0.1"])


def test_missing_required_key(tmp_path):
    path = write(tmp_path / "r.yaml", {"model": {"name": "timm", "args": {"backbone": "resnet18"}}})
    with pytest.raises(RecipeError, match="data.root: required key is missing"):
        recipe.load_recipe(path, validate_components=False)


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(RecipeError, match="inherits from itself"):
        recipe.load_recipe(tmp_path / "a.yaml")


def test_yaml_never_executes_code(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("data: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        recipe.load_recipe(path)


def test_unknown_recipe_lists_bundled():
    with pytest.raises(RecipeError, match=r"did you mean 'quickstart'\?.*bundled:"):
        recipe.load_recipe("quickstrat")


def test_every_bundled_recipe_resolves_and_round_trips(tmp_path):
    for name in recipe.bundled_names():
        resolved = recipe.load_recipe(name)
        saved = tmp_path / f"{name}.yaml"
        saved.write_text(recipe.dump(resolved))
        assert recipe.load_recipe(saved) == resolved, name


def test_recipe_from_url(tmp_path):
    import functools
    import http.server
    import threading

    write(tmp_path / "base.yaml", {"data": {"root": "remote"}, "model": {"name": "timm", "args": {"backbone": "resnet18"}}})
    write(tmp_path / "leaf.yaml", {"base": "base.yaml", "train": {"epochs": 3}})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        r = recipe.load_recipe(f"http://127.0.0.1:{server.server_port}/leaf.yaml")
    finally:
        server.shutdown()
    assert r["data"]["root"] == "remote" and r["train"]["epochs"] == 3
