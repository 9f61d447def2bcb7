"""notes: the multi-tenant notes service of examples/notes, in Python.

The same small HTTP service over the table public.notes (the one `make dev` creates under the
sample TenantTable), with FastAPI, psycopg 3 and PyJWT instead of the Go SDK: every request's
access token is verified against the keys that authd's OpenID discovery document names, the
token's scope guards each route, and every query runs in a transaction that first hands the
token's signed request context (the tctx claim) to PostgreSQL, so that row-level security decides
which notes a request sees. The handlers never filter by organization themselves.

    GET    /notes        the organization's notes (permission data:read)
    POST   /notes        {"body": "..."} adds a note (data:write)
    DELETE /notes/{id}   deletes a note (data:delete); 404 for notes the caller cannot see

Configuration (environment):

    NOTES_DATABASE_URL  libpq URL of a login that is a member of tenancy_app (required)
    TENANCY_ISSUER      authd's issuer, where its discovery document is (default http://localhost:8090)
    TENANCY_AUDIENCE    the tokens' audience (default tenancy)
    NOTES_LISTEN        address to listen on (default 127.0.0.1:8070)

Run it with Debian's python3 and packages (hack/python.sh installs them and prints its path):
`"$(hack/python.sh)" examples/notes-python/notes.py`. README.md beside it runs it against
`make dev`; docs/rls-guide.md explains it.
"""

import json
import logging
import os
import re
import sys
import threading
import time
import urllib.request
from contextlib import asynccontextmanager
from dataclasses import dataclass

import jwt
import psycopg
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("notes")

# What authd's access tokens are (pkg/tenancy's Verifier checks the same).
TOKEN_TYPE = "at+jwt"  # the JOSE typ of access tokens (RFC 9068)
MAX_TOKEN_SIZE = 8 << 10  # longer tokens are refused before parsing
LEEWAY = 30  # seconds of clock skew allowed on exp, nbf and iat
# A request may narrow an organization-wide token to one of its projects.
PROJECT_HEADER = "X-Tenancy-Project"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_BODY = 64 << 10


class APIError(Exception):
    """An answer with an OAuth-style error body: {"error": ..., "error_description": ...}."""

    def __init__(self, status, code, description, headers=None):
        super().__init__(description)
        self.status, self.code, self.description, self.headers = status, code, description, headers


def unauthorized(description):
    return APIError(401, "invalid_token", description, {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def forbidden(description):
    return APIError(403, "insufficient_scope", description)


def bad_request(description):
    return APIError(400, "invalid_request", description)


# --- Verifying access tokens -------------------------------------------------------------------


class JWKSClient(jwt.PyJWKClient):
    """PyJWKClient for authd's key set, with two changes: a timeout on the fetch, and at most one
    refetch per MIN_REFETCH seconds for a kid the cached set lacks (PyJWKClient refetches for
    every one, so tokens with made-up kids would cost a fetch each). The set is cached for 5
    minutes, so a rotated-in key is found by its first token and a withdrawn one stops verifying
    within 5 minutes."""

    MIN_REFETCH = 10.0
    TIMEOUT = 5.0

    def __init__(self, uri):
        super().__init__(uri, cache_jwk_set=True, lifespan=300)
        self._lock = threading.Lock()
        self._refetched = float("-inf")

    def fetch_data(self):
        try:
            with urllib.request.urlopen(self.uri, timeout=self.TIMEOUT) as response:
                data = json.load(response)
        except (OSError, ValueError) as e:
            self.jwk_set_cache.put(None)
            raise jwt.PyJWKClientError(f"fetching the JWKS {self.uri}: {e}") from e
        self.jwk_set_cache.put(data)
        return data

    def get_signing_key(self, kid):
        key = self.match_kid(self.get_signing_keys(), kid)
        if key is None:
            with self._lock:
                may_refetch = time.monotonic() - self._refetched >= self.MIN_REFETCH
                if may_refetch:
                    self._refetched = time.monotonic()
            if may_refetch:
                key = self.match_kid(self.get_signing_keys(refresh=True), kid)
        if key is None:
            raise jwt.InvalidTokenError(f"unknown key {kid!r}")
        return key


def fetch_json(url):
    with urllib.request.urlopen(url, timeout=JWKSClient.TIMEOUT) as response:
        return json.load(response)


def algorithm_for(key):
    """The algorithm a public key is for: the key decides, a token may not pick another one."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    return None


class Verifier:
    """Checks authd's access tokens: signature against the JWKS that the issuer's discovery
    document names (EdDSA or ES256 only, as the key says), typ at+jwt, issuer, audience, expiry,
    not-before and issued-at."""

    def __init__(self, issuer, audience):
        self.issuer, self.audience = issuer, audience
        self._lock = threading.Lock()
        self._jwks = None

    def keys(self):
        # Discovery once, on first use, so that the service starts while authd is down.
        with self._lock:
            if self._jwks is None:
                discovery = fetch_json(self.issuer + "/.well-known/openid-configuration")
                if discovery.get("issuer") != self.issuer:
                    raise ValueError(f"the discovery document is for the issuer {discovery.get('issuer')!r}, not {self.issuer!r}")
                self._jwks = JWKSClient(discovery["jwks_uri"])
            return self._jwks

    def verify(self, token):
        """Returns the claims of a valid token; raises jwt.PyJWTError (or the error of fetching the
        keys) otherwise."""
        if len(token) > MAX_TOKEN_SIZE:
            raise jwt.InvalidTokenError(f"longer than {MAX_TOKEN_SIZE} bytes")
        header = jwt.get_unverified_header(token)
        if header.get("typ") != TOKEN_TYPE:
            raise jwt.InvalidTokenError(f"typ {header.get('typ')!r} is not {TOKEN_TYPE}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise jwt.InvalidTokenError("no kid")
        key = self.keys().get_signing_key(kid).key
        algorithm = algorithm_for(key)  # "EdDSA" for an Ed25519 key, "ES256" for a P-256 one
        if algorithm is None:
            raise jwt.InvalidTokenError(f"key {kid} is neither Ed25519 nor P-256")
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=self.audience,
            issuer=self.issuer,
            leeway=LEEWAY,
            options={"require": ["exp"]},
        )


@dataclass
class Principal:
    """Who a request comes from, as its verified token says."""

    subject: str  # the user's id, or the API key's
    org: str  # the organization's id
    role: str
    scope: str  # the permissions of the role, space-separated
    tctx: str  # the signed request context for tenancy.context
    project: str  # the project the request is narrowed to, "" for the whole organization

    def has_permission(self, permission):
        return permission in self.scope.split()


def authenticate(verifier):
    """The dependency that verifies the request's bearer token: 401 without a valid one. A plain
    def, so FastAPI runs it in its thread pool: fetching the keys blocks."""

    def principal(request: Request) -> Principal:
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer "):
            raise unauthorized("a bearer token is required")
        try:
            claims = verifier.verify(authorization[len("Bearer ") :].strip())
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, OSError, ValueError, KeyError) as e:
            # authd's discovery document or keys could not be had: say so in the log.
            log.warning("verifying a token: %s", e)
            raise unauthorized("the access token is invalid or expired") from e
        except jwt.PyJWTError as e:
            raise unauthorized("the access token is invalid or expired") from e
        c = {name: claims.get(name, "") for name in ("sub", "org", "role", "scope", "tctx", "project")}
        if not all(isinstance(v, str) for v in c.values()):
            raise unauthorized("the access token is invalid or expired")
        if not c["org"] or not c["tctx"]:
            raise unauthorized("the access token is for no organization: log in to one")
        project = c["project"]
        narrowed = request.headers.get(PROJECT_HEADER, "")
        if narrowed:
            if not UUID.fullmatch(narrowed) or (project and project != narrowed):
                raise forbidden(PROJECT_HEADER + " must be a project id the token may see")
            project = narrowed
        return Principal(c["sub"], c["org"], c["role"], c["scope"], c["tctx"], project)

    return principal


# --- Querying under row-level security -------------------------------------------------------


@asynccontextmanager
async def with_tenant(pool, p):
    """A transaction with the principal's request context set as tenancy.context (and the narrowed
    project as tenancy.project), both local to the transaction, so that row-level security shows
    and accepts only the principal's rows. An exception rolls it back."""
    async with pool.connection() as conn:
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('tenancy.context', %s, true), set_config('tenancy.project', %s, true)",
                (p.tctx, p.project),
            )
            yield conn


async def audit(conn, p, action, target, details=None):
    """Writes an action to tenancy.audit_log as the principal of the transaction (inside
    with_tenant): the database records who, in which organization."""
    await conn.execute(
        """INSERT INTO tenancy.audit_log (actor, actor_user_id, actor_api_key_id, action, target, organization_id, details)
           VALUES (%s, tenancy.current_user_id(), tenancy.current_api_key_id(), %s, %s, tenancy.current_org_id(), %s)""",
        (p.subject, action, target, Jsonb(details or {})),
    )


# --- The service -------------------------------------------------------------------------------


def create_app(database_url, issuer, audience="tenancy"):
    """The notes API. Every route depends on a permission guard, which depends on the verified
    token, so a handler always has a principal."""
    verifier = Verifier(issuer.rstrip("/"), audience)
    principal = authenticate(verifier)
    # autocommit: each request's queries run in the explicit transaction of with_tenant.
    pool = AsyncConnectionPool(database_url, open=False, kwargs={"autocommit": True})

    async def open_pool():
        await pool.open(wait=True, timeout=30)

    async def close_pool():
        await pool.close()

    app = FastAPI(
        title="notes",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        on_startup=[open_pool],
        on_shutdown=[close_pool],
    )

    def require_permission(permission):
        """Lets through requests whose token's scope lists permission (403 otherwise). As fresh
        as the token: the database's policies check the live role."""

        async def guard(p: Principal = Depends(principal)) -> Principal:
            if not p.has_permission(permission):
                raise forbidden("requires the permission " + permission)
            return p

        return guard

    @app.exception_handler(APIError)
    async def api_error(_request, e):
        return error(e.status, e.code, e.description, e.headers)

    @app.exception_handler(psycopg.errors.InsufficientPrivilege)
    async def refused(_request, _e):
        # The policies refuse a write with SQLSTATE 42501 when the principal's live role is below
        # what the command needs (the token's role may be up to one token lifetime stale), or the
        # request context is not valid.
        return error(403, "insufficient_scope", "the database refused: your role there does not allow it")

    @app.exception_handler(psycopg.Error)
    async def failed(request, e):
        log.error("%s %s: %s", request.method, request.url.path, e)
        return error(500, "server_error", "the request failed; try again")

    @app.get("/notes")
    async def list_notes(p: Principal = Depends(require_permission("data:read"))):
        # No WHERE on the organization on purpose: row-level security shows the token's own.
        async with with_tenant(pool, p) as conn:
            cur = await conn.execute("SELECT id, body FROM public.notes ORDER BY id")
            rows = await cur.fetchall()
        return JSONResponse([{"id": number, "body": body} for number, body in rows])

    @app.post("/notes")
    async def create_note(request: Request, p: Principal = Depends(require_permission("data:write"))):
        text = await note_body(request)
        # The organization comes from the signed request context, not from the client.
        async with with_tenant(pool, p) as conn:
            cur = await conn.execute(
                "INSERT INTO public.notes (org_id, body) VALUES (tenancy.current_org_id(), %s) RETURNING id, body", (text,)
            )
            number, body = await cur.fetchone()
            await audit(conn, p, "note.created", f"notes/{number}")
        return JSONResponse({"id": number, "body": body}, status_code=201)

    @app.delete("/notes/{note_id}")
    async def delete_note(note_id: str, p: Principal = Depends(require_permission("data:delete"))):
        number = parse_id(note_id)
        async with with_tenant(pool, p) as conn:
            cur = await conn.execute("DELETE FROM public.notes WHERE id = %s", (number,))
            if cur.rowcount == 0:
                # Another organization's note is invisible under row-level security: "not found"
                # rather than "forbidden", so the caller learns nothing about it.
                raise APIError(404, "not_found", "no such note")
            await audit(conn, p, "note.deleted", f"notes/{number}")
        return Response(status_code=204)

    return app


async def note_body(request):
    """The text of a {"body": "..."} request of at most MAX_BODY bytes."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            break
    try:
        data = json.loads(raw) if len(raw) <= MAX_BODY else None
    except ValueError:
        data = None
    text = data.get("body") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise bad_request('body: send {"body": "<text>"} with a non-empty text')
    return text


def parse_id(s):
    if not re.fullmatch(r"[+-]?[0-9]+", s) or not -(2**63) <= int(s) < 2**63:
        raise bad_request("id: must be a note's number")
    return int(s)


def error(status, code, description, headers=None):
    return JSONResponse({"error": code, "error_description": description}, status_code=status, headers=headers)


def main():
    # Beside uvicorn's own loggers, which it configures.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    database_url = os.environ.get("NOTES_DATABASE_URL", "")
    if not database_url:
        sys.exit("NOTES_DATABASE_URL is required: a login that is a member of tenancy_app")
    issuer = (os.environ.get("TENANCY_ISSUER") or "http://localhost:8090").rstrip("/")
    listen = os.environ.get("NOTES_LISTEN") or "127.0.0.1:8070"
    host, _, port = listen.rpartition(":")
    app = create_app(database_url, issuer, os.environ.get("TENANCY_AUDIENCE") or "tenancy")
    log.info("notes listening on %s, trusting tokens of %s", listen, issuer)
    uvicorn.run(app, host=host.strip("[]") or "0.0.0.0", port=int(port))


if __name__ == "__main__":
    main()
