"""Screenshots of the consoles at 1366x768: the agent's page ringing and in a call, the supervisor's dashboard.

    .venv/bin/python tools/console_screenshots.py                       # against the in-memory FakeBackend
    .venv/bin/python tools/console_screenshots.py --url http://127.0.0.1:8090 \
        --agent agent1:PASSWORD --supervisor sup1:PASSWORD                # against a running console

Saved to docs/img/console-agent-ringing.png, console-agent-in-call.png, console-supervisor.png (--out to change).
Without --url a console is started here on a temporary user database (agent1, agent2, sup1; password
"demo-12333") with the FakeBackend's demo calls, and an aiortc peer answers the pages' offers with a tone.
Against a running console the agent's page needs a call waiting in one of that agent's skills to ring (the
in-call shot accepts it). Headless Chromium at /usr/bin/chromium, fake microphone; Chinese needs a CJK font
(fonts-noto-cjk on Debian).

The REAL gateway's shots (a real call ringing, a real call in progress, the supervisor with live calls) are made
by the browser tests against the session's gateway process, with these helpers (`launch`, `sign_in`, `save`):

    HOTLINE_SCREENSHOTS=docs/img ./hotline test tests/voice/test_console_browser.py -q
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from playwright.async_api import Browser, Page, Playwright, async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1366, "height": 768}
DEMO_PASSWORD = "demo-12333"


@contextlib.asynccontextmanager
async def demo_console() -> AsyncIterator[tuple[str, object]]:
    from tests.console.fakes import demo_backend
    from tests.console.media import loopback_candidates
    from voice_gateway.config import Settings
    from voice_gateway.console import make_app, serve_console
    from voice_gateway.console.store import UserStore, open_database

    var = Path(tempfile.mkdtemp(prefix="console-shots-"))
    try:
        engine = open_database(f"sqlite:///{var / 'console.sqlite3'}")
        users = UserStore(engine)
        users.add("agent1", "agent", DEMO_PASSWORD, "card,general")
        users.add("agent2", "agent", DEMO_PASSWORD, "employment")
        users.add("sup1", "supervisor", DEMO_PASSWORD, "")
        engine.dispose()
        base = Settings.from_env({})
        settings = replace(base, var_dir=var, gateway=replace(base.gateway, console_port=0))
        backend = demo_backend()
        with loopback_candidates():
            async with serve_console(make_app(settings, backend), "127.0.0.1", 0) as port:
                try:
                    yield f"http://127.0.0.1:{port}", backend
                finally:
                    await backend.close()
    finally:
        shutil.rmtree(var, ignore_errors=True)


def chromium_args(mic_wav: Path | None = None) -> list[str]:
    """Headless Chromium as the shots (and tests/voice/test_console_browser.py) run it: a fake microphone (a
    WAV file when given, else Chromium's beep), media allowed without asking, loopback ICE candidates."""
    args = [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
    ]
    return args + ([f"--use-file-for-fake-audio-capture={mic_wav}"] if mic_wav else [])


async def launch(playwright: Playwright, mic_wav: Path | None = None) -> Browser:
    return await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(mic_wav))


async def save(page: Page, out: Path, name: str) -> Path:
    """One shot of the page as it is now: `out`/`name` (the folder made if need be)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    await page.screenshot(path=str(path))
    return path


async def sign_in(browser: Browser, url: str, credentials: str, path: str) -> Page:
    """A new browser context signed in through the real form, on `path` (NAME:PASSWORD)."""
    name, _, password = credentials.partition(":")
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1, locale="zh-CN")
    page = await context.new_page()
    await page.goto(f"{url}{path}")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"**{path}")
    return page


async def shoot(url: str, agent: str, supervisor: str, out: Path, backend: object | None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    async with async_playwright() as p:
        browser = await launch(p)
        try:
            page = await sign_in(browser, url, agent, "/agent")
            await page.click("button[data-status=available]")
            await page.locator("#ringing").wait_for(state="visible", timeout=15000)
            await page.wait_for_timeout(300)
            saved.append(await save(page, out, "console-agent-ringing.png"))
            await page.click("#accept")
            await page.locator("#hangup").wait_for(state="visible", timeout=15000)
            call_id = await page.evaluate("window.hotlineAgent.callId")
            if backend is not None:  # the caller goes on talking
                backend.publish(
                    "turn",
                    {
                        "call_id": call_id,
                        "seq": 3,
                        "speaker": "caller",
                        "text": "我的卡是上周在地铁上丢的",
                        "intent": "card_loss",
                        "confidence": 0.95,
                    },
                )
                backend.publish("partial", {"call_id": call_id, "text": "能不能先帮我挂失"})
            await page.wait_for_timeout(2500)
            saved.append(await save(page, out, "console-agent-in-call.png"))

            page = await sign_in(browser, url, supervisor, "/supervisor")
            await page.locator("#call-rows tr[data-call-id]").first.wait_for()
            rows = page.locator("#call-rows tr[data-state=agent]")
            await (rows.first if await rows.count() else page.locator("#call-rows tr[data-call-id]").first).click()
            await page.click("#monitor-controls button[data-action=listen]")
            await page.locator("#monitor-controls button[data-action=leave]").wait_for(state="visible", timeout=15000)
            selected = await page.evaluate("window.hotlineSupervisor.selected")
            if backend is not None:
                backend.publish("partial", {"call_id": selected, "text": "那我明天去哪个网点"})
            await page.wait_for_timeout(1200)
            saved.append(await save(page, out, "console-supervisor.png"))
        finally:
            await browser.close()
    return saved


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running console (default: start one on the FakeBackend)")
    parser.add_argument("--agent", help="NAME:PASSWORD of an agent", default=f"agent1:{DEMO_PASSWORD}")
    parser.add_argument("--supervisor", help="NAME:PASSWORD of a supervisor", default=f"sup1:{DEMO_PASSWORD}")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    if args.url:
        saved = await shoot(args.url.rstrip("/"), args.agent, args.supervisor, args.out, None)
    else:
        async with demo_console() as (url, backend):
            saved = await shoot(url, args.agent, args.supervisor, args.out, backend)
    for path in saved:
        print(path)


if __name__ == "__main__":
    asyncio.run(main())
