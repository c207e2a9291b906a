"""SIGKILL a real `fashion prepare` while it caches: the folder is never taken for a prepared
dataset, and rerunning gives exactly what an uninterrupted prepare gives."""
import pytest
from helpers import fashion, finish, kill_when, make_image_folder

from fashioncli.data.dataset import PreparedDataset
from fashioncli.errors import DataError
from fashioncli.prepare import prepare


def test_killed_prepare_reruns_to_the_same_dataset(tmp_path, tally):
    src = make_image_folder(tmp_path / "src", per_class=300, size=24)
    prepare(str(src), str(tmp_path / "straight"), image_size=24, progress=False)
    out = tmp_path / "killed"
    args = ("prepare", src, out, "--image-size", "24")
    kill_when(fashion(*args), (out / "cache").is_dir, delay=0.05)
    if not (out / "dataset.json").exists():  # else it had finished: the comparison below still holds
        tally.injected()
        tally.sent_signal()
        with pytest.raises(DataError, match="not a prepared dataset"):
            PreparedDataset.open(out)
    finish(fashion(*args))

    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "straight").as_posix()
                           for p in (tmp_path / "straight").rglob("*") if p.is_file())
    changed = [f for f in files if (out / f).read_bytes() != (tmp_path / "straight" / f).read_bytes()]
    assert tally.count_lost(len(changed)) == 0, changed
