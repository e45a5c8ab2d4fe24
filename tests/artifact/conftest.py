"""A real, tiny artifact built once per session by the training side's own writer (fold, export,
verify), on a synthetic corpus; tests get their own copy to break."""
import json
import random
import shutil

import pytest
import torch

from artifact.manifest import MANIFEST_FILE

SYLLABLES = ["ka", "li", "mo", "ra", "na", "el", "an", "jo", "su", "ti", "ve", "ro", "bi"]


def synthetic_names(n=300, seed=0):
    rng = random.Random(seed)
    return sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(n)})


def build_staged(root, sgd_steps, seed):
    """Train a tiny model (torch seed `seed`) on the synthetic corpus and stage it with the training
    side's own writer; returns the staged directory."""
    from training.data import load_corpus, make_splits
    from training.model import ModelConfig, NameMLP
    from training.publish import write_artifact

    corpus_file = root / "names.txt"
    if not corpus_file.exists():
        corpus_file.write_text("\n".join(synthetic_names()) + "\n")
    corpus = load_corpus(corpus_file)
    splits = make_splits(corpus, block_size=3)
    torch.set_num_threads(1)  # a tiny model: more threads only contend on busy shared cores
    torch.manual_seed(seed)
    model = NameMLP(ModelConfig(vocab_size=splits.vocab.size, n_embd=4, n_hidden=16, bn_momentum=0.1))
    sgd_steps(model, *splits.train, steps=200)
    with torch.no_grad():
        val = float(model(*splits.val)[1])
    losses = {"train": val, "val": val, "test": val}
    member = {"seed": seed, **losses, "statistics": "running", "running": losses, "calibrated": None, "seconds": 1.0}
    metrics = {"steps": 200, "train_loss": val, "val_loss": val, "test_loss": val, "seconds": 1.0, "members": [member]}
    diagnostics = {"health": {"ok": True, "warnings": []}}
    out = root / f"artifact-{seed}"
    write_artifact(out, model, corpus, splits, train_config={"steps": 200}, metrics=metrics,
                   diagnostics=diagnostics)
    return out


@pytest.fixture(scope="session")
def staged_models(tmp_path_factory, sgd_steps):
    """Four staged artifacts of different models (seeds 0-3) on one corpus: the registry refuses to
    republish an identical model, so tests that publish several versions need different ones."""
    root = tmp_path_factory.mktemp("staged")
    return [build_staged(root, sgd_steps, seed) for seed in range(4)]


@pytest.fixture(scope="session")
def staged_artifact(staged_models):
    return staged_models[0]


@pytest.fixture
def artifact_dir(staged_artifact, tmp_path):
    """A private copy of the staged artifact (version not yet stamped)."""
    return shutil.copytree(staged_artifact, tmp_path / "staged")


def edit_manifest(path, **changes):
    """Rewrite manifest.json with top-level fields replaced (no validation: tests write bad ones too)."""
    f = path / MANIFEST_FILE
    d = json.loads(f.read_text())
    d.update(changes)
    f.write_text(json.dumps(d))
    return d


@pytest.fixture
def edit():
    return edit_manifest
