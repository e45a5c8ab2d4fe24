"""What a finished name must satisfy to be kept, and the budget for finding enough of them.

Names are drawn from the model's own distribution and a name that fails a constraint is dropped
whole (rejection): the kept names are exactly the model's names conditioned on the constraints. The
names are judged in stream order, so which names a request keeps depends only on its seed,
parameters and constraints, never on how many streams a round drew or what shared the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

# The attempt budget is per name: a request gives up when ATTEMPTS_PER_NAME streams in a row after its
# last kept name (or its start) were all refused. Counted per name, the search for a request's j-th
# name is the same whatever its count, so count=k keeps the first k names of count=n even when the
# budget ends it. A constraint accepting a fraction p of names fails one name's search with
# probability (1 - p) ** ATTEMPTS_PER_NAME: at p = 1%, 2e-9, so count=100 fails with about 2e-7; an
# impossible constraint is given up after ATTEMPTS_PER_NAME attempts.
ATTEMPTS_PER_NAME = 2000
SECONDS = 5.0  # the time budget of a constrained request, counted from its first round: bounds a worker's time
MAX_EXCLUDE = 500  # names an `exclude` list may hold (the longest list fits the default 64 KB body limit)
ORDER = ("novel_only", "min_length", "suffix", "contains", "exclude", "unique")  # as reported


@dataclass(frozen=True)
class Constraints:
    """Every text in the model's own case (the API folds what people type)."""

    novel_only: bool = False
    min_length: int = 0  # characters, prefix included
    suffix: str = ""
    contains: str = ""
    exclude: frozenset[str] = frozenset()
    unique: bool = False

    @property
    def active(self) -> bool:
        return bool(self.novel_only or self.min_length or self.suffix or self.contains or self.exclude
                    or self.unique)

    def refusals(self, name: str, corpus: frozenset[str], kept: set[str]) -> list[str]:
        """The constraints `name` fails (all of them, in ORDER); empty means keep it."""
        failed = []
        if self.novel_only and name in corpus:
            failed.append("novel_only")
        if len(name) < self.min_length:
            failed.append("min_length")
        if self.suffix and not name.endswith(self.suffix):
            failed.append("suffix")
        if self.contains and self.contains not in name:
            failed.append("contains")
        if name in self.exclude:
            failed.append("exclude")
        if self.unique and name in kept:
            failed.append("unique")
        return failed


def shaped(name: str, case: str) -> str:
    """A name as the answer writes it: `title` capitalises its first letter ("emma" -> "Emma")."""
    return name[:1].upper() + name[1:] if case == "title" else name
