"""One schema for every run's outputs: metrics.json and diagnostics.json of K = 1 and K = 2 members,
on tiny real runs, and the older shapes read as the one schema."""
import json
from pathlib import Path

import pytest

from artifact.manifest import Manifest
from training.config import RecipeConfig
from training.recipe import train
from training.rundir import read_diagnostics, read_metrics

QUIET = dict(progress=False, log=lambda *a: None)
ROOT_MODELS = Path(__file__).resolve().parents[2] / "models"


def keys(obj, depth: int):
    """The nested key structure of a JSON value, `depth` dicts deep (a list: the union of its items')."""
    if isinstance(obj, list):
        merged = {}
        for item in obj:
            merged.update(keys(item, depth) or {})
        return merged or None
    if depth == 0 or not isinstance(obj, dict):
        return None
    return {k: keys(v, depth - 1) for k, v in obj.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_splits, tiny_model, tiny_train, info):
    """The same tiny recipe with one member and with two: {K: (run_dir, metrics)}."""
    out = {}
    for k in (1, 2):
        run_dir = tmp_path_factory.mktemp(f"members-{k}")
        out[k] = run_dir, train(run_dir, tiny_model, tiny_train, small_splits, info, RecipeConfig(members=k), **QUIET)
    return out


def test_metrics_json_has_one_schema_for_one_member_and_for_two(runs):
    one, two = (json.loads((runs[k][0] / "metrics.json").read_text()) for k in (1, 2))
    assert keys(one, 3) == keys(two, 3)
    assert set(one) == {"steps", "train_loss", "val_loss", "test_loss", "seconds", "steps_per_second", "teacher",
                        "members"}
    assert set(one["members"][0]) == {"seed", "train", "val", "test", "statistics", "running", "calibrated",
                                      "seconds", "initial_loss", "val_history"}
    assert [len(one["members"]), len(two["members"])] == [1, 2]
    assert [m["seed"] for m in two["members"]] == [1, 2] and one["members"][0]["seed"] == 1
    (member,) = one["members"]  # one member: the model is its member
    assert [one[f"{s}_loss"] for s in ("train", "val", "test")] == [member[s] for s in ("train", "val", "test")]
    assert runs[1][1] == one and runs[2][1] == two


def test_diagnostics_json_has_one_schema_for_one_member_and_for_two(runs):
    one, two = (json.loads((runs[k][0] / "diagnostics.json").read_text()) for k in (1, 2))
    assert keys(one, 2) == keys(two, 2)  # (deeper, the warnings raised may differ)
    assert set(one) == {"members", "health"} and set(one["health"]) == {"ok", "warnings"}
    assert [len(one["members"]), len(two["members"])] == [1, 2]
    for report in (one, two):
        marked = [(k, w["name"]) for k, r in enumerate(report["members"]) for w in r["health"]["warnings"]]
        assert [(w["member"], w["name"]) for w in report["health"]["warnings"]] == marked
        assert report["health"]["ok"] == all(r["health"]["ok"] for r in report["members"])


def test_an_older_single_run_reads_as_a_run_of_one_member(runs, tmp_path):
    run_dir, metrics = runs[1]
    (member,) = metrics["members"]
    old = {"steps": metrics["steps"], "train_loss": member["train"], "val_loss": member["val"],
           "test_loss": member["test"], "running": member["running"], "calibrated": member["calibrated"],
           "statistics": member["statistics"], "seconds": member["seconds"],
           "steps_per_second": metrics["steps_per_second"], "initial_loss": member["initial_loss"],
           "val_history": member["val_history"], "teacher": None}
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    (tmp_path / "config.json").write_text((run_dir / "config.json").read_text())
    report = json.loads((run_dir / "diagnostics.json").read_text())
    (tmp_path / "diagnostics.json").write_text(json.dumps(report["members"][0]))  # the older shape
    assert read_metrics(tmp_path) == metrics
    assert read_diagnostics(tmp_path) == report


@pytest.mark.parametrize("manifest", sorted(ROOT_MODELS.glob("*/*/manifest.json")), ids=lambda p: p.parent.name)
def test_published_manifests_of_older_shapes_read_with_a_members_list(manifest):
    raw = json.loads(manifest.read_text())
    m = Manifest.read(manifest)
    assert isinstance(m.metrics["members"], list) and len(m.metrics["members"]) == m.architecture.get("members", 1)
    assert not {"statistics", "running", "calibrated"} & set(m.metrics)
    assert all({"seed", "train", "val", "test", "statistics"} <= set(x) for x in m.metrics["members"])
    assert [m.metrics[s] for s in ("train", "val", "test")] == [raw["metrics"][s] for s in ("train", "val", "test")]
