import json

import pytest

from artifact import ArtifactError
from artifact.manifest import FORMAT_VERSION, MANIFEST_FILE, Manifest


@pytest.fixture
def manifest_dict(staged_artifact):
    return json.loads((staged_artifact / MANIFEST_FILE).read_text())


def test_manifest_round_trips_through_json(manifest_dict, tmp_path):
    m = Manifest.from_dict(manifest_dict)
    assert m.format_version == FORMAT_VERSION and m.vocab_size == len(m.vocab)
    m.write(tmp_path / MANIFEST_FILE)
    assert Manifest.read(tmp_path / MANIFEST_FILE) == m
    assert m.to_dict() == manifest_dict


@pytest.mark.parametrize("field, value, message", [
    ("vocab", "abc", "vocab must start with '.'"),
    ("block_size", 0, "block_size must be an integer >= 1"),
    ("block_size", True, "block_size must be an integer >= 1"),
    ("files", {"model.onnx": "x"}, r"files\['model.onnx'\] must be a sha256"),
    ("metrics", {"val": "low"}, "metrics.val must be a number"),
    ("probe", [], "probe must be a non-empty list"),
    ("probe", [{"context": [0, 0, 99], "logprobs": []}], r"probe\[0\].context must be 3 indices"),
    ("version", "../evil", "version '../evil' is not a plain name"),
    ("files", {"../model.onnx": "0" * 64}, r"files key '../model.onnx' is not a plain relative path"),
    ("files", {"/etc/passwd": "0" * 64}, r"files key '/etc/passwd' is not a plain relative path"),
    ("files", {"model.onnx": "0" * 64}, r"files\['names.txt'\] is missing"),
    ("teacher", {"version": 3}, "teacher must be null or an object"),
])
def test_manifest_refuses_malformed_field_naming_it(manifest_dict, field, value, message):
    manifest_dict[field] = value
    with pytest.raises(ArtifactError, match=message):
        Manifest.from_dict(manifest_dict)


def test_manifest_read_names_the_file_for_invalid_json(tmp_path):
    f = tmp_path / MANIFEST_FILE
    f.write_text("{not json")
    with pytest.raises(ArtifactError, match=f"{f}: manifest is not valid JSON"):
        Manifest.read(f)


def test_manifest_hashes_every_file_of_the_version_including_the_report(staged_artifact, manifest_dict):
    on_disk = sorted(p.relative_to(staged_artifact).as_posix() for p in staged_artifact.rglob("*")
                     if p.is_file() and p.name != MANIFEST_FILE)
    assert sorted(manifest_dict["files"]) == on_disk
    assert any(f.startswith("report/") for f in on_disk)


def test_manifest_without_teacher_reads_as_none(manifest_dict):
    manifest_dict.pop("teacher", None)
    assert Manifest.from_dict(manifest_dict).teacher is None
