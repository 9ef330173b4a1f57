"""Creating bearer tokens (HS256 JWTs): pure, and light to import.

``ansflow token create`` needs only this, not the HTTP server: it lives apart
from the middleware in ``api/auth.py``, which checks the tokens.
"""

from __future__ import annotations

import re
import time
import warnings

import jwt

ALGORITHM = "HS256"
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class TokenError(Exception):
    """Why a token is refused; ``str()`` is fit to return to the client."""


def create_token(secret: str, user_id: str, ttl_seconds: int, now: float | None = None) -> str:
    if not USER_ID.match(user_id):
        raise TokenError(f"{user_id!r} is not a user id (letters, digits, '_', '.', '@', '-')")
    issued = int(now if now is not None else time.time())
    claims = {"sub": user_id, "iat": issued, "exp": issued + ttl_seconds}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm=ALGORITHM)
