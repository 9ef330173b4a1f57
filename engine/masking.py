"""Masking secret values in anything a step printed, before it is stored or shown."""

from __future__ import annotations

MASK = "***"
# Shorter values would mask ordinary words; such a secret is a configuration problem.
MIN_SECRET_LENGTH = 4


class Masker:
    def __init__(self, secrets: list[str] | None = None) -> None:
        self._secrets: set[str] = set()
        for secret in secrets or []:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        # Longest first, so a secret containing another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def held_back(self, text: str) -> int:
        """How many characters at the end of ``text`` could be the start of a secret.

        Output shown while a step still runs withholds them: the next chunk may
        complete the secret, and half a secret must not be shown either.
        """
        held = 0
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(text)), held, -1):
                if text.endswith(secret[:size]):
                    held = size
                    break
        return held

    def __len__(self) -> int:
        return len(self._secrets)
