"""publish_run on real run directories written by training.train.run (tiny model, a few hundred steps)."""
import json
import random
import shutil

import pytest
import torch

from artifact import ArtifactError
from artifact.loader import load_current
from artifact.manifest import Manifest
from artifact.registry import current_version, list_versions
from training.data import load_corpus, make_splits
from training.model import ModelConfig, NameMLP
from training.publish import main, publish_run
from training.train import TrainConfig, evaluate, run


def write_corpus(path, n=300, seed=0):
    syllables = ["ka", "li", "mo", "ra", "na", "el", "an", "jo", "su", "ti", "ve", "ro", "bi"]
    rng = random.Random(seed)
    names = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n)})
    path.write_text("\n".join(names) + "\n")
    return path


def train_run(out, corpus_file, steps):
    corpus = load_corpus(corpus_file)
    splits = make_splits(corpus, block_size=3)
    data_info = {"source": corpus.source, "path": corpus.path, "year": corpus.year, "sha256": corpus.sha256,
                 "seed": 42, "sizes": splits.sizes()}
    model = ModelConfig(vocab_size=splits.vocab.size, n_embd=4, n_hidden=16, bn_momentum=0.1)
    train = TrainConfig(steps=steps, lr=0.1, eval_interval=steps, checkpoint_interval=steps, diag_interval=steps,
                        update_interval=50)
    run(out, model, train, splits, data_info, progress=False, log=lambda *a: None)
    # The CLI draws the real plots; a stand-in is enough to show publish copies them into the report.
    (out / "plots" / "member-0").mkdir(parents=True, exist_ok=True)
    (out / "plots" / "member-0" / "stand-in.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return out


def untrained_copy(run_dir, out, corpus_file):
    """The run with its model reset to init (and metrics to match): a much worse model, without paying
    for another run's plots."""
    shutil.copytree(run_dir, out)
    saved = torch.load(out / "model.pt", weights_only=True)
    torch.manual_seed(1)
    model = NameMLP(ModelConfig(**saved["config"])).eval()
    torch.save({"config": saved["config"], "state_dict": model.state_dict()}, out / "model.pt")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["val_loss"] = evaluate(model, *make_splits(load_corpus(corpus_file), 3).val)
    (out / "metrics.json").write_text(json.dumps(metrics))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    corpus = write_corpus(d / "names.txt")
    good = train_run(d / "good", corpus, 300)
    return {"good": good, "worse": untrained_copy(good, d / "worse", corpus), "dir": d}


def test_publish_run_publishes_a_self_testing_version_with_its_report(runs, tmp_path):
    root = tmp_path / "models"
    version = publish_run(runs["good"], root, "names")
    served = load_current(root, "names")
    assert served.version == version
    d = served.path
    assert (d / "report" / "diagnostics.json").is_file() and (d / "report" / "metrics.json").is_file()
    assert list((d / "report" / "plots" / "member-0").glob("*.png"))
    m: Manifest = served.manifest
    metrics = json.loads((runs["good"] / "metrics.json").read_text())
    assert m.metrics["val"] == metrics["val_loss"]
    assert m.metrics["members"][0]["statistics"] == metrics["members"][0]["statistics"]
    assert m.metrics["verification"]["fold_max_abs_diff"] <= 1e-5
    assert m.metrics["verification"]["onnx_max_abs_diff"] <= 1e-4
    assert len(m.probe) == 8 and m.corpus["seed"] == 42
    corpus = load_corpus(runs["dir"] / "names.txt")
    assert served.corpus_names == frozenset(corpus.names) and m.corpus["sha256"] == corpus.sha256
    assert m.files["names.txt"] == corpus.sha256  # names.txt is the corpus, byte for byte
    assert m.health.keys() == {"ok", "warnings"}


def test_quality_gate_refuses_a_worse_run_unless_forced(runs, tmp_path):
    root = tmp_path / "models"
    good = publish_run(runs["good"], root, "names")
    with pytest.raises(ArtifactError, match="quality gate: val loss .* is worse than current version"):
        publish_run(runs["worse"], root, "names")
    assert current_version(root, "names") == good and list_versions(root, "names") == [good]
    forced = publish_run(runs["worse"], root, "names", force=True)
    assert current_version(root, "names") == forced


def test_publish_refuses_metrics_that_do_not_belong_to_the_model(runs, tmp_path):
    run_dir = shutil.copytree(runs["good"], tmp_path / "run")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["val_loss"] -= 0.1
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ArtifactError, match="do not belong together"):
        publish_run(run_dir, tmp_path / "models", "names")
    assert not (tmp_path / "models" / "names" / "CURRENT").exists()


def test_publish_refuses_a_corpus_changed_since_training(runs, tmp_path):
    run_dir = shutil.copytree(runs["good"], tmp_path / "run")
    changed = tmp_path / "names.txt"
    changed.write_text((runs["dir"] / "names.txt").read_text() + "zed\n")
    config = json.loads((run_dir / "config.json").read_text())
    config["data"]["path"] = config["data"]["source"] = str(changed)
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="has changed since training"):
        publish_run(run_dir, tmp_path / "models", "names")


def test_cli_prints_the_version(runs, tmp_path, capsys):
    code = main([str(runs["good"]), "--registry", str(tmp_path / "models"), "--name", "names"])
    assert code == 0
    assert capsys.readouterr().out.strip() == current_version(tmp_path / "models", "names")


def test_cli_exits_2_with_one_line_error_for_a_missing_run_dir(tmp_path, capsys):
    code = main([str(tmp_path / "nope"), "--registry", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "config.json: not found" in err
