"""The engine against a plain one-context-at-a-time loop over the ONNX session, and its semantics."""
import math

import numpy as np
import pytest

from service.core import jobs, offline, sampler
from service.core.engine import Engine
from service.core.jobs import ScoreJob


def reference_name(model, seed, index, temperature=1.0, top_k=None, prefix="", max_length=32):
    """The documented semantics, written plainly: one session run per character, Python floats."""
    vocab, bs = model.vocab, model.block_size
    ids = [vocab.index(c) for c in prefix]
    context = ([0] * bs + ids)[-bs:]
    key = sampler.stream_key(seed, index)

    def logprobs(ctx):
        logits = model.session.run(None, {model.session.get_inputs()[0].name: np.array([ctx], dtype=np.int64)})
        row = [float(x) for x in logits[0][0]]
        top = max(row)
        lse = top + math.log(sum(math.exp(x - top) for x in row))
        return [x - lse for x in row]

    total = 0.0
    for i, c in enumerate(ids):  # the prefix's own characters count in the log-probability
        total += logprobs(([0] * bs + ids[:i])[-bs:])[c]
    out = []
    for step in range(max_length - len(ids)):
        lp = logprobs(context)
        z = [x / temperature for x in lp]
        if top_k is not None:
            kth = sorted(z, reverse=True)[top_k - 1]
            z = [x if x >= kth else -math.inf for x in z]
        top = max(z)
        weights = [math.exp(x - top) for x in z]
        threshold = sampler.uniform(key, step) * sum(weights)
        cum, choice = 0.0, len(weights) - 1
        for j, w in enumerate(weights):
            cum += w
            if cum > threshold:
                choice = j
                break
        total += lp[choice]
        if choice == 0:
            return prefix + "".join(vocab[i] for i in out), total, False
        out.append(choice)
        context = context[1:] + [choice]
    return prefix + "".join(vocab[i] for i in out), total, True


@pytest.fixture(scope="module")
def engine(loaded_model):
    return Engine(loaded_model)


CASES = [
    dict(),
    dict(temperature=0.6),
    dict(temperature=3.0, max_length=8),
    dict(top_k=3),
    dict(prefix="ma", temperature=0.8),
    dict(prefix="x", top_k=5, max_length=6),
]


@pytest.mark.parametrize("params", CASES, ids=[str(c) for c in CASES])
def test_engine_matches_reference_loop(engine, loaded_model, params):
    gen = offline.generate(engine, count=40, seed=7, **params)
    ref = [reference_name(loaded_model, 7, i, **params) for i in range(40)]
    assert gen.names == [r[0] for r in ref]
    assert gen.cut == [r[2] for r in ref]
    assert np.allclose(gen.logprobs, [r[1] for r in ref], rtol=0, atol=1e-9)


def test_engine_single_names_match_reference_loop(engine, loaded_model):
    """count=1 takes the scalar path; it must agree with the batch path and the reference."""
    for seed in range(30):
        gen = offline.generate(engine, count=1, seed=seed)
        assert gen.names == [reference_name(loaded_model, seed, 0)[0]]


def test_first_k_of_n_equal_count_k(engine):
    big = offline.generate(engine, count=200, seed=99, temperature=1.3, prefix="a")
    for k in (1, 3, 4, 5, 17, 200):
        small = offline.generate(engine, count=k, seed=99, temperature=1.3, prefix="a")
        assert small.names == big.names[:k]
        assert small.logprobs == big.logprobs[:k]


def test_results_do_not_depend_on_cache_layout(loaded_model):
    """Dense cache, dictionary cache (with resets when full) and no cache give identical names."""
    engines = [Engine(loaded_model, cache_rows=27 ** 3), Engine(loaded_model, cache_rows=500),
               Engine(loaded_model, cache_rows=0)]
    engines[0].warm()
    results = [[offline.generate(e, count=300, seed=s, temperature=1.5) for s in range(3)] for e in engines]
    for other in results[1:]:
        assert [g.names for g in other] == [g.names for g in results[0]]
        assert [g.logprobs for g in other] == [g.logprobs for g in results[0]]


def test_same_seed_same_names_other_seed_other_names(engine):
    assert offline.generate(engine, count=20, seed=5).names == offline.generate(engine, count=20, seed=5).names
    assert offline.generate(engine, count=20, seed=5).names != offline.generate(engine, count=20, seed=6).names


def test_prefix_starts_every_name(engine):
    gen = offline.generate(engine, count=50, seed=1, prefix="jo")
    assert all(n.startswith("jo") for n in gen.names)


def test_max_length_cuts_names(engine):
    gen = offline.generate(engine, count=100, seed=3, temperature=5.0, max_length=4)
    assert all(len(n) <= 4 for n in gen.names)
    assert any(gen.cut)
    assert all(len(n) == 4 for n, c in zip(gen.names, gen.cut) if c)


def test_top_k_1_is_greedy(engine):
    gen = offline.generate(engine, count=10, seed=11, top_k=1)
    assert len(set(gen.names)) == 1


def test_logprob_equals_score_of_the_name(engine):
    gen = offline.generate(engine, count=50, seed=2, temperature=0.9, top_k=10, prefix="e")
    scores = offline.score(engine, gen.names)
    for name, lp, cut, s in zip(gen.names, gen.logprobs, gen.cut, scores):
        if not cut:
            assert s.logprob == pytest.approx(lp, abs=1e-12)
        assert s.per_char[-1][0] == "."
        assert "".join(c for c, _ in s.per_char) == name + "."


def test_score_job_chunk_keys_are_each_characters_context(engine, monkeypatch):
    """Keys made chunk by chunk from the names' ids equal the '.'-padded windows' keys, also where
    a chunk boundary falls inside a name and for names shorter and longer than block_size."""
    monkeypatch.setattr(jobs, "SCORE_CHUNK", 7)
    names = ["", "a", "emma", "x" * 64, "abcdefghijklm", "zq"]
    bs = engine.block_size
    expected = np.concatenate([np.lib.stride_tricks.sliding_window_view(
        np.array([0] * bs + engine.encode(name), dtype=np.int64), bs) @ engine.rows.powers for name in names])
    job = ScoreJob(engine, names)
    keys, targets = [], []
    while not job.done:
        k, t = job.chunk()
        assert len(k) <= 7
        keys.append(k)
        targets.append(t)
        job.take(np.zeros(len(k)))
    assert np.concatenate(keys).tolist() == expected.tolist()
    assert np.concatenate(targets).tolist() == engine.encode("".join(n + "." for n in names))


def test_score_marks_corpus_names(engine, loaded_model):
    known = sorted(loaded_model.corpus_names)[0]
    scores = offline.score(engine, [known, "zzzzqx"])
    assert scores[0].in_corpus is True
    assert scores[1].in_corpus is False
    assert scores[0].logprob > scores[1].logprob
    assert scores[0].logprob == pytest.approx(sum(lp for _, lp in scores[0].per_char), abs=1e-12)


def test_novel_only_skips_corpus_names(engine, loaded_model):
    plain = offline.generate(engine, count=100, seed=4)
    novel = offline.generate(engine, count=100, seed=4, novel_only=True)
    assert any(not n for n in plain.novel)  # the model does reproduce training names
    assert len(novel.names) == 100
    assert all(novel.novel)
    assert not any(n in loaded_model.corpus_names for n in novel.names)
    assert novel.attempts > 100
    # the novel names are the novel names of the plain streams, in order
    expected = [n for n, nv in zip(plain.names, plain.novel) if nv]
    assert novel.names[:len(expected)] == expected


def test_novel_only_is_bounded_and_reports_exhaustion(engine):
    """top_k=1 makes every stream the same name; with a corpus name, nothing novel is ever found."""
    greedy = offline.generate(engine, count=1, seed=0, top_k=1).names[0]
    gen = offline.generate(engine, count=5, seed=0, top_k=1, novel_only=True, seconds=None)
    if greedy in engine.corpus:
        assert gen.names == []
        assert gen.exhausted
        assert gen.attempts == 2000  # the budget: attempts in a row without a kept name
        assert gen.refused == {"novel_only": 2000}
        assert gen.note() == "found 0 of 5 names: 2000 attempts in a row were refused (2000 attempts in all); " \
                             "novel_only refused 2000 of them"
    else:
        assert gen.names == [greedy] * 5


def test_typicality_of_a_few_names_is_the_same_as_among_many(engine):
    """A small answer is placed in plain Python, a large one in numpy: the same floats either way."""
    from service.core.engine import FEW_NAMES
    gen = offline.generate(engine, 4 * FEW_NAMES, 11)
    chars = [len(n) + (not c) for n, c in zip(gen.names, gen.cut)]
    per_char, pct = engine.typicality(gen.logprobs, chars)
    assert engine.quantiles is not None and len(per_char) > FEW_NAMES
    for lo in range(0, len(per_char), 3):
        few = engine.typicality(gen.logprobs[lo:lo + 3], chars[lo:lo + 3])
        assert few == (per_char[lo:lo + 3], pct[lo:lo + 3])
        assert all(type(x) is float for x in few[0] + few[1])
    one, many = engine.typicality([-3.0], [0]), engine.typicality([-3.0] * (FEW_NAMES + 1), [0] * (FEW_NAMES + 1))
    assert (one[0], one[1]) == (many[0][:1], many[1][:1])  # no characters counts as one
