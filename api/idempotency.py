"""``Idempotency-Key`` on ``POST /api/v1/cicd/executions/``: the same key acts once.

A create that carries the header records ``(token subject, key, body
fingerprint)`` in the same transaction as the run it creates; the pair is
unique in the database, so whichever replica a duplicate reaches, it either
finds the row or waits on the unique index for the first request's commit,
and then answers ``200`` with that run instead of creating one. The first
answer is ``201``. The same key with a different body is ``422``. A request
refused before its run was created (bad parameters, no permission) records
nothing, so it can be corrected and sent again with the same key.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from tortoise.backends.base.client import BaseDBAsyncClient

from api.errors import ApiError
from storage.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 255
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
REUSED = "idempotency_key_reused"


@dataclass(frozen=True)
class Claim:
    subject: str
    key: str
    fingerprint: str

    async def record(self, run_id: int, conn: BaseDBAsyncClient) -> None:
        """Insert the key with its run, in the run's own transaction."""
        await IdempotencyKey.create(
            subject=self.subject,
            key=self.key,
            fingerprint=self.fingerprint,
            run_id=run_id,
            using_db=conn,
        )


def fingerprint(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim_of(request: web.Request, subject: str, body: dict[str, Any]) -> Claim | None:
    """The request's claim, None without the header, 400 when the key is not usable."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if not _KEY.match(key):
        raise ApiError(
            400,
            f"The {HEADER} header must be 1 to {MAX_KEY} visible ASCII characters "
            "(a UUID is a good choice).",
        )
    return Claim(subject=subject, key=key, fingerprint=fingerprint(body))


async def earlier_run(claim: Claim) -> int | None:
    """The run an earlier request with this key created; 422 if its body was different."""
    row = await IdempotencyKey.filter(subject=claim.subject, key=claim.key).first()
    if row is None:
        return None
    if row.fingerprint != claim.fingerprint:
        raise ApiError(
            422,
            f"This {HEADER} was already used for a different request (execution "
            f"{row.run_id}); send a new key with a new request.",
            REUSED,
            execution_id=row.run_id,
        )
    return row.run_id
