"""Talking to the Rasa server over HTTP: the REST channel for turns, /model/parse for NLU."""

from __future__ import annotations

from typing import Any

import aiohttp

from hotline_domain.contract import BotTurn, ContractError
from hotline_domain.nlu import MAX_TEXT
from hotline_domain.privacy import redact

__all__ = ["NOTHING_UNDERSTOOD", "BotTurn", "DialogueError", "RasaClient"]  # BotTurn: re-exported for now

NOTHING_UNDERSTOOD = "/nlu_fallback"  # what an empty turn means to the dialogue: reprompt, and count it


class DialogueError(RuntimeError):
    """The dialogue server did not answer usefully."""


class RasaClient:
    def __init__(self, base_url: str, *, timeout: float = 15.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._params = {"token": token} if token else {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RasaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _post(self, path: str, body: Any) -> Any:
        try:
            async with self._http().post(f"{self.base_url}{path}", json=body, params=self._params) as response:
                if response.status != 200:
                    body = redact((await response.text())[:200])
                    raise DialogueError(f"{path} answered HTTP {response.status}: {body}")
                return await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DialogueError(f"cannot reach the dialogue server at {self.base_url}: {type(exc).__name__}") from exc

    async def send(self, sender: str, text: str) -> BotTurn:
        """One caller turn (text, or /inform{"digits": "..."} for keypad input) -> the bot's answer."""
        text = text.strip()[:MAX_TEXT] or NOTHING_UNDERSTOOD  # Rasa answers nothing at all to empty text
        messages = await self._post("/webhooks/rest/webhook", {"sender": sender, "message": text})
        try:
            return BotTurn.from_messages(messages or [])
        except ContractError as exc:
            raise DialogueError(f"the dialogue answered outside the contract: {exc}") from exc

    async def rewind(self, sender: str) -> None:
        """Take back the caller's last message and everything the bot did after it (Rasa's `rewind` event), and
        listen again: without the `action_listen`, Rasa 3.6 answers the next message with silence."""
        events = [{"event": "rewind"}, {"event": "action", "name": "action_listen"}]
        await self._post(f"/conversations/{sender}/tracker/events", events)

    async def status(self) -> dict[str, Any]:
        """The server's status (the model it serves); raises DialogueError when it does not answer."""
        try:
            async with self._http().get(f"{self.base_url}/status", params=self._params) as response:
                if response.status != 200:
                    raise DialogueError(f"/status answered HTTP {response.status}")
                return await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DialogueError(f"cannot reach the dialogue server at {self.base_url}: {type(exc).__name__}") from exc

    async def parse(self, text: str) -> dict[str, Any]:
        return await self._post("/model/parse", {"text": text[:MAX_TEXT]})

    async def latest_intent(self, sender: str) -> str | None:
        """The intent the dialogue understood in the caller's latest message."""
        tracker = await self.tracker(sender, events=False)
        try:
            return str(tracker["latest_message"]["intent"]["name"])
        except (KeyError, TypeError):
            return None

    async def tracker(self, sender: str, *, events: bool = True) -> dict[str, Any]:
        """The conversation state; `events=False` leaves out the event history (smaller, for the latest intent)."""
        try:
            params = {**self._params, "include_events": "ALL" if events else "NONE"}
            async with self._http().get(f"{self.base_url}/conversations/{sender}/tracker", params=params) as r:
                return await r.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DialogueError(f"cannot read the tracker: {type(exc).__name__}") from exc
