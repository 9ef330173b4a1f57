"""Bearer tokens: HS256 JWTs signed with ``ANSFLOW_JWT_SECRET``.

A token's ``sub`` is the Slack user id the client acts as; ``exp`` is
required and enforced. Creating and checking tokens is pure (no I/O); the
middleware turns a request into an :class:`Actor` or a 401.

The token itself is never logged, stored or returned.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections import OrderedDict

import jwt
from aiohttp import web
from aiohttp.typedefs import Middleware

from api.errors import API_PREFIX, Handler, error_response
from api.tokens import ALGORITHM, USER_ID, TokenError
from api.tokens import create_token as create_token  # re-exported
from engine.permissions import Actor

ACTOR: web.RequestKey[Actor] = web.RequestKey("actor", Actor)
# Tokens may travel in ``?token=`` only where browsers cannot set headers.
QUERY_TOKEN_PREFIX = "/api/v1/ws/"
PUBLIC_PATHS = frozenset({"/api/v1/openapi.json"})
# Verified tokens kept in memory (a digest each), the least recently used forgotten first.
VERIFIED_TOKENS = 4096
DISABLED = "The REST API is disabled: set ANSFLOW_JWT_SECRET to enable it."


def user_of(token: str, secret: str) -> str:
    """The ``sub`` of a valid token; raises :class:`TokenError` otherwise."""
    return verified_claims(token, secret)[0]


def verified_claims(token: str, secret: str) -> tuple[str, float]:
    """The ``sub`` and ``exp`` of a valid token; raises :class:`TokenError` otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            claims = jwt.decode(
                token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
            )
    except jwt.ExpiredSignatureError:
        raise TokenError("The token has expired.") from None
    except jwt.InvalidSignatureError:
        raise TokenError("The token's signature is not valid.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"The token has no `{exc.claim}` claim.") from None
    except (jwt.PyJWTError, UnicodeError):
        raise TokenError("The token is malformed.") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not USER_ID.match(sub):
        raise TokenError("The token's `sub` is not a user id.")
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        raise TokenError("The token's `exp` is not a time.")
    return sub, float(expires)


def token_from(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise TokenError("The Authorization header must be `Bearer <token>`.")
        return value.strip()
    if request.path.startswith(QUERY_TOKEN_PREFIX):
        return request.query.get("token") or None
    return None


class VerifiedTokens:
    """Tokens whose signature was checked, kept until they expire (bounded).

    A token is checked once; until its ``exp`` the same token string gives
    the same ``sub`` without decoding it again. An expired one is checked anew
    and refused. Only a digest of the token is kept.
    """

    def __init__(self, secret: str, size: int = VERIFIED_TOKENS) -> None:
        self._secret = secret
        self._size = size
        self._known: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def user_of(self, token: str) -> str:
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        known = self._known.get(key)
        if known is not None and time.time() < known[1]:
            self._known.move_to_end(key)
            return known[0]
        self._known.pop(key, None)
        sub, expires = verified_claims(token, self._secret)
        self._known[key] = (sub, expires)
        if len(self._known) > self._size:
            self._known.popitem(last=False)
        return sub


def auth_middleware(secret: str | None) -> Middleware:
    verified = VerifiedTokens(secret) if secret is not None else None

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX) or request.path in PUBLIC_PATHS:
            return await handler(request)
        if verified is None:
            return _unauthorized(DISABLED, "api_disabled")
        try:
            token = token_from(request)
            if token is None:
                return _unauthorized("Send `Authorization: Bearer <token>`.")
            request[ACTOR] = Actor(user_id=verified.user_of(token))
        except TokenError as exc:
            return _unauthorized(str(exc))
        return await handler(request)

    return authenticate


def _unauthorized(detail: str, error: str = "unauthorized") -> web.Response:
    response = error_response(401, detail, error)
    response.headers["WWW-Authenticate"] = 'Bearer realm="ansflow"'
    return response


def actor_of(request: web.Request) -> Actor:
    return request[ACTOR]
