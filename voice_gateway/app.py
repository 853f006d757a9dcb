"""The voice gateway service: WebSocket media endpoints, health and metrics, SIP, one bridged call per caller.

Endpoints: /twilio (Twilio Media Streams), /pcm (raw linear PCM), GET /phone (the browser softphone, WebRTC
signalled on /phone/ws), GET /healthz, GET /metrics. Run with `python -m voice_gateway.app` (what `hotline up` does).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import prometheus_client
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from hotline_domain.keys import KeyUnavailable
from voice_gateway import dialogue_switch, metrics, redis_link
from voice_gateway.breaker import GuardedDialogue
from voice_gateway.call_store import CallStore
from voice_gateway.calls import Call, Switchboard
from voice_gateway.config import GatewaySettings, Settings
from voice_gateway.console import make_app, serve_console
from voice_gateway.console.redis_backend import RedisBackend
from voice_gateway.desk import Desk
from voice_gateway.flow import CallFlow, EndReason, Prompts, Timing
from voice_gateway.health import Dependency, Health
from voice_gateway.queueing import SkillQueues
from voice_gateway.rasa_client import RasaClient
from voice_gateway.recorder import SUFFIX, CallRecorder, recording_key
from voice_gateway.session import BotSession, Dialogue, SpeechEngines
from voice_gateway.telemetry import WRITE_TIMEOUT_S
from voice_gateway.training import vocabulary
from voice_gateway.training.collector import collecting
from voice_gateway.training.desk import TrainingDesk
from voice_gateway.transports import pcm, sip, twilio, webrtc
from voice_gateway.transports.common import CloseCode

log = logging.getLogger("hotline.gateway")
MAX_MESSAGE_BYTES = 64 * 1024  # a Twilio media message is ~300 bytes, a PCM frame at most 32 KiB


def twilio_signature(auth_token: str, url: str) -> str:
    """Twilio's request signature for a WebSocket upgrade (no POST parameters): base64 HMAC-SHA1 of the URL."""
    return base64.b64encode(hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def _task_kinds() -> dict[str, int]:
    """How many asyncio tasks run each coroutine (by qualified name), most first."""
    kinds = Counter(getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks())
    return dict(kinds.most_common())


class Gateway:
    """One gateway process: the switchboard of its calls, the engines they share, the HTTP and media endpoints."""

    def __init__(
        self,
        settings: Settings,
        speech: SpeechEngines,
        dialogue: Dialogue,
        store: CallStore,
        health: Health | None = None,
        queues: SkillQueues | None = None,
    ) -> None:
        self.settings = settings
        self.health = health or Health([])
        self.config = config = settings.gateway
        self.speech = speech
        self.dialogue = dialogue
        self.store = store
        self.switchboard = Switchboard(config.max_calls, self.make_bot)
        self.recording_key = recording_key(config) if config.recording else None  # no key, no start
        self.webrtc = webrtc.WebRtcSettings.from_settings(config)
        self.gateway_id = config.gateway_id or f"{socket.gethostname()}-{os.getpid()}"
        self.queues = queues  # None: no people behind this line (unit tests); else the desk takes console commands
        self.desk = Desk(self.gateway_id, store.redis, self.switchboard, store, queues, self.webrtc) if queues else None
        # through Sentinel a call-record write may wait out a failover instead of ending the bot's part of the call
        self.store_write_s = redis_link.FAILOVER_WRITE_S if settings.redis_sentinels else WRITE_TIMEOUT_S

    def make_bot(self, call: Call) -> BotSession:
        """The automated agent for a new call, attached to its bridge (and the recorder, when calls are recorded)."""
        config = self.config
        timing = Timing(
            no_input_s=config.no_input_s,
            queue_announce_s=config.queue_announce_s,
            queue_callback_offer_s=config.queue_callback_offer_s,
            queue_limit_s=config.queue_limit_s,
        )
        flow = CallFlow(recording_notice=config.recording, timing=timing)
        leg = call.leg
        bot = BotSession(
            call,
            call.bridge,
            leg.sample_rate,
            leg.wire,
            self.speech,
            self.dialogue,
            self.store,
            flow,
            self.queues,
            store_write_s=self.store_write_s,
        )
        call.bridge.attach_bot(bot)
        call.on_close.append(bot.close)
        if self.config.recording:  # the caller hears the consent notice first, uninterruptible
            where = self.settings.var_dir / "recordings" / f"{call.call_id}{SUFFIX}"
            assert self.recording_key is not None
            recorder = CallRecorder(
                where,
                leg.sample_rate,
                time.monotonic(),
                key=self.recording_key,
                paused=lambda: flow.expects_digits,  # silent while an ID number or a password is being given
                call_id=call.call_id,
            )
            call.bridge.recorder = recorder
            call.on_close.append(lambda *_: self._save_recording(call.call_id, recorder))
        return bot

    async def _save_recording(self, call_id: str, recorder: CallRecorder) -> None:
        try:
            saved = await asyncio.to_thread(recorder.save)
            if saved is not None:
                await self.store.redis.hset(f"hotline:call:{call_id}", "recording", str(saved))
        except Exception:  # a full disk or a lost Redis loses the recording's path, never the call
            log.exception("call %s: recording not saved", call_id)

    @property
    def calls(self) -> dict[str, Call]:
        return self.switchboard.calls

    # --- HTTP side ---
    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":  # alive, and which part is down
            body = {
                "status": "draining" if self.switchboard.draining else ("degraded" if self.health.down else "ok"),
                "calls": len(self.switchboard.calls),
                "asr": self.speech.recognizer.info.__dict__,
                "end_silence_ms": self.config.end_silence_ms,
                "pid": os.getpid(),
                "tasks": len(asyncio.all_tasks()),
                "task_kinds": _task_kinds(),  # what they are running: a leak shows as one kind that grows
                "threads": threading.active_count(),
                "dependencies": self.health.report(),
            }
            return connection.respond(HTTPStatus.OK, json.dumps(body) + "\n")
        if path == "/readyz":  # new calls taken?
            why = (["draining"] if self.switchboard.draining else []) + [f"{name} down" for name in self.health.down]
            status = HTTPStatus.SERVICE_UNAVAILABLE if why else HTTPStatus.OK
            return connection.respond(status, json.dumps({"ready": not why, "why": why}) + "\n")
        if path == "/metrics":
            response = connection.respond(HTTPStatus.OK, prometheus_client.generate_latest().decode())
            del response.headers["Content-Type"]  # Headers is a multidict: setting a name adds a second one
            response.headers["Content-Type"] = prometheus_client.CONTENT_TYPE_LATEST
            return response
        if path == "/phone":  # the browser softphone; its signalling socket is /phone/ws
            if not self.authenticated(request):
                metrics.REFUSED.labels("unauthenticated").inc()
                return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized: open /phone?token=...\n")
            return webrtc.page_response(connection)
        if path not in ("/twilio", "/pcm", "/phone/ws"):
            known = "/twilio, /pcm, /phone, /healthz, /readyz, /metrics"
            return connection.respond(HTTPStatus.NOT_FOUND, f"not found: {known}\n")
        return None

    def authenticated(self, request: Request) -> bool:
        query = parse_qs(urlsplit(request.path).query)
        token = (query.get("token") or [""])[0] or _bearer(request.headers)
        if self.config.token and token and hmac.compare_digest(token, self.config.token):
            return True
        signature = request.headers.get("X-Twilio-Signature", "")
        if self.config.twilio_auth_token and signature and self.config.public_url:
            expected = twilio_signature(
                self.config.twilio_auth_token, self.config.public_url.rstrip("/") + request.path
            )
            return hmac.compare_digest(signature, expected)
        return not self.config.token and not self.config.twilio_auth_token  # no secret configured: open (dev only)

    async def handler(self, ws: ServerConnection) -> None:
        path = urlsplit(ws.request.path).path
        if not self.authenticated(ws.request):
            metrics.REFUSED.labels("unauthenticated").inc()
            await ws.close(CloseCode.POLICY, "unauthorized: ?token= or a valid X-Twilio-Signature is required")
            return
        if path == "/phone/ws":
            await webrtc.handle(ws, self.switchboard, self.store, self.webrtc)
            return
        await {"/twilio": twilio.handle}.get(path, pcm.handle)(ws, self.switchboard)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        """The WebSocket/HTTP endpoints and SIP, open while inside; yields the HTTP port (for port 0)."""
        async with serve(
            self.handler,
            self.config.host,
            self.config.port,
            process_request=self.process_request,
            max_size=MAX_MESSAGE_BYTES,
            max_queue=64,
            ping_interval=20,
            ping_timeout=20,
        ) as server:
            port = int(next(iter(server.sockets)).getsockname()[1])
            log.info("gateway listening on %s:%d", self.config.host, port)
            sip_server = None
            desk = asyncio.create_task(self.desk.run(), name="desk") if self.desk is not None else None
            if self.config.sip_port:  # SIP/RTP callers (PBX, trunk, softphone): voice_gateway/transports/sip/
                sip_server = sip.SipServer(self.switchboard, sip.SipSettings.from_settings(self.config))
                await sip_server.start()
            try:
                yield port
            finally:
                server.close()
                if desk is not None and self.desk is not None:
                    desk.cancel()
                    await self.desk.close()
                await self.switchboard.close_all(EndReason.GATEWAY_STOPPING)
                if sip_server is not None:
                    await sip_server.stop()

    async def serve_forever(self, stop: asyncio.Future, drain: asyncio.Future) -> None:
        """Serve until `stop` (SIGINT: now) or `drain` (SIGTERM: finish the calls first, up to the drain limit)."""
        self.health.start()
        try:
            async with self.serving():
                await asyncio.wait({stop, drain}, return_when=asyncio.FIRST_COMPLETED)
                if drain.done() and not stop.done():
                    draining = asyncio.ensure_future(self.switchboard.drain(self.config.drain_s))
                    await asyncio.wait({stop, draining}, return_when=asyncio.FIRST_COMPLETED)
                    draining.cancel()
        finally:
            await self.health.stop()


def _bearer(headers: Headers) -> str:
    value = headers.get("Authorization", "")
    return value[7:] if value.startswith("Bearer ") else ""


def recognition_prompt(root: Path) -> str | None:
    """Whisper's prompt from the trainers' data (their words, the intents', cities); None if it cannot be read."""
    try:
        return vocabulary.prompt(vocabulary.domain_words(root))
    except (OSError, ValueError) as exc:
        log.warning("no recognition hints from the trainers' data (%s): the built-in prompt", type(exc).__name__)
        return None


def load_speech(config: GatewaySettings, root: Path | None = None) -> SpeechEngines:
    """Load the speech models once per process, warm them up, and render the prompts a broken synthesiser needs.
    `root`: the project whose trainers' data gives Whisper its prompt."""
    from voice_gateway.asr import make_recognizer
    from voice_gateway.neural_tts import make_synthesizer
    from voice_gateway.vad import Endpointer, SileroGatedVad, WebRtcVad

    prompt = recognition_prompt(root) if root else None
    recognizer = make_recognizer(config.asr_engine, prompt, config.asr_workers, config.vosk_recognizer_uses)
    synthesizer = make_synthesizer(config)  # HOTLINE_TTS: the neural voice where installed, else espeak-ng
    rendered = synthesizer.render_ahead((8000, 16000))  # fixed prompts: once per voice, then from the store
    log.info("voice %s: %d fixed sentences, %d rendered now", synthesizer.voice_id, len(synthesizer.fixed), rendered)
    prompts = Prompts()
    speech = synthesizer.synthesize(prompts.still_there + prompts.dialogue_down, 16000)  # real speech warms best
    recognizer.warm_up(speech=speech, count=config.asr_warm)
    canned = {(text, rate): synthesizer.synthesize(text, rate) for text in prompts.canned() for rate in (8000, 16000)}
    return SpeechEngines(
        recognizer=recognizer,
        synthesizer=synthesizer,
        make_endpointer=lambda rate: Endpointer(
            SileroGatedVad() if config.vad == "silero-gated" else WebRtcVad(),
            sample_rate=rate,
            end_silence_ms=config.end_silence_ms,
        ),
        canned=canned,
    )


async def main() -> None:
    settings = Settings.from_env()  # the configuration, read once
    logging.basicConfig(level=settings.gateway.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    speech = await asyncio.to_thread(load_speech, settings.gateway, settings.root)
    redis = redis_link.connect(
        settings.gateway_redis_url, settings.redis_sentinels, socket_timeout=2, socket_connect_timeout=2
    )
    config = settings.gateway
    store = CallStore(redis, config.gateway_id)
    try:
        key: bytes | None = recording_key(config)  # also seals the numbers callers leave for a callback
    except KeyUnavailable as exc:
        log.warning("no key for callback numbers (%s): callers are not offered a callback", exc)
        key = None
    queues = SkillQueues(redis, config.gateway_id, key)
    rasa = RasaClient(settings.rasa_url, timeout=settings.gateway.rasa_timeout_s, token=settings.rasa_token)
    dialogue = GuardedDialogue(rasa)
    health = Health([Dependency("redis", redis.ping), Dependency("dialogue", rasa.status)])
    gateway = Gateway(settings, speech, dialogue, store, health, queues)
    consoles = make_app(settings, RedisBackend(redis, queues), lambda engine: TrainingDesk(settings, engine, key))
    loop = asyncio.get_running_loop()
    stop, drain = loop.create_future(), loop.create_future()
    loop.add_signal_handler(signal.SIGINT, lambda: stop.done() or stop.set_result(None))
    loop.add_signal_handler(signal.SIGTERM, lambda: drain.done() or drain.set_result(None))
    watcher = asyncio.create_task(metrics.watch_event_loop())
    following = asyncio.create_task(dialogue_switch.follow(redis, rasa))  # a promoted model's server
    async with (
        serve_console(consoles, config.console_host, config.console_port),
        collecting(redis, consoles.state.training.inbox),  # the dialogue's turns into the trainer's inbox
    ):
        await gateway.serve_forever(stop, drain)
    watcher.cancel()
    following.cancel()
    await rasa.close()


if __name__ == "__main__":
    asyncio.run(main())
