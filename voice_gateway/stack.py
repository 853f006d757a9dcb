"""Child processes the hotline runs: a local Redis, the Rasa server, the action server, the voice gateway.

`Stack` starts them in order, waits until each answers, and stops them in reverse order. `hotline up` and
the test suite use the same code, so what the tests run is what an operator runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hotline_domain.keys import ensure_key_file
from hotline_domain.redis_spec import GATEWAY_VARS
from voice_gateway import dialogue_switch, redis_link, sip_proxy
from voice_gateway.config import Settings
from voice_gateway.rasa_env import RasaEnv
from voice_gateway.training.versions import ModelVersions


class StartError(RuntimeError):
    """A child process did not come up."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    """A port free for UDP and for TCP alike: a SIP port is both (a UDP-free port may be a TCP connection's)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class ManagedProcess:
    """One child process with a log file and a readiness check."""

    name: str
    args: list[str]
    ready: Callable[[], bool]
    log_path: Path
    cwd: Path | None = None
    env: dict[str, str] | None = None
    start_timeout: float = 120.0
    port: int | None = None  # refused if something already listens there
    stop_signal: int = signal.SIGTERM  # the gateway stops at once on SIGINT (SIGTERM drains its calls first)
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the process; `wait_ready()` then waits for it (several processes can warm up side by side)."""
        if self.port is not None and port_open("127.0.0.1", self.port):
            raise StartError(f"{self.name}: port {self.port} is already in use (is another hotline running?)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child for its lifetime
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop children in order
        )
        log.close()

    def wait_ready(self) -> None:
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n{self.tail()}")
            if self.ready():
                return
            time.sleep(0.25)
        self.stop()
        raise StartError(f"{self.name} did not become ready within {self.start_timeout:.0f} s; see {self.log_path}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def redis_process(settings: Settings, port: int | None = None) -> tuple[ManagedProcess, str]:
    """A throwaway local redis-server on a free loopback port: no persistence, gone when stopped."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise StartError("redis-server not found: install it (apt-get install redis-server) or set REDIS_URL")
    port = port or free_port()
    proc = ManagedProcess(
        name="redis",
        args=[
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        ready=lambda: port_open("127.0.0.1", port),
        log_path=settings.var_dir / "log" / "redis.log",
        start_timeout=15,
        port=port,
    )
    return proc, f"redis://127.0.0.1:{port}/0"


def action_server_process(settings: Settings, rasa: RasaEnv, redis_url: str, port: int) -> ManagedProcess:
    """The action server, on `settings.actions_host` (127.0.0.1: only Rasa calls it; it can change business data)."""
    env = rasa.environ(redis_url)
    if not env.get("HOTLINE_IDENTITY_KEY_FILE"):  # seals the caller's ID in the tracker (actions/caller_id.py)
        env["HOTLINE_IDENTITY_KEY_FILE"] = str(ensure_key_file(settings.var_dir / "keys" / "identity.key"))
    return ManagedProcess(
        name="actions",
        args=[rasa.rasa, "run", "actions", "--actions", "actions", "-p", str(port)],
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/health"),
        log_path=settings.var_dir / "log" / "actions.log",
        cwd=settings.dialogue_dir,
        env=env,
        port=port,
    )


def rasa_server_process(
    settings: Settings, rasa: RasaEnv, redis_url: str, port: int, model: Path, token: str
) -> ManagedProcess:
    """The Rasa server: its HTTP API (tracker, parse, model) needs `?token=`; the REST channel is Rasa's own."""
    env = rasa.environ(redis_url)
    return ManagedProcess(
        name="rasa",
        args=[
            rasa.rasa,
            "run",
            "--enable-api",
            f"--auth-token={token}",  # one argument: a random token may begin with "-"
            "-i",
            settings.rasa_host,
            "-p",
            str(port),
            "--model",
            str(model),
            "--endpoints",
            "endpoints.yml",
            "--credentials",
            "credentials.yml",
        ],
        ready=lambda: _rasa_model_loaded(port, token),
        log_path=settings.var_dir / "log" / "rasa.log",
        cwd=settings.dialogue_dir,
        env=env,
        start_timeout=180,
        port=port,
    )


def _rasa_model_loaded(port: int, token: str) -> bool:
    query = urllib.parse.urlencode({"token": token})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status?{query}", timeout=1) as response:
            return b'"model_file"' in response.read() and response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


WARM_UP_TEXT = "你好，我社保卡丢了"


def _warm_up(port: int, token: str) -> None:
    """One parse before the server takes calls: its first loads jieba's dictionary and the featurizers' state
    (about a second), which would otherwise fall on a caller's turn."""
    query = urllib.parse.urlencode({"token": token})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/model/parse?{query}",
        data=json.dumps({"text": WARM_UP_TEXT}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(request, timeout=30):
        pass


def gateway_process(
    settings: Settings,
    redis_url: str,
    rasa_url: str,
    port: int,
    token: str,
    rasa_token: str | None = None,
    console_port: int | None = None,
    sip_port: int | None = None,
    name: str = "gateway",
) -> ManagedProcess:
    """The voice gateway (this environment's Python), after Rasa: it warms up its speech models before serving.
    It serves the consoles too, on `console_port`, and SIP on `sip_port` (None: the configured ones)."""
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": redis_url,
            "RASA_URL": rasa_url,
            "HOTLINE_GATEWAY_PORT": str(port),
            "HOTLINE_GATEWAY_TOKEN": token,
            "RASA_TOKEN": rasa_token or settings.rasa_token or "",
            "HOTLINE_CONSOLE_PORT": str(settings.gateway.console_port if console_port is None else console_port),
            "HOTLINE_SIP_PORT": str(settings.gateway.sip_port if sip_port is None else sip_port),
        }
    )
    env.update(settings.redis_sentinels.environ(GATEWAY_VARS))
    if not (settings.gateway.recording_key_file or settings.gateway.recording_key_url):
        key = ensure_key_file(settings.var_dir / "keys" / "recording.key")  # recordings are encrypted with it
        env["HOTLINE_RECORDING_KEY_FILE"] = str(key)
    return ManagedProcess(
        name=name,
        args=[sys.executable, "-m", "voice_gateway.app"],
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        log_path=settings.var_dir / "log" / f"{name}.log",
        cwd=settings.root,
        env=env,
        start_timeout=300,
        port=port,
        stop_signal=signal.SIGINT,
    )


def kamailio_process(
    settings: Settings, port: int, gateways: list[tuple[str, int]], *, ping_s: int = 2, host: str = "127.0.0.1"
) -> ManagedProcess:
    """Kamailio on UDP host:port in front of `gateways` (host, SIP port): sip_proxy.py, deploy/kamailio/."""
    binary = sip_proxy.kamailio_binary()
    if binary is None:
        raise StartError("--sip-proxy needs Kamailio (Debian: apt-get install kamailio)")
    run = settings.var_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        name="sip-proxy",
        args=sip_proxy.kamailio_args(binary, run, port, gateways, ping_s, host),
        ready=lambda: sip_proxy.options_answered(host, port),
        log_path=settings.var_dir / "log" / "sip-proxy.log",
        start_timeout=20,
    )


RESTART_AFTER_S = 10.0  # a gateway that exits again this soon after being started again stops the hotline


@dataclass
class Stack:
    """Redis (unless REDIS_URL is given), the action server and the Rasa server, started in that order."""

    settings: Settings
    rasa_port: int = 5005
    actions_port: int = 5055
    gateway_port: int | None = None  # None: no voice gateway (text-only dialogue stack)
    gateways: int = 1  # gateway processes: their ports count up from the configured ones (gateway_processes)
    sip_proxy: bool = False  # Kamailio on the configured SIP port, the gateways' SIP on the ports after it
    gateway_token: str = ""  # "": the settings' token, or a new random one
    rasa_token: str = ""  # Rasa's HTTP API token: "", the settings' (RASA_TOKEN), or a new random one
    processes: list[ManagedProcess] = field(default_factory=list)
    redis_url: str = ""
    model: Path | None = None  # the dialogue model in service
    origin: str = ""  # the first Rasa server's URL: the gateways' RASA_URL, under which a switch is announced
    switcher: dialogue_switch.ModelSwitcher | None = None  # puts a trainer's promoted model into service
    restarts: dict[str, float] = field(default_factory=dict)  # gateway name -> when it was last started again

    def __post_init__(self) -> None:
        self.gateway_token = self.gateway_token or self.settings.gateway.token or secrets.token_urlsafe(16)
        self.rasa_token = self.rasa_token or self.settings.rasa_token or secrets.token_urlsafe(16)

    def start(self, model: Path, on_start: Callable[[str], None] = lambda _: None) -> None:
        """Start everything; on failure stop what was started and raise."""
        rasa = RasaEnv(self.settings)
        try:
            if self.settings.redis_url or self.settings.redis_sentinels:  # a Redis of the operator's
                self.redis_url = self.settings.gateway_redis_url
            else:
                redis, self.redis_url = redis_process(self.settings)
                self._start(redis, on_start)
            self.settings.action_server_url = f"http://127.0.0.1:{self.actions_port}/webhook"
            self._start(action_server_process(self.settings, rasa, self.redis_url, self.actions_port), on_start)
            rasa_server = rasa_server_process(
                self.settings, rasa, self.redis_url, self.rasa_port, model, self.rasa_token
            )
            self._start(rasa_server, on_start)
            self.model, self.origin = model, self.origin or self.rasa_url
            self._announce_dialogue()
            if model.parent.resolve() == self.settings.models_dir.resolve():  # the version history's folder
                self._versions().started(model)
            if self.gateway_port is not None:
                self._start_gateways(on_start)
            sentinels = self.settings.redis_sentinels
            self.switcher = dialogue_switch.ModelSwitcher(
                self.redis_url, self.settings.models_dir, self.swap_model, self._record_switch, sentinels
            )
            self.switcher.start()
            self._write_runtime()
        except BaseException:
            self.stop()
            raise

    def gateway_processes(self) -> list[ManagedProcess]:
        """The gateways, named gateway, gateway-2, ...: gateway i on the gateway and console ports + 2i (so the
        default 8080 and 8081 never meet), on SIP port + i (+ 1 more behind the proxy)."""
        assert self.gateway_port is not None
        console, sip = self.settings.gateway.console_port, self.settings.gateway.sip_port
        first_sip = sip + 1 if self.sip_proxy else sip
        return [
            gateway_process(
                self.settings, self.redis_url, self.rasa_url, self.gateway_port + 2 * i, self.gateway_token,
                self.rasa_token, console_port=console + 2 * i, sip_port=first_sip + i if sip else 0,
                name="gateway" if i == 0 else f"gateway-{i + 1}",
            )
            for i in range(self.gateways)
        ]  # fmt: skip

    def _start_gateways(self, on_start: Callable[[str], None]) -> None:
        """The gateways warm up side by side; then, with `sip_proxy`, Kamailio in front of them."""
        gateways = self.gateway_processes()
        for gateway in gateways:
            on_start(gateway.name)
            gateway.spawn()
            self.processes.append(gateway)
        for gateway in gateways:
            gateway.wait_ready()
        sip = self.settings.gateway.sip_port
        if self.sip_proxy and sip:
            host = self.settings.gateway.sip_host or "127.0.0.1"
            targets = [(host, int((g.env or {})["HOTLINE_SIP_PORT"])) for g in gateways]
            self._start(kamailio_process(self.settings, sip, targets, host=host), on_start)

    def revive(self, proc: ManagedProcess, say: Callable[[str], None]) -> bool:
        """One of several gateways exited (drained by SIGTERM, or crashed): start it again, and the proxy's probes
        put it back into service once it answers. A rolling restart is `kill -TERM` to one gateway at a time.
        False (the hotline stops): not a gateway of several, or one that exited again within RESTART_AFTER_S."""
        if self.gateways < 2 or not proc.name.startswith("gateway") or proc.proc is None:
            return False
        if time.monotonic() - self.restarts.get(proc.name, -RESTART_AFTER_S) < RESTART_AFTER_S:
            return False
        say(f"{proc.name} exited with {proc.proc.returncode}; starting it again")
        self.restarts[proc.name] = time.monotonic()
        try:
            proc.spawn()
        except StartError as exc:
            say(str(exc))
            return False
        self._write_runtime()
        return True

    def _announce_dialogue(self) -> None:
        """Tell the gateways which dialogue server is in service (they follow `active_key(origin)`)."""
        assert self.model is not None
        active = dialogue_switch.ActiveDialogue(self.rasa_url, self.model.name)
        client = redis_link.connect_sync(self.redis_url, self.settings.redis_sentinels, socket_timeout=5)
        try:
            client.set(dialogue_switch.active_key(self.origin), active.dumps())
        finally:
            client.close()

    def swap_model(self, model: Path, on_ready: Callable[[], None] = lambda: None) -> str:
        """Blue/green: a second Rasa server with `model`, the gateways moved over, then the old one stopped.
        Raises StartError (the old server stays in service) when the new one does not come up."""
        old = self.process("rasa")
        port = free_port()
        green = rasa_server_process(self.settings, RasaEnv(self.settings), self.redis_url, port, model, self.rasa_token)
        green.start()
        _warm_up(port, self.rasa_token)
        on_ready()
        self.processes[self.processes.index(old)] = green
        self.rasa_port, self.model = port, model
        self._announce_dialogue()
        self._write_runtime()
        time.sleep(max(dialogue_switch.ModelSwitcher.GRACE_S, self.settings.gateway.rasa_timeout_s + 1))
        old.stop()
        return self.rasa_url

    def _versions(self) -> ModelVersions:
        return ModelVersions.from_settings(self.settings)

    def _record_switch(self, request: dict) -> None:
        """A switched model in the version history (models/service.json)."""
        versions = self._versions()
        by = str(request.get("by") or "hotline")
        if request.get("action") == "rollback":
            versions.mark_rolled_back(by)
        else:
            versions.mark_promoted(
                request["model"], by, override=bool(request.get("override")), reason=str(request.get("reason") or "")
            )

    def _write_runtime(self) -> None:
        self.runtime_file.parent.mkdir(parents=True, exist_ok=True)
        runtime = {
            "redis_url": self.redis_url,
            "rasa_url": self.rasa_url,
            "rasa_token": self.rasa_token,  # for `hotline chat` and `hotline nlu parse`
            "pid": os.getpid(),
            "pids": {p.name: p.proc.pid for p in self.processes if p.proc is not None},  # for `hotline bench`
        }
        if self.gateway_port is not None:
            runtime.update(gateway_url=self.gateway_url, gateway_token=self.gateway_token)
            runtime["gateways"] = [
                {"name": p.name, "url": f"ws://127.0.0.1:{(p.env or {})['HOTLINE_GATEWAY_PORT']}"}
                for p in self.processes
                if p.name.startswith("gateway")
            ]
            console = self.settings.gateway
            runtime["console_url"] = f"http://{console.console_host}:{console.console_port}/"
            sip_port = self.settings.gateway.sip_port
            if sip_port:
                runtime["sip_url"] = f"sip:12333@127.0.0.1:{sip_port}"
        fd = os.open(self.runtime_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the tokens
        with os.fdopen(fd, "w") as runtime_out:
            runtime_out.write(json.dumps(runtime))
        self.runtime_file.chmod(0o600)  # also when it was there before

    def _start(self, proc: ManagedProcess, on_start: Callable[[str], None]) -> None:
        on_start(proc.name)
        proc.start()
        self.processes.append(proc)

    def process(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    def restart(self, name: str) -> None:
        proc = self.process(name)
        proc.stop()
        proc.start()

    def stop(self) -> None:
        if self.switcher is not None:
            self.switcher.stop()
            self.switcher = None
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        self.runtime_file.unlink(missing_ok=True)

    @property
    def runtime_file(self) -> Path:
        """Where a running hotline says how to reach it, for `hotline chat` and friends."""
        return self.settings.var_dir / "run" / "hotline.json"

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    @property
    def gateway_url(self) -> str | None:
        return f"ws://127.0.0.1:{self.gateway_port}" if self.gateway_port else None
