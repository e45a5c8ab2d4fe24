"""The counter-based random streams and the draw rule."""
import math

import numpy as np

from service.core import sampler


def test_uniforms_match_scalar_uniform():
    keys = sampler.stream_keys(12345, np.arange(50, dtype=np.uint64))
    grid = sampler.uniforms(keys, 7)
    for i in range(50):
        key = sampler.stream_key(12345, i)
        assert int(keys[i]) == key
        for step in range(7):
            assert grid[step, i] == sampler.uniform(key, step)


def test_uniforms_are_pinned():
    """Changing the hash changes every seed's names: these values are part of the API."""
    key = sampler.stream_key(1, 0)
    assert key == 8841707400507832957
    assert [round(sampler.uniform(key, s), 12) for s in range(3)] == [0.255885203132, 0.088323857011,
                                                                       0.290495446146]


def test_uniforms_lie_in_unit_interval_and_look_uniform():
    keys = sampler.stream_keys(2 ** 63 - 1, np.arange(20000, dtype=np.uint64))
    u = sampler.uniforms(keys, 5)
    assert u.min() >= 0.0
    assert u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert counts.min() > 0.95 * u.size / 10


def test_streams_differ_between_seeds_and_indices():
    a = sampler.uniforms(sampler.stream_keys(0, np.arange(100, dtype=np.uint64)), 3)
    b = sampler.uniforms(sampler.stream_keys(1, np.arange(100, dtype=np.uint64)), 3)
    assert len(np.unique(a[0])) == 100
    assert not np.any(a == b)


def test_choose_is_inverse_cdf_and_matches_choose_one():
    logp = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.0001, 0.8999]]))
    cdf = sampler.cdf_rows(logp, 1.0, None)
    for u, expected in [(0.0, [0, 0]), (0.49, [0, 2]), (0.5, [1, 2]), (0.74, [1, 2]), (0.76, [2, 2]),
                        (0.9999999, [2, 2])]:
        got = sampler.choose(cdf, np.array([u, u]))
        assert got.tolist() == expected
        assert [sampler.choose_one(row, u) for row in cdf] == expected


def test_cdf_rows_top_k_keeps_the_k_most_likely():
    logp = np.log(np.array([[0.1, 0.4, 0.2, 0.3]]))
    cdf = sampler.cdf_rows(logp, 1.0, 2)
    mass = np.diff(np.concatenate([[0.0], cdf[0]]))
    assert mass[0] == 0.0 and mass[2] == 0.0
    assert math.isclose(mass[1] / cdf[0, -1], 0.4 / 0.7)


def test_cdf_rows_temperature_sharpens_and_flattens():
    logp = np.log(np.array([[0.2, 0.8]]))
    for t, p0 in [(0.5, 0.04 / 0.68), (2.0, math.sqrt(0.2) / (math.sqrt(0.2) + math.sqrt(0.8)))]:
        cdf = sampler.cdf_rows(logp, t, None)[0]
        assert math.isclose(cdf[0] / cdf[-1], p0, rel_tol=1e-12)


def test_cdf_rows_tiny_temperature_is_greedy_not_nan():
    logp = np.log(np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]))
    cdf = sampler.cdf_rows(logp, 5e-324, None)
    assert np.isfinite(cdf).all()
    u = np.array([0.999, 0.999])
    assert sampler.choose(cdf, u).tolist() == [1, 0]


def test_draw_one_draws_what_draw_draws_for_each_row():
    """The scalar lane and the lone walk (draw_one over a flat table) and the vectorised lane (draw)
    pick the same character for every row, parameters and uniform, plain or not."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 27)) * 3
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))  # (6, 27)
    cdf = sampler.cdf_rows(logp, 1.0, None)  # (6, 27) the tables' temperature-1 CDFs
    flat_logp, flat_cdf = memoryview(logp.reshape(-1)), memoryview(cdf.reshape(-1))
    rows = np.array([5, 0, 3, 3, 1, 2])
    for temperature, top_k in [(1.0, None), (0.7, None), (1.0, 3), (1.6, 5), (5e-324, None)]:
        plain = temperature == 1.0 and top_k is None
        for u in rng.random((20, len(rows))):
            drawn = sampler.draw(logp, cdf, rows, u, np.full(len(rows), temperature),
                                 np.full(len(rows), top_k or 0), plain)
            alone = [sampler.draw_one(flat_logp, flat_cdf, r * 27, 27, ui, temperature, top_k)
                     for r, ui in zip(rows.tolist(), u.tolist())]
            assert drawn.tolist() == alone
