"""Turning python-jenkins and requests failures into the port's errors.

python-jenkins keeps the HTTP status only on the exception it chains (401/403/500
become `JenkinsException`, 404 `NotFoundException`, other 4xx stay raw
`requests.HTTPError`), so the status is read from the exception chain. Every
message goes through `Failures.error`, which masks the secrets it was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import jenkins  # type: ignore[import-untyped, unused-ignore]
import requests

from engine.jenkins.errors import (
    JenkinsAlreadyQueued,
    JenkinsAuthError,
    JenkinsBadRequest,
    JenkinsError,
    JenkinsJobDisabled,
    JenkinsNotFound,
    JenkinsUnreachable,
)
from engine.jenkins.models import queue_number_from_url

CRUMB_REFUSED = "No valid crumb"


class Redirected(Exception):
    """A trigger was answered with a redirect instead of 201 + Location."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(status, location)
        self.status = status
        self.location = location


class Unexpected(Exception):
    """Jenkins answered, but not in a shape we can read."""


FAILURES = (jenkins.JenkinsException, requests.RequestException, ValueError, Unexpected)


def refuse_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """requests response hook: raise `Redirected` instead of following a redirect.

    A 303 means "an identical item is already queued"; following it (as requests
    would) turns into a GET of the queue item page and a misleading 404.
    """
    if response.is_redirect:
        _ = response.content  # read it so the connection goes back to the pool
        raise Redirected(response.status_code, response.headers.get("Location", ""))
    return response


@dataclass(frozen=True)
class Doing:
    """What a call was doing, for messages: "while {what}"."""

    what: str
    not_found: str | None = None
    job: str | None = None


@dataclass(frozen=True)
class Failures:
    server: str
    url: str
    user: str
    timeout: float
    secrets: tuple[str, ...]

    def error(
        self, cls: type[JenkinsError], message: str, status: int | None = None
    ) -> JenkinsError:
        return cls(self.mask(message), status=status)

    def unreachable(self, message: str, detail: str, status: int | None = None) -> JenkinsError:
        return JenkinsUnreachable(self.mask(message), status=status, detail=detail)

    def mask(self, message: str) -> str:
        for secret in self.secrets:
            message = message.replace(secret, "***")
        return message

    def redirected(self, doing: Doing, exc: Redirected) -> JenkinsError:
        location = urljoin(self.server, exc.location)
        number = queue_number_from_url(location)
        if exc.status == 303 and number is not None:
            message = (
                f"An identical build of Jenkins job '{doing.job}' is already waiting "
                f"in the queue (item {number})."
            )
            return JenkinsAlreadyQueued(self.mask(message), queue_url=location, queue_number=number)
        return self.error(
            JenkinsError,
            f"Jenkins did not queue job '{doing.job}': it answered HTTP {exc.status}.",
            exc.status,
        )

    def map(self, doing: Doing, exc: Exception) -> JenkinsError:
        status, body = http_failure(exc)
        url, what = self.url, doing.what
        if status is None:
            return self.transport(doing, exc)
        if status == 401:
            return self.error(
                JenkinsAuthError,
                f"Jenkins at {url} refused the user name or API token of '{self.user}' (HTTP 401).",
                status,
            )
        if status == 403:
            reason = "refused the CSRF crumb" if CRUMB_REFUSED in body else "denied permission"
            return self.error(
                JenkinsAuthError,
                f"Jenkins at {url} {reason} to '{self.user}' while {what} (HTTP 403).",
                status,
            )
        if status == 404:
            message = doing.not_found or f"Jenkins at {url} found nothing while {what} (HTTP 404)."
            return self.error(JenkinsNotFound, message, status)
        if status == 409:
            return self.error(JenkinsJobDisabled, f"Jenkins job '{doing.job}' is disabled.", status)
        if status == 400:
            detail = (
                "it takes parameters and none were given"
                if "Nothing is submitted" in body
                else "the request was refused"
            )
            return self.error(
                JenkinsBadRequest, f"Jenkins refused {what}: {detail} (HTTP 400).", status
            )
        if status == 500 and "not parameterized" in body:
            return self.error(
                JenkinsBadRequest,
                f"Jenkins job '{doing.job}' takes no parameters, but some were given.",
                status,
            )
        message = f"Jenkins at {url} answered HTTP {status} while {what}."
        if status >= 500:
            return self.unreachable(message, f"HTTP {status}", status)
        return self.error(JenkinsError, message, status)

    def transport(self, doing: Doing, exc: Exception) -> JenkinsError:
        url, what = self.url, doing.what
        if caused_by(exc, (requests.Timeout, jenkins.TimeoutException)):
            return self.unreachable(
                f"Jenkins at {url} did not answer within {self.timeout:g} s while {what}.",
                f"no answer within {self.timeout:g} s",
            )
        if caused_by(exc, (requests.ConnectionError,)):
            refused = caused_by(exc, (ConnectionRefusedError,))
            return self.unreachable(
                f"Cannot connect to Jenkins at {url} while {what}.",
                "connection refused" if refused else "cannot connect",
            )
        if caused_by(exc, (Unexpected,)):
            return self.error(
                JenkinsError, f"Jenkins gave an unexpected answer while {what}: {exc}."
            )
        if caused_by(exc, (ValueError,)):
            return self.error(JenkinsError, f"Jenkins at {url} sent invalid JSON while {what}.")
        return self.error(JenkinsError, f"Talking to Jenkins at {url} failed while {what}.")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen) and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def caused_by(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(e, types) for e in _chain(exc))


def http_failure(exc: BaseException) -> tuple[int | None, str]:
    """The HTTP status and body behind a python-jenkins error (kept only as context)."""
    for e in _chain(exc):
        if isinstance(e, requests.HTTPError) and e.response is not None:
            return e.response.status_code, e.response.text[:4000]
    return None, ""
