"""The reliability suite's section of docs/benchmarks.md: each case with the figures it recorded in the
run and its outcome, the cases that did not run marked so, and the rest of the file kept."""
from bench import reliability, report

FILE = "tests/reliability/test_faults.py"


def fake_run() -> reliability.Run:
    """Four cases as the suite's hooks report them: one passed with two figures, a parametrized test
    with one case passed and one failed in its call, one failed in its setup, one deselected."""
    run = reliability.Run()
    ids = [f"{FILE}::test_sigterm", "tests/reliability/test_access.py::test_swap[1]",
           "tests/reliability/test_access.py::test_swap[2]", f"{FILE}::test_broken_fixture", f"{FILE}::test_skipped_by_k"]
    run.collected(ids)
    run.figure(ids[0], "in flight at the signal, answered 200", "8, 8 of 8")
    run.figure(ids[0], "responses by class", {"2xx": 1398, "4xx": 960})
    run.figure(ids[1], "1 worker(s): requests | refused", "237 | 0")
    run.figure(ids[2], "2 worker(s): requests | refused", "12 | 3")
    for nodeid, outcome in [(ids[0], "passed"), (ids[1], "passed"), (ids[2], "failed")]:
        for when, seconds in [("setup", 0.5), ("call", 2.0), ("teardown", 0.5)]:
            run.report(nodeid, when, outcome if when == "call" else "passed", seconds)
    run.report(ids[3], "setup", "failed", 1.0)
    run.report(ids[3], "teardown", "passed", 0.0)
    return run


def rows(markdown: str) -> dict[str, list[str]]:
    """The table's rows by their case cell, each as its cells."""
    found = {}
    for line in markdown.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            found[cells[1]] = cells
    return found


def test_each_test_is_one_row_with_the_figures_it_recorded_and_its_outcome():
    text = reliability.section(fake_run(), "RELIABILITY_DOC=1 python -m pytest -q -m reliability tests/reliability")
    table = rows(text)
    assert table["`test_sigterm`"] == [
        "`test_faults.py`", "`test_sigterm`",
        "in flight at the signal, answered 200: 8, 8 of 8<br>responses by class: 2xx 1,398, 4xx 960", "passed"]
    assert table["`test_swap` (2 cases)"] == [
        "`test_access.py`", "`test_swap` (2 cases)",
        "1 worker(s): requests \\| refused: 237 \\| 0<br>2 worker(s): requests \\| refused: 12 \\| 3",
        "1 passed, 1 failed (2)"]
    assert table["`test_broken_fixture`"][2:] == ["", "failed"]
    assert table["`test_skipped_by_k`"][2:] == ["", "not run"]
    assert list(table) == ["`test_sigterm`", "`test_swap` (2 cases)", "`test_broken_fixture`", "`test_skipped_by_k`"]
    assert text.startswith(f"## {reliability.TITLE}\n")
    assert "2 passed, 2 failed, 1 not run, 10 s of test time." in text
    assert "Command: `RELIABILITY_DOC=1 python -m pytest -q -m reliability tests/reliability`" in text
    assert f"on {report.cpu_model()}" in text


def test_a_run_where_nothing_ran_is_not_a_run():
    run = reliability.Run()
    run.collected([f"{FILE}::test_sigterm"])
    assert not run.ran()
    assert fake_run().ran()


def test_the_section_replaces_its_last_run_and_keeps_the_others(tmp_path):
    doc = tmp_path / "benchmarks.md"
    report.write_section("serve_speed", "## Serving\n\nkept as it is", doc)
    reliability.write(fake_run(), "first", doc)
    reliability.write(fake_run(), "second", doc)
    text = doc.read_text()
    assert "kept as it is" in text and "Command: `second`" in text and "Command: `first`" not in text
    assert text.count("<!-- bench/reliability.py:begin -->") == 1 and text.count("<!-- bench/reliability.py:end -->") == 1


def test_the_docs_link_to_the_section_by_its_title():
    anchor = reliability.TITLE.lower().replace(",", "").replace(" ", "-")
    catalogue = (report.DOC.parent / "reliability.md").read_text(encoding="utf-8")
    assert f"benchmarks.md#{anchor}" in catalogue
    assert f"## {reliability.TITLE}" in report.DOC.read_text(encoding="utf-8")
