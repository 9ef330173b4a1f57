"""``ansflow token create --user U123 [--ttl 1h]``: print a bearer token, nothing else."""

from __future__ import annotations

import argparse
import re
import sys

from ansflow.settings import SettingsError, load_settings
from api.tokens import TokenError, create_token

_TTL = re.compile(r"^\s*(\d{1,9})\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = 366 * 86400


class TtlError(ValueError):
    pass


def parse_ttl(text: str) -> int:
    """Seconds in ``30s``, ``15m``, ``1h`` or ``7d`` (at most a year)."""
    match = _TTL.match(text)
    if match is None:
        raise TtlError(f"invalid --ttl {text!r}: use a number and s, m, h or d (e.g. 30m, 1h, 7d)")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise TtlError(f"invalid --ttl {text!r}: must be more than zero")
    if seconds > MAX_TTL:
        raise TtlError(f"invalid --ttl {text!r}: at most 366d")
    return seconds


def cmd_token_create(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ansflow: {exc}", file=sys.stderr)
        return 2
    if settings.jwt_secret is None or not settings.jwt_secret.get_secret_value():
        print("ansflow: ANSFLOW_JWT_SECRET is not set; the REST API is disabled.", file=sys.stderr)
        return 2
    try:
        ttl = parse_ttl(str(args.ttl))
        token = create_token(settings.jwt_secret.get_secret_value(), str(args.user), ttl)
    except (TtlError, TokenError) as exc:
        print(f"ansflow: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
