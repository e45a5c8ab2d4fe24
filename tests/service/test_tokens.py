"""`python -m service.tokens`: a token printed once, only its hash on disk, list and revoke, errors in one line."""
import json
import stat
import subprocess
import sys

import pytest

from service import tokens
from service_helpers import ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.tokens", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_add_prints_the_token_once_and_the_file_keeps_only_its_hash(tmp_path):
    path = tmp_path / "tokens.json"
    r = run("add", "alice", "--scopes", "generate,read", "--rate", "50", "--file", str(path))
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith(tokens.PREFIX) and len(token) > 40
    text = path.read_text()
    assert token not in text
    [item] = json.loads(text)["tokens"]
    assert item == {"name": "alice", "sha256": tokens.digest(token).hex(), "scopes": ["generate", "read"], "rate": 50.0}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    listed = run("list", "--file", str(path))
    assert listed.stdout == "alice scopes=generate,read rate=50\n" and token not in listed.stdout


def test_two_adds_make_different_tokens_and_revoke_removes_one(tmp_path):
    path = str(tmp_path / "tokens.json")
    a = run("add", "a", "--scopes", "score", "--file", path).stdout.strip()
    b = run("add", "b", "--scopes", "infer", "--file", path).stdout.strip()
    assert a != b
    assert run("revoke", "a", "--file", path).returncode == 0
    [left] = tokens.load(tmp_path / "tokens.json")
    assert left.name == "b" and left.digest == tokens.digest(b)
    assert not list(tmp_path.glob(".tokens.json.*"))  # no temporary file left behind


@pytest.mark.parametrize("args, words", [
    (["add", "a", "--scopes", "generate,admin"], "admin"),
    (["add", "a b", "--scopes", "generate"], "token name"),
    (["add", "a", "--scopes", "generate", "--rate", "0"], "--rate"),
    (["revoke", "nobody"], "no token named"),
])
def test_a_wrong_command_names_the_problem_in_one_line_and_exits_2(tmp_path, args, words):
    path = tmp_path / "tokens.json"
    assert run("add", "x", "--scopes", "read", "--file", str(path)).returncode == 0
    before = path.read_bytes()
    r = run(*args, "--file", str(path))
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before


def test_adding_a_name_twice_is_refused(tmp_path):
    path = str(tmp_path / "t.json")
    run("add", "a", "--scopes", "read", "--file", path)
    r = run("add", "a", "--scopes", "read", "--file", path)
    assert r.returncode == 2 and "exists already" in r.stderr


@pytest.mark.parametrize("text, words", [
    ("not json", "not a token file"),
    ('{"tokens": [{"name": "a", "sha256": "xyz", "scopes": []}]}', "sha256"),
    ('{"tokens": [{"name": "a", "sha256": "' + "0" * 64 + '", "scopes": ["root"]}]}', "unknown scopes"),
    ('{"tokens": [{"name": "a", "sha256": "' + "0" * 64 + '", "scopes": [], "rate": -1}]}', "rate"),
])
def test_a_bad_token_file_is_refused_naming_the_problem(tmp_path, text, words):
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(tokens.TokenFileError, match=words):
        tokens.load(path)
