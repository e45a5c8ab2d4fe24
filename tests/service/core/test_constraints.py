"""Constraints keep exactly the model's own names that pass them, in stream order: the kept names are
the unconstrained names of the same seed, filtered; count=k keeps the first k of count=n; the budget
ends the search and says why."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core import offline
from service.core.constraints import Constraints, shaped
from service.core.engine import Engine

PLAIN = 3000  # unconstrained streams to filter by hand: more than any request below judges


@pytest.fixture(scope="module")
def engine(loaded_model):
    return Engine(loaded_model)


@pytest.fixture(scope="module")
def plain(engine):
    """Stream i's name for seeds 7 and 8 (no constraints, so one name per stream)."""
    return {seed: offline.generate(engine, count=PLAIN, seed=seed, max_length=12) for seed in (7, 8)}


def kept_by_hand(gen, c: Constraints, corpus, count):
    """(names, their logprobs, streams judged) of the first `count` plain names that pass."""
    kept, logprobs, seen, judged = [], [], set(), 0
    for name, logprob in zip(gen.names, gen.logprobs):
        if len(kept) == count:
            break
        judged += 1
        ok = (not (c.novel_only and name in corpus) and len(name) >= c.min_length and name.endswith(c.suffix)
              and c.contains in name and name not in c.exclude and not (c.unique and name in seen))
        if ok:
            kept.append(name)
            logprobs.append(logprob)
            seen.add(name)
    return kept, logprobs, judged


CASES = [
    Constraints(min_length=7),
    Constraints(suffix="a"),
    Constraints(suffix="e", contains="a"),
    Constraints(contains="r"),
    Constraints(unique=True),
    Constraints(exclude=frozenset({"ava", "mia", "emma", "ella", "anna"})),
    Constraints(novel_only=True, unique=True, min_length=4),
]


@pytest.mark.parametrize("c", CASES, ids=[repr(c) for c in CASES])
def test_kept_names_are_the_plain_names_that_pass_in_stream_order(engine, plain, c):
    for seed, gen in plain.items():
        got = offline.generate(engine, count=40, seed=seed, max_length=12, constraints=c, seconds=None)
        names, logprobs, judged = kept_by_hand(gen, c, engine.corpus, 40)
        assert len(names) == 40  # the hand filter saw enough streams to judge the request fully
        assert (got.names, got.logprobs, got.attempts) == (names, logprobs, judged)
        assert not got.exhausted
        assert sum(got.refused.values()) >= judged - 40


def test_unique_answer_has_no_name_twice(engine):
    plain = offline.generate(engine, count=200, seed=3, temperature=0.5)
    assert len(set(plain.names)) < 200  # the model does repeat itself at this temperature
    unique = offline.generate(engine, count=200, seed=3, temperature=0.5, constraints=Constraints(unique=True))
    assert len(set(unique.names)) == len(unique.names) == 200


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(1, 25), extra=st.integers(0, 25), seed=st.integers(0, 2 ** 63 - 1),
       c=st.builds(Constraints, novel_only=st.booleans(), min_length=st.sampled_from([0, 4, 6]),
                   suffix=st.sampled_from(["", "a", "n", "ie"]), contains=st.sampled_from(["", "e", "ar"]),
                   exclude=st.sampled_from([frozenset(), frozenset({"emma", "liam"})]), unique=st.booleans()),
       temperature=st.sampled_from([1.0, 0.7, 1.5]), prefix=st.sampled_from(["", "a", "ma"]))
def test_first_k_of_n_equal_count_k_with_constraints(engine, k, extra, seed, c, temperature, prefix):
    params = dict(seed=seed, temperature=temperature, prefix=prefix, max_length=12, constraints=c, seconds=None)
    n = offline.generate(engine, count=k + extra, **params)
    first = offline.generate(engine, count=k, **params)
    assert first.names == n.names[:k]
    assert first.logprobs == n.logprobs[:k]
    assert first.cut == n.cut[:k]


def test_exhausted_answer_counts_attempts_and_names_the_constraint(engine):
    """No name of at most 6 characters ends in 'qq' and has at least 5 of them."""
    c = Constraints(suffix="qq", min_length=5)
    gen = offline.generate(engine, count=3, seed=1, max_length=6, constraints=c, seconds=None)
    assert gen.names == [] and gen.exhausted
    assert gen.attempts == gen.per_name == 2000
    assert gen.refused["suffix"] == gen.attempts
    assert gen.refused_most == "suffix"
    assert gen.note() == ("found 0 of 3 names: 2000 attempts in a row were refused (2000 attempts in all); "
                          "suffix refused 2000 of them")


def test_budget_counts_attempts_per_name_so_first_k_holds_when_exhausted(engine, plain):
    """A search that gives up after 8 refusals in a row ends at the same name whatever the count."""
    expected, refused_in_a_row = [], 0  # by hand, over the plain streams
    for name in plain[7].names:
        if name.endswith("e") and "a" in name:
            expected.append(name)
            refused_in_a_row = 0
        elif (refused_in_a_row := refused_in_a_row + 1) == 8:
            break
    assert 0 < len(expected) < 40  # the budget ends this search early
    for count in (1, len(expected), len(expected) + 1, 40):
        gen = offline.generate(engine, count=count, seed=7, max_length=12, constraints=Constraints(
            suffix="e", contains="a"), per_name=8, seconds=None)
        assert gen.names == expected[:count]
        assert gen.exhausted == (count > len(expected))


def test_time_budget_ends_the_search_and_says_so(engine):
    gen = offline.generate(engine, count=3, seed=1, constraints=Constraints(suffix="qq"), seconds=0.0)
    assert gen.exhausted and gen.timed_out
    assert 0 < gen.attempts < gen.per_name  # one round was judged, then the clock stopped it
    assert gen.note().startswith(f"found 0 of 3 names: the time budget (0 s) ran out after {gen.attempts} attempts")


def test_title_case_shapes_the_output_only(engine):
    lower = offline.generate(engine, count=20, seed=5, constraints=Constraints(unique=True))
    title = offline.generate(engine, count=20, seed=5, constraints=Constraints(unique=True), case="title")
    assert title.names == [n[:1].upper() + n[1:] for n in lower.names]
    assert all(n[0].isupper() for n in title.names if n)
    assert title.logprobs == lower.logprobs and title.novel == lower.novel
    assert shaped("emma", "title") == "Emma" and shaped("emma", "lower") == "emma"
