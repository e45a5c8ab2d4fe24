"""docs/benchmarks.md's sections: a script rewrites its own and no other, and says where and how."""
from bench import report


def test_a_section_is_replaced_between_its_markers_and_the_others_are_kept(tmp_path):
    doc = tmp_path / "benchmarks.md"
    report.write_section("one", "## One\n\nfirst run", doc)
    report.write_section("two", "## Two\n\nkept as it is", doc)
    report.write_section("one", "## One\n\nsecond run", doc)
    text = doc.read_text()
    assert text.startswith(report.HEAD)
    assert "second run" in text and "first run" not in text and "kept as it is" in text
    assert text.count("<!-- bench/one.py:begin -->") == 1 and text.count("<!-- bench/one.py:end -->") == 1
    assert text.index("bench/one.py:begin") < text.index("bench/two.py:begin")  # rewritten in place


def test_the_text_around_the_sections_is_kept(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nwritten by a person\n\n<!-- bench/one.py:begin -->\nold\n"
                   "<!-- bench/one.py:end -->\n\nafter it\n")
    report.write_section("one", "new", doc)
    assert doc.read_text() == ("# Benchmarks\n\nwritten by a person\n\n<!-- bench/one.py:begin -->\nnew\n"
                               "<!-- bench/one.py:end -->\n\nafter it\n")


def test_the_machine_line_names_the_date_cpu_cores_and_command():
    line = report.machine(["--rounds", "3"])
    assert "UTC on " in line and " cores " in line and "--rounds 3`" in line
    assert report.cpu_model() in line


def test_every_section_of_the_docs_has_its_script():
    text = report.DOC.read_text()
    names = [chunk.split(".py:begin", 1)[0] for chunk in text.split("<!-- bench/")[1:] if ".py:begin" in chunk]
    assert {"serve_speed", "oip_speed", "auth_cost", "constraints_speed", "graph_cost", "lecture_table",
            "quality", "train_speed"} <= set(names)
    for name in names:
        assert (report.DOC.parents[1] / "bench" / f"{name}.py").is_file(), name
        begin, end = report.markers(name)
        assert text.count(begin) == 1 and text.count(end) == 1, name
