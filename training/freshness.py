"""Is a retrain needed? The current version of a name is up to date when it was trained on the same
corpus (selection, sha256 of the names, split seed) with the same configuration: training again would
reproduce it, so a scheduled retrain on unchanged data can stop before it costs anything."""
from __future__ import annotations

import json

from artifact import ArtifactError
from artifact.layout import current_version, version_path
from artifact.manifest import MANIFEST_FILE, Manifest
from training.config import moved_recipe_keys


def current_if_same(registry: str, name: str, selection: dict, sha256: str, seed: int, recipe: dict) -> str | None:
    """The current version's name if nothing that decides the model differs from it, else None."""
    try:
        version = current_version(registry, name)
        m = Manifest.read(version_path(registry, name, version) / MANIFEST_FILE)
    except ArtifactError:  # nothing (readable) published: train
        return None
    same = (m.selection == selection and m.corpus.get("sha256") == sha256 and m.corpus.get("seed") == seed
            and _canonical(moved_recipe_keys(m.run_recipe)) == _canonical(recipe))
    return version if same else None


def _canonical(obj) -> str:
    """JSON with sorted keys and floats as floats (a TOML 0 and 0.0 are one setting)."""
    return json.dumps(obj, sort_keys=True, default=str)
