"""A Jenkins step's console, read progressively (``logText/progressiveText``), masked.

For ``/ansflow logs`` and the API logs route: the build's console as Jenkins
has it now (the stored log holds only the last lines of a failed build).
"""

from __future__ import annotations

from engine.jenkins.errors import JenkinsError
from engine.jenkins.phases import FollowState
from engine.jenkins.tools import ToolClients, ToolMissing
from engine.masking import Masker
from storage.models import StepRun

MAX_CHUNKS = 20  # progressive reads per call (a running build's console keeps growing)
KEEP_CHARS = 1_000_000  # the end of the console is kept, as for shell steps


async def jenkins_console(clients: ToolClients, masker: Masker, step: StepRun) -> str | None:
    """The build's console (its end, masked); None when the step has no build or Jenkins fails."""
    state = FollowState.from_json(step.external_state)
    if state is None or state.build is None:
        return None
    try:
        _, client = await clients.by_name(state.tool)
        parts: list[str] = []
        start = 0
        for _ in range(MAX_CHUNKS):
            chunk = await client.progressive_text(state.job, state.build, start)
            parts.append(chunk.text)
            if not chunk.more or chunk.next_start <= start:
                break
            start = chunk.next_start
    except (JenkinsError, ToolMissing):
        return None
    return masker("".join(parts)[-KEEP_CHARS:])
