"""The voice gateway service: WebSocket media endpoints, health and metrics, one CallSession per call.

Endpoints: /twilio (Twilio Media Streams), /pcm (raw linear PCM), GET /phone (the browser softphone, WebRTC
signalled on /phone/ws), GET /healthz, GET /metrics. Run with `python -m voice_gateway.app` (what `hotline up` does).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import prometheus_client
from redis.asyncio import Redis
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from voice_gateway import metrics
from voice_gateway.call import CallFlow, Prompts, Timing
from voice_gateway.config import Settings
from voice_gateway.rasa_client import RasaClient
from voice_gateway.recording import CallRecorder
from voice_gateway.records import CallRecords
from voice_gateway.session import CallSession, Engines
from voice_gateway.transports import pcm, sip, twilio, webrtc
from voice_gateway.transports.common import CloseCode

log = logging.getLogger("hotline.gateway")
MAX_MESSAGE_BYTES = 64 * 1024  # a Twilio media message is ~300 bytes, a PCM frame at most 32 KiB


@dataclass
class GatewayConfig:
    host: str = field(default_factory=lambda: os.environ.get("HOTLINE_GATEWAY_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(os.environ.get("HOTLINE_GATEWAY_PORT", "8080")))
    token: str = field(default_factory=lambda: os.environ.get("HOTLINE_GATEWAY_TOKEN", ""))
    twilio_auth_token: str = field(default_factory=lambda: os.environ.get("HOTLINE_TWILIO_AUTH_TOKEN", ""))
    public_url: str = field(default_factory=lambda: os.environ.get("HOTLINE_PUBLIC_URL", ""))  # for signatures
    redis_url: str = field(default_factory=lambda: os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    rasa_url: str = field(default_factory=lambda: os.environ.get("RASA_URL", "http://127.0.0.1:5005"))
    asr_engine: str = field(default_factory=lambda: os.environ.get("HOTLINE_ASR", "auto"))
    max_calls: int = field(default_factory=lambda: int(os.environ.get("HOTLINE_MAX_CALLS", "40")))
    recording_notice: bool = field(default_factory=lambda: os.environ.get("HOTLINE_RECORDING", "") == "1")
    no_input_s: float = field(default_factory=lambda: float(os.environ.get("HOTLINE_NO_INPUT_S", "8")))
    # end of turn after this much silence: 600 ms keeps callers' comma pauses (400-500 ms) inside one turn
    end_silence_ms: int = field(default_factory=lambda: int(os.environ.get("HOTLINE_END_SILENCE_MS", "600")))
    sip_host: str = field(default_factory=lambda: os.environ.get("HOTLINE_SIP_HOST", ""))  # "": same as host
    sip_port: int = field(default_factory=lambda: int(os.environ.get("HOTLINE_SIP_PORT", "5060")))  # 0: no SIP


def twilio_signature(auth_token: str, url: str) -> str:
    """Twilio's request signature for a WebSocket upgrade (no POST parameters): base64 HMAC-SHA1 of the URL."""
    return base64.b64encode(hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()).decode()


class Gateway:
    def __init__(self, config: GatewayConfig, engines: Engines) -> None:
        self.config = config
        self.engines = engines
        self.sessions: dict[str, CallSession] = {}

    def new_session(self, call_id: str, transport: Any, name: str) -> CallSession:
        flow = CallFlow(recording_notice=self.config.recording_notice, timing=Timing(no_input_s=self.config.no_input_s))
        session = CallSession(call_id, transport, self.engines, name, flow=flow)
        if self.config.recording_notice:  # the caller hears the consent notice first, uninterruptible
            where = Settings().var_dir / "recordings" / f"{call_id}.wav"
            session.recorder = CallRecorder(where, transport.sample_rate, time.monotonic())
        self.sessions[call_id] = session
        asyncio.get_running_loop().create_task(self._forget(call_id, session))
        return session

    async def _forget(self, call_id: str, session: CallSession) -> None:
        await session.wait_closed()
        self.sessions.pop(call_id, None)

    # --- HTTP side ---
    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            body = {
                "status": "ok",
                "calls": len(self.sessions),
                "asr": self.engines.recognizer.info.__dict__,
                "end_silence_ms": self.config.end_silence_ms,
                "pid": os.getpid(),
            }
            return connection.respond(HTTPStatus.OK, json.dumps(body) + "\n")
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
            return connection.respond(HTTPStatus.NOT_FOUND, "not found: /twilio, /pcm, /phone, /healthz, /metrics\n")
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
        if len(self.sessions) >= self.config.max_calls:
            metrics.REFUSED.labels("full").inc()
            await ws.close(CloseCode.TRY_AGAIN, "gateway full, try again later")
            return
        await {"/twilio": twilio.handle, "/phone/ws": webrtc.handle}.get(path, pcm.handle)(ws, self)

    async def serve_forever(self, stop: asyncio.Future) -> None:
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
            log.info("gateway listening on %s:%d", self.config.host, self.config.port)
            sip_server = None
            if self.config.sip_port:  # SIP/RTP callers (PBX, trunk, softphone): voice_gateway/transports/sip.py
                settings = sip.SipSettings.from_env(self.config.sip_host or self.config.host, self.config.sip_port)
                sip_server = sip.SipServer(self, settings)
                await sip_server.start()
            await stop
            server.close()
            for session in list(self.sessions.values()):
                await session.close("gateway_stopping")
            if sip_server is not None:
                await sip_server.stop()


def _bearer(headers: Headers) -> str:
    value = headers.get("Authorization", "")
    return value[7:] if value.startswith("Bearer ") else ""


def load_engines(config: GatewayConfig) -> Engines:
    """Load the speech models once per process and warm them up before the first caller."""
    from voice_gateway.asr import make_recognizer
    from voice_gateway.tts import EspeakSynthesizer
    from voice_gateway.vad import Endpointer, WebRtcVad

    recognizer = make_recognizer(config.asr_engine)
    synthesizer = EspeakSynthesizer()
    speech = synthesizer.synthesize(Prompts().still_there + Prompts().dialogue_down, 16000)  # real speech warms best
    recognizer.warm_up(speech=speech, count=int(os.environ.get("HOTLINE_ASR_WARM", "4")))
    redis = Redis.from_url(config.redis_url)
    return Engines(
        recognizer=recognizer,
        synthesizer=synthesizer,
        dialogue=RasaClient(config.rasa_url, token=os.environ.get("RASA_TOKEN") or None),
        records=CallRecords(redis),
        make_endpointer=lambda rate: Endpointer(WebRtcVad(), sample_rate=rate, end_silence_ms=config.end_silence_ms),
    )


async def main() -> None:
    logging.basicConfig(
        level=os.environ.get("HOTLINE_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    config = GatewayConfig()
    gateway = Gateway(config, await asyncio.to_thread(load_engines, config))
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    watcher = asyncio.create_task(metrics.watch_event_loop())
    await gateway.serve_forever(stop)
    watcher.cancel()


if __name__ == "__main__":
    asyncio.run(main())
