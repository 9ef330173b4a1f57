"""Errors of the Jenkins port, in one tree.

    JenkinsError               Jenkins could not do what was asked
    ├── JenkinsAuthError       401/403: bad user or token, missing permission, crumb refused
    ├── JenkinsNotFound        404: no such job, build or queue item (left queue items
    │                          are forgotten after about 5 minutes)
    ├── JenkinsJobDisabled     409: the job is disabled
    ├── JenkinsBadRequest      400 (or "not parameterized"): the job refused the
    │                          parameters as sent
    ├── JenkinsAlreadyQueued   303: an identical build is already waiting in the queue;
    │                          `queue_url` names it
    └── JenkinsUnreachable     connection refused or reset, timeout, 5xx: try again later

``str()`` of each is a message fit to show a user. It never contains the API
token, and no python-jenkins or requests exception is attached to it (no
``__cause__``/``__context__``), so a logged traceback cannot leak one either.
"""

from __future__ import annotations


class JenkinsError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class JenkinsAuthError(JenkinsError):
    pass


class JenkinsNotFound(JenkinsError):
    pass


class JenkinsJobDisabled(JenkinsError):
    pass


class JenkinsBadRequest(JenkinsError):
    pass


class JenkinsAlreadyQueued(JenkinsError):
    def __init__(self, message: str, *, queue_url: str, queue_number: int | None) -> None:
        super().__init__(message, status=303)
        self.queue_url = queue_url
        self.queue_number = queue_number


class JenkinsUnreachable(JenkinsError):
    """``detail`` says how, in a few words ("connection refused", "HTTP 503")."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message, status=status)
        self.detail = detail or "no answer"
