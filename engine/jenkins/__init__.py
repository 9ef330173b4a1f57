"""The Jenkins port: an async client over python-jenkins, its dataclasses and errors."""

from engine.jenkins.client import JenkinsClient
from engine.jenkins.errors import (
    JenkinsAlreadyQueued,
    JenkinsAuthError,
    JenkinsBadRequest,
    JenkinsError,
    JenkinsJobDisabled,
    JenkinsNotFound,
    JenkinsUnreachable,
)
from engine.jenkins.models import (
    BuildInfo,
    JobInfo,
    ParamDef,
    ProgressiveText,
    QueueItem,
    RunningBuild,
    job_name_from_url,
    queue_number_from_url,
)

__all__ = [
    "BuildInfo",
    "JenkinsAlreadyQueued",
    "JenkinsAuthError",
    "JenkinsBadRequest",
    "JenkinsClient",
    "JenkinsError",
    "JenkinsJobDisabled",
    "JenkinsNotFound",
    "JenkinsUnreachable",
    "JobInfo",
    "ParamDef",
    "ProgressiveText",
    "QueueItem",
    "RunningBuild",
    "job_name_from_url",
    "queue_number_from_url",
]
