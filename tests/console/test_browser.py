"""The pages in headless Chromium: a first visit signs in through the form (console.js puts the CSRF token in),
the event list fills from the live stream, which resumes with Last-Event-ID; a JSON POST carries the CSRF
header; 退出 signs out."""

from __future__ import annotations

import asyncio
import os

import pytest
from playwright.async_api import async_playwright

from tests.console.conftest import PASSWORD
from tests.console.fakes import FakeBackend, FakeCall
from voice_gateway.console import make_app, serve_console
from voice_gateway.console.backend import AgentStatus

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs chromium (./hotline test installs it)")


async def test_an_agent_signs_in_sees_events_and_sets_status_in_a_browser(settings) -> None:
    backend = FakeBackend()
    backend.add(FakeCall("call-queued"))
    backend.scripted = [("1-0", "queue", {"waiting": 1}), ("2-0", "call", {"call_id": "call-queued"})]
    async with serve_console(make_app(settings, backend), "127.0.0.1", 0) as port, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"http://127.0.0.1:{port}/agent")
            assert page.url.endswith("/login?next=/agent")
            await page.fill("input[name=username]", "agent1")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/agent")
            assert await page.inner_text("#user-name") == "agent1"
            await page.locator("#event-list li").nth(1).wait_for()
            assert "call-queued" in await page.inner_text("#event-list")
            # the stream ended after the script: the browser reconnects by itself, resuming after the last id
            for _ in range(100):
                if "2-0" in backend.resumed_after:
                    break
                await asyncio.sleep(0.1)
            assert backend.resumed_after[:2] == [None, "2-0"]
            await page.click("button[data-status=available]")
            await page.wait_for_function("document.getElementById('status-now').textContent === '示闲'")
            assert backend.statuses[-1][:2] == ("agent1", AgentStatus.AVAILABLE)
            await page.click("text=退出")
            await page.wait_for_url("**/login")
            assert errors == []
        finally:
            await browser.close()
