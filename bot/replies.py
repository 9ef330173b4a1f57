"""Private answers: to one person only, wherever they asked from.

In a channel: ``chat.postEphemeral``, else the request's ``response_url``;
with no channel (a click in the App Home) or when both fail: the person's DM
with the bot (``conversations.open`` + ``chat.postMessage``).
"""

from __future__ import annotations

import logging

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.views import Message

log = logging.getLogger(__name__)

API_TIMEOUT = 10
SlackFailure = (SlackApiError, TimeoutError, aiohttp.ClientError)


class Replies:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def dm(self, user: str) -> str | None:
        """The id of ``user``'s direct message channel with the bot."""
        try:
            res = await self.client.conversations_open(users=user)
        except SlackFailure as err:
            log.warning("could not open a DM with %s: %s", user, err)
            return None
        return str((res.get("channel") or {}).get("id") or "") or None

    async def tell(
        self, user_id: str, channel_id: str, response_url: str | None, message: Message
    ) -> None:
        """Show ``message`` to ``user_id`` only (in their DM when there is no channel)."""
        failure: BaseException | None = None
        if channel_id:
            try:
                await self.client.chat_postEphemeral(
                    channel=channel_id, user=user_id, **message.as_args()
                )
                return
            except SlackFailure as err:
                failure = err
        if response_url:
            try:
                await AsyncWebhookClient(response_url, timeout=API_TIMEOUT).send(
                    response_type="ephemeral", replace_original=False, **message.as_args()
                )
                return
            except (TimeoutError, aiohttp.ClientError) as err:
                failure = err
        await self._tell_in_dm(user_id, message, failure)

    async def _tell_in_dm(
        self, user_id: str, message: Message, failure: BaseException | None
    ) -> None:
        dm = await self.dm(user_id)
        if dm is None:
            log.warning("could not answer %s privately: %s", user_id, failure)
            return
        try:
            await self.client.chat_postMessage(channel=dm, **message.as_args())
        except SlackFailure as err:
            log.warning("could not answer %s privately: %s; %s", user_id, failure, err)
