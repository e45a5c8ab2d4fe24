"""Helpers shared by the registry and CLI tests."""
import json
import shutil

from artifact.manifest import MANIFEST_FILE


def with_val(staged, tmp_path, val, **corpus):
    """A copy of a staged artifact claiming another val loss (and optionally another corpus)."""
    out = shutil.copytree(staged, tmp_path / f"{staged.name}-{val}-{len(corpus)}")
    f = out / MANIFEST_FILE
    d = json.loads(f.read_text())
    d["metrics"]["val"] = val
    d["corpus"].update(corpus)
    f.write_text(json.dumps(d))
    return out
