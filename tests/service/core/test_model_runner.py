"""The context cache: exact rows, what a full dictionary cache keeps when it starts afresh, and
what warming puts in it."""
import heapq

import numpy as np

from service.core import model_runner
from service.core.model_runner import DictCache, ModelRows
from service.core.runtime import OnnxRuntime


def rows_for(keys, vocab=4):
    logp = np.array([[k, -k, 0.5, 1.0] for k in keys], dtype=np.float64)[:, :vocab]
    return logp, np.cumsum(np.exp(logp), axis=1)


def test_a_renewed_cache_keeps_the_warm_rows_and_the_rows_found_again():
    cache = DictCache(8, 4)
    cache.insert(np.array([10, 11]), *rows_for([10, 11]))
    cache.keep = 2  # as after warm()
    cache.insert(np.array([20, 21, 22, 23, 24, 25]), *rows_for([20, 21, 22, 23, 24, 25]))
    rows, miss = cache.find(np.array([22, 25, 99]))
    assert miss.tolist() == [False, False, True]
    assert cache.insert(np.array([99]), *rows_for([99])) is None  # full
    new = cache.fresh()
    assert sorted(new.slots) == [10, 11, 22, 25]
    assert new.keep == 2
    for key in (10, 11, 22, 25):
        assert new.logp[new.slots[key]].tolist() == rows_for([key])[0][0].tolist()
    assert new.insert(np.array([99]), *rows_for([99])).tolist() == [4]


def test_insert_gives_each_key_its_own_row_whether_all_or_some_keys_are_new():
    cache = DictCache(8, 4)
    stored = cache.insert(np.array([5, 6, 7]), *rows_for([5, 6, 7]))  # all new
    assert stored.tolist() == [0, 1, 2] and stored.dtype == np.int64
    stored = cache.insert(np.array([8, 6, 9]), *rows_for([8, 6, 9]))  # 6 is already there
    assert stored.tolist() == [3, 1, 4] and cache.size == 5
    for key in (5, 6, 7, 8, 9):
        row = cache.slots[key]
        assert (cache.logp[row].tolist(), cache.cdf[row].tolist(), int(cache.keys[row])) == \
            (rows_for([key])[0][0].tolist(), rows_for([key])[1][0].tolist(), key)
    assert cache.insert(np.array([1, 2, 3, 4]), *rows_for([1, 2, 3, 4])) is None and cache.size == 5  # no room


def test_lookups_through_renewals_give_the_rows_the_model_gives(loaded_model):
    runtime = OnnxRuntime(loaded_model)
    small, none = ModelRows(runtime, cache_rows=64), ModelRows(runtime, cache_rows=0)
    rng = np.random.default_rng(0)
    for _ in range(30):  # about 40 new contexts each time: the 64-row cache renews itself often
        keys = rng.integers(0, 27 ** 3, 50)
        keys[:10] = 5  # some contexts come back
        logp, cdf, rows = small.lookup(keys)
        ref_logp, ref_cdf, ref_rows = none.lookup(keys)
        assert np.array_equal(logp[rows], ref_logp[ref_rows])
        assert np.array_equal(cdf[rows], ref_cdf[ref_rows])


def test_warm_caches_the_contexts_of_the_most_probable_prefixes(loaded_model, monkeypatch):
    """One context per round is plain best-first: the contexts of the prefixes a name most likely
    begins with, checked against a heap over the prefixes themselves (short enough that no two
    prefixes share a context, so there is nothing to sum)."""
    monkeypatch.setattr(model_runner, "WARM_CHUNK", 1)
    rows, plain = ModelRows(OnnxRuntime(loaded_model), cache_rows=4096), ModelRows(OnnxRuntime(loaded_model), 0)
    V, bs = rows.vocab_size, rows.block_size
    assert rows.warm(30) == 30 == rows.cache.size

    def context(prefix):
        return ([0] * bs + list(prefix))[-bs:]

    heap, picked = [(0.0, ())], []  # (-log P(a name begins with the prefix), prefix)
    while len(picked) < 30:
        neg, prefix = heapq.heappop(heap)
        picked.append(prefix)
        row = plain.logp_rows(np.array([context(prefix)]))[0]
        for c in range(1, V):  # every character but the end continues the name
            heapq.heappush(heap, (neg - row[c], prefix + (c,)))
    assert all(len(p) < bs for p in picked)  # the comparison's premise: each context has one prefix
    assert set(rows.cache.slots) == {int(np.array(context(p)) @ rows.powers) for p in picked}
    assert rows.cache.keep == rows.cache.size


def test_warm_fills_the_half_of_the_cache_a_renewal_keeps_with_distinct_contexts(loaded_model):
    rows = ModelRows(OnnxRuntime(loaded_model), cache_rows=2000)
    assert rows.warm(5000) == 1000 == rows.cache.size  # at most half, each context once
    warmed = set(rows.cache.slots)
    assert rows.cache.keep == len(warmed) == 1000
    assert set(rows.cache.fresh().slots) == warmed


def test_warm_fills_a_dense_cache_with_distinct_contexts(loaded_model):
    rows = ModelRows(OnnxRuntime(loaded_model), cache_rows=27 ** 3)
    assert type(rows.cache).__name__ == "DenseCache"
    assert rows.warm() == 27 ** 3 // 2 == int(rows.cache.filled.sum())
