"""The token file: API tokens stored as hashes, each with a name, scopes and an optional rate; and
`python -m service.tokens` to add (printing the token once), list and revoke them.

The file is JSON: {"tokens": [{"name", "sha256", "scopes": [...], "rate"?, "burst"?}]}. It holds no
token, only the SHA-256 of each, so reading the file (or a leaked backup of it) gives no access.
A plain fast hash is right here, unlike for passwords: a token is 32 random bytes, so there is
nothing to guess from a dictionary and a slow hash would only cost every request time."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCOPES = ("generate", "score", "infer", "read")
PREFIX = "ng_"  # makes a leaked token recognisable to secret scanners and people
NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}\Z")  # plain: it appears in access logs
HASH = re.compile(r"[0-9a-f]{64}\Z")


class TokenFileError(ValueError):
    """The file cannot be used: the message names the file and the problem."""


@dataclass(frozen=True)
class Token:
    name: str
    digest: bytes  # sha256 of the token
    scopes: frozenset[str]
    rate: float | None = None  # names per second; None: the service's NAMEGEN_RATE
    burst: int | None = None


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def parse(text: str, where: str) -> list[Token]:
    try:
        data = json.loads(text)
        items = data["tokens"]
        if not isinstance(items, list):
            raise TypeError("tokens is not a list")
    except (ValueError, KeyError, TypeError) as e:
        raise TokenFileError(f"{where}: not a token file ({e})") from None
    tokens, names = [], set()
    for i, item in enumerate(items):
        try:
            tokens.append(_token(item))
        except (KeyError, TypeError, ValueError) as e:
            raise TokenFileError(f"{where}: token {i}: {e}") from None
        if tokens[-1].name in names:
            raise TokenFileError(f"{where}: token name {tokens[-1].name!r} appears twice")
        names.add(tokens[-1].name)
    return tokens


def _token(item: dict) -> Token:
    name, sha, scopes = item["name"], item["sha256"], item["scopes"]
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"name {name!r} is not 1-64 of A-Z a-z 0-9 _ . @ -")
    if not isinstance(sha, str) or not HASH.match(sha):
        raise ValueError("sha256 is not 64 lower-case hex digits")
    unknown = set(scopes) - set(SCOPES) if isinstance(scopes, list) else {"(not a list)"}
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}; known: {', '.join(SCOPES)}")
    rate, burst = item.get("rate"), item.get("burst")
    if rate is not None and not (isinstance(rate, (int, float)) and rate > 0):
        raise ValueError("rate is not a positive number")
    if burst is not None and not (isinstance(burst, int) and burst >= 1):
        raise ValueError("burst is not a positive integer")
    return Token(name, bytes.fromhex(sha), frozenset(scopes), rate, burst)


def load(path: Path) -> list[Token]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"{path}: cannot read ({e})") from None
    return parse(text, str(path))


def save(path: Path, tokens: list[Token]) -> None:
    """Write the file whole and atomically (a reader sees the old file or the new one, never part)."""
    items = []
    for t in tokens:
        item = {"name": t.name, "sha256": t.digest.hex(), "scopes": sorted(t.scopes)}
        item.update({k: v for k, v in (("rate", t.rate), ("burst", t.burst)) if v is not None})
        items.append(item)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600: hashes stay private
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"tokens": items}, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# ---- the command ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.tokens", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="create a token and print it (once: only its hash is kept)")
    add.add_argument("name")
    add.add_argument("--scopes", required=True, help=f"comma-separated, of: {', '.join(SCOPES)}")
    add.add_argument("--rate", type=float, help="names per second for this token (default NAMEGEN_RATE)")
    add.add_argument("--burst", type=int, help="names at once for this token (default NAMEGEN_BURST)")
    sub.add_parser("list", help="names, scopes and rates (never the tokens)")
    revoke = sub.add_parser("revoke", help="remove a token by name")
    revoke.add_argument("name")
    for p in sub.choices.values():
        p.add_argument("--file", type=Path, default=os.environ.get("NAMEGEN_TOKENS_FILE"),
                       required="NAMEGEN_TOKENS_FILE" not in os.environ, help="the token file (NAMEGEN_TOKENS_FILE)")
    args = parser.parse_args(argv)
    try:
        tokens = load(args.file) if args.file.exists() or args.command != "add" else []
        return COMMANDS[args.command](args, tokens)
    except TokenFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _add(args, tokens: list[Token]) -> int:
    scopes = [s for s in args.scopes.split(",") if s]
    problem = _add_problem(args, tokens, scopes)
    if problem:
        raise TokenFileError(problem)
    token = new_token()
    save(args.file, [*tokens, Token(args.name, digest(token), frozenset(scopes), args.rate, args.burst)])
    print(token)
    print(f"(token {args.name!r} added to {args.file}; it is shown only now)", file=sys.stderr)
    return 0


def _add_problem(args, tokens: list[Token], scopes: list[str]) -> str | None:
    if not NAME.match(args.name):
        return f"token name {args.name!r} is not 1-64 of A-Z a-z 0-9 _ . @ -"
    if any(t.name == args.name for t in tokens):
        return f"token name {args.name!r} exists already (revoke it first)"
    if not scopes or set(scopes) - set(SCOPES):
        return f"--scopes: unknown {sorted(set(scopes) - set(SCOPES))}; known: {', '.join(SCOPES)}"
    if args.rate is not None and args.rate <= 0:
        return "--rate must be > 0"
    if args.burst is not None and args.burst < 1:
        return "--burst must be >= 1"
    return None


def _list(args, tokens: list[Token]) -> int:
    for t in tokens:
        limits = f" rate={t.rate:g}" if t.rate else ""
        limits += f" burst={t.burst}" if t.burst else ""
        print(f"{t.name} scopes={','.join(sorted(t.scopes))}{limits}")
    return 0


def _revoke(args, tokens: list[Token]) -> int:
    kept = [t for t in tokens if t.name != args.name]
    if len(kept) == len(tokens):
        raise TokenFileError(f"no token named {args.name!r} in {args.file}")
    save(args.file, kept)
    print(f"revoked {args.name!r}", file=sys.stderr)
    return 0


COMMANDS = {"add": _add, "list": _list, "revoke": _revoke}

if __name__ == "__main__":
    sys.exit(main())
