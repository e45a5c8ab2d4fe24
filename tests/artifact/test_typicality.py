"""Typicality quantiles: written at publish from the corpus names' scores, readable as percentiles
within a point of a direct count, and added later to a published version without breaking it."""
import json

import numpy as np
import pytest

from artifact import ArtifactError, typicality
from artifact.__main__ import main
from artifact.layout import current_version, version_path
from artifact.loader import load_version
from artifact.manifest import MANIFEST_FILE, Manifest
from artifact.registry import publish, verify_dir


def test_publish_writes_the_quantiles_of_the_corpus_names_scores(artifact_dir):
    model = load_version(artifact_dir)
    q = model.manifest.typicality["quantiles"]
    scores = typicality.corpus_scores(model, sorted(model.corpus_names))
    assert q == np.quantile(scores, np.linspace(0, 1, 101)).tolist()
    assert q[0] == scores.min() and q[-1] == scores.max()


def test_corpus_scores_are_each_names_logprob_over_its_characters_and_end(artifact_dir):
    """Checked against one session run per character, the end included."""
    model = load_version(artifact_dir)
    vocab, block = model.vocab, model.block_size
    for name in sorted(model.corpus_names)[:5]:
        ids, total = [vocab.index(c) for c in name] + [0], 0.0
        for i, target in enumerate(ids):
            context = ([0] * block + ids[:i])[-block:]
            logp = typicality.log_softmax(model.logits(np.array([context], dtype=np.int64)))[0]
            total += logp[target]
        assert typicality.corpus_scores(model, [name])[0] == pytest.approx(total / len(ids), abs=1e-9)


def test_percentile_is_within_a_point_of_a_direct_count(artifact_dir):
    model = load_version(artifact_dir)
    scores = typicality.corpus_scores(model, sorted(model.corpus_names))
    probe = np.linspace(scores.min() - 0.5, scores.max() + 0.5, 997)
    got = typicality.percentile(probe, model.manifest.typicality["quantiles"])
    direct = 100 * (scores[None, :] < probe[:, None]).mean(axis=1)
    assert np.abs(got - direct).max() <= 1.0
    assert got[0] == 0 and got[-1] == 100


def test_percentile_of_one_score_in_plain_python_is_numpys_float(artifact_dir):
    q = load_version(artifact_dir).manifest.typicality["quantiles"]
    rng = np.random.default_rng(0)
    probe = [*q, *rng.uniform(q[0] - 1, q[-1] + 1, 20000).tolist(), *rng.normal(np.median(q), 0.3, 20000).tolist(),
             -np.inf, np.inf, np.nextafter(q[0], -np.inf), np.nextafter(q[-1], np.inf)]
    for points in (q, [-3.0, -2.0, -2.0, -2.0, -1.5, -1.0, -1.0]):  # a corpus with tied quantiles too
        at = typicality.percents(points)
        want = typicality.percentile(probe, points).tolist()
        assert [typicality.percentile_one(x, points, at) for x in probe] == want
    assert np.isnan(typicality.percentile_one(float("nan"), q, typicality.percents(q)))


def test_cli_adds_quantiles_to_an_older_version_and_it_still_verifies(staged_models, tmp_path, capsys):
    root = tmp_path / "models"
    version = publish(staged_models[1], root, "names")
    path = version_path(root, "names", version)
    older = json.loads((path / MANIFEST_FILE).read_text())
    expected = older.pop("typicality")
    (path / MANIFEST_FILE).write_text(json.dumps(older))
    assert Manifest.read(path / MANIFEST_FILE).typicality is None
    assert main(["typicality", "--registry", str(root), "--name", "names"]) == 0
    assert f"{version}: typicality quantiles written" in capsys.readouterr().out
    assert Manifest.read(path / MANIFEST_FILE).typicality == expected
    assert verify_dir(path) == []
    assert main(["verify", "--registry", str(root), "--name", "names"]) == 0
    assert load_version(path).manifest.typicality == expected
    assert current_version(root, "names") == version
    assert not list(path.glob(".*tmp"))


def test_cli_names_an_unknown_version(staged_models, tmp_path, capsys):
    root = tmp_path / "models"
    publish(staged_models[2], root, "names")
    assert main(["typicality", "--registry", str(root), "--name", "names", "nope"]) == 2
    assert "no version 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"quantiles": [0.0] * 100}, {"quantiles": list(range(101))[::-1]},
                                 {"quantiles": [float("nan")] * 101}, [1, 2]])
def test_manifest_refuses_malformed_quantiles(artifact_dir, edit, bad):
    edit(artifact_dir, typicality=bad)
    with pytest.raises(ArtifactError, match="typicality"):
        Manifest.read(artifact_dir / MANIFEST_FILE)
