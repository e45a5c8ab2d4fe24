"""Who is calling: bearer tokens with scopes (from the token file, see service/tokens.py), and the
client each request's work is counted against (service/api/limits.py). Plain ASGI middleware.

Every path needs one scope, found by prefix in SCOPES (first match); OPEN paths need no token (the
probes, the pages for people, the API document). Without a token: 401 with a Bearer challenge;
an unknown token: 401 error="invalid_token"; a token without the scope: 403 error="insufficient_scope".
The access log names the token (its name, never the token)."""
from __future__ import annotations

import hmac
import json
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import ip_address
from pathlib import Path

from service.api import answers
from service.api.limits import LIMIT, Limiter
from service.logs import get_logger
from service.settings import Settings
from service.tokens import Token, TokenFileError, digest, load

log = get_logger("auth")

OPEN = ""
REALM = 'Bearer realm="namegen"'
CHECK_EVERY = 1.0  # seconds between looks at the token file's stat (a request does at most one)
CREATE = "create one: python -m service.tokens add NAME --scopes generate,read --file FILE"
CLIENT = "namegen.client"  # scope key: the token's name, for the access log
KNOWN = 1024  # tokens found, kept by their text so a client's next request skips hashing (at most this many)

# (path pattern, scope): first match wins; `*` is one path segment, a pattern ending in `/` a prefix.
SCOPES: list[tuple[str, str]] = [
    ("/healthz", OPEN), ("/readyz", OPEN), ("/v2/health/", OPEN),
    ("/generate", "generate"), ("/score", "score"),
    ("/v2/models/*/infer", "infer"), ("/v2/models/*/versions/*/infer", "infer"),
    ("/v2/models/*/generate", "generate"), ("/v2/models/*/versions/*/generate", "generate"),
    ("/v2/", "read"), ("/v2", "read"),
    ("/model", "read"), ("/model/", "read"), ("/models", "read"), ("/models/", "read"), ("/metrics", "read"),
]


def _pattern(path: str) -> re.Pattern[str]:
    body = re.escape(path).replace(r"\*", "[^/]+")
    return re.compile(body + (".*" if path.endswith("/") else "") + r"\Z", re.S)


PATTERNS = [(_pattern(p), scope) for p, scope in SCOPES]


@lru_cache(maxsize=1024)  # bounded: paths are the client's to choose
def scope_for(path: str) -> str:
    """The scope a path needs; OPEN for what no pattern names (the pages, /docs, /openapi.json, 404s)."""
    for pattern, scope in PATTERNS:
        if pattern.match(path):
            return scope
    return OPEN


class TokenStore:
    """The token file's tokens by hash, reloaded when the file changes (its stat, looked at no more
    than every CHECK_EVERY seconds) or on reload(); a file that fails to load keeps the old tokens."""

    def __init__(self, path: Path):
        self.path = path
        self.stamp = self._stamp()
        self.by_digest = self._index(load(path))  # a bad file at start: TokenFileError, the server does not start
        self.known: dict[str, Token] = {}  # tokens found since the file was last read: text -> token
        self.next_check = time.monotonic() + CHECK_EVERY

    def _stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)  # follows a mounted secret's symlinks, which are swapped on update
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    @staticmethod
    def _index(tokens: list[Token]) -> dict[bytes, Token]:
        return {t.digest: t for t in tokens}

    def reload(self) -> None:
        stamp = self._stamp()
        try:
            self.by_digest, self.known = self._index(load(self.path)), {}  # a revoked token is found no more
        except TokenFileError as e:
            log.error("token file not reloaded, the previous tokens stay: %s", e)
        else:
            log.info("tokens loaded", extra={"fields": {"tokens": len(self.by_digest)}})
        self.stamp = stamp

    def find(self, token: str) -> Token | None:
        """The token's entry, or None. Called on the event loop only, as reload() is (SIGHUP): a reload
        cannot fall between a lookup and its entry being kept."""
        now = time.monotonic()
        if now >= self.next_check:
            self.next_check = now + CHECK_EVERY
            if self._stamp() != self.stamp:
                self.reload()
        # Only tokens that were found are kept by their text, and a string's hash is keyed afresh in
        # every process: a guess is looked up there as it is below, by a hash the caller cannot steer.
        found = self.known.get(token)
        if found is not None:
            return found
        d = digest(token)
        # Looked up by the token's hash: how long the lookup takes depends on the hash, which a caller
        # cannot steer towards a stored one, so timing tells nothing about how close a guess came.
        found = self.by_digest.get(d)
        if found is None or not hmac.compare_digest(found.digest, d):
            return None
        if len(self.known) < KNOWN:
            self.known[token] = found
        return found


@dataclass(frozen=True)
class Access:
    """What create_app installs: the token store (None: no tokens) and the rate limiter (None: no limit)."""

    store: TokenStore | None
    limiter: Limiter | None


def tokens_wanted(settings: Settings) -> bool:
    return settings.auth != "off" and (settings.tokens_file is not None or settings.auth == "on")


def limits_wanted(settings: Settings) -> bool:
    """A limiter when there is a rate for every client, or tokens (each may carry its own rate)."""
    return settings.rate > 0 or tokens_wanted(settings)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def startup_problem(settings: Settings) -> str | None:
    """Why the service must not start as configured (one line), or None: exposed without tokens, or a
    token file that cannot be used."""
    if settings.auth == "on" and settings.tokens_file is None:
        return f"NAMEGEN_AUTH=on needs NAMEGEN_TOKENS_FILE ({CREATE})"
    if tokens_wanted(settings):
        try:
            load(settings.tokens_file)
        except TokenFileError as e:
            return f"NAMEGEN_TOKENS_FILE: {e}"
    elif settings.auth == "auto" and not is_loopback(settings.host):
        return (f"refusing to serve {settings.host} without tokens: set NAMEGEN_TOKENS_FILE ({CREATE}), "
                "or NAMEGEN_AUTH=off to serve everyone who can reach the port")
    return None


def access_from(settings: Settings) -> Access:
    store = TokenStore(settings.tokens_file) if tokens_wanted(settings) else None
    burst = settings.burst or max(settings.max_count, settings.max_score_names)
    limiter = Limiter(settings.rate, burst, settings.rate_table) if limits_wanted(settings) else None
    return Access(store, limiter)


def describe(doc: dict) -> None:
    """State the bearer scheme in the API document (so /docs offers "Authorize") and, on each
    operation that needs a scope, the scope and its 401 and 403."""
    doc.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer", "description": "a token from `python -m service.tokens add`"}
    for path, methods in doc.get("paths", {}).items():
        needed = scope_for(path.replace("{", "").replace("}", ""))
        if not needed:
            continue
        for operation in methods.values():
            operation["security"] = [{"bearer": [needed]}]
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "no token, or an unknown one (see WWW-Authenticate)"})
            responses.setdefault("403", {"description": f"the token lacks the scope {needed}"})


def refusal(status: int, message: str, challenge: str) -> tuple[int, list, bytes]:
    body = json.dumps(answers.error(message, "authorization")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"www-authenticate", challenge.encode())]
    return status, headers, body


async def answer(send, refused: tuple[int, list, bytes]) -> None:
    status, headers, body = refused  # fresh messages each time: outer middleware adds to their headers
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


UNAUTHORIZED = refusal(401, "this path needs a token: Authorization: Bearer <token>", REALM)
INVALID = refusal(401, "the token is unknown or revoked",
                  f'{REALM}, error="invalid_token", error_description="the token is unknown or revoked"')


def bearer(headers) -> str | None:
    for k, v in headers:
        if k == b"authorization":
            scheme, _, token = v.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class AuthMiddleware:
    """Tokens and scopes (when a store is given), and the client a request's work is counted against
    (when a limiter is given): its token's name, else its address."""

    def __init__(self, app, access: Access):
        self.app = app
        self.store = access.store
        self.limiter = access.limiter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        needed = scope_for(scope["path"])
        if self.store is None or not needed:
            if self.limiter is not None and self.limiter.rate and needed:
                client = scope.get("client")
                key = "address:" + (client[0] if client else "-")
                scope[LIMIT] = (self.limiter, key, None, None)
            return await self.app(scope, receive, send)
        token = bearer(scope["headers"])
        found = self.store.find(token) if token is not None else None
        if found is None:
            return await answer(send, INVALID if token is not None else UNAUTHORIZED)
        scope[CLIENT] = found.name
        if needed not in found.scopes:
            return await answer(send, refusal(403, f"the token {found.name!r} lacks the scope {needed!r}",
                                              f'{REALM}, error="insufficient_scope", scope="{needed}"'))
        if self.limiter is not None and (found.rate or self.limiter.rate):
            scope[LIMIT] = (self.limiter, "token:" + found.name, found.rate, found.burst)
        await self.app(scope, receive, send)
