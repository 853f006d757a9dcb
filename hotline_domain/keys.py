"""Keys for data at rest: 256-bit keys in files of mode 0600, or fetched once from a key service URL.

A key file holds the key in base64 on one line (32 raw bytes are accepted too). `hotline up` makes the ones that
are not configured under `var/keys/` (folder 0700, files 0600, never overwritten): the recording key and the
action server's identity key. Keys are never in the repository (`var/` is ignored) and never logged.

A key service is any HTTP(S) URL that answers GET with the key in base64 (a KMS or vault behind a small adapter,
or a local agent that holds the key); `HOTLINE_KMS_TOKEN`, when set, is sent as `Authorization: Bearer`. The
key is fetched once at start and kept in memory only.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import urllib.request
from pathlib import Path

KEY_BYTES = 32


class KeyUnavailable(RuntimeError):
    """A key could not be read, fetched or made."""


def parse_key(raw: bytes, where: str) -> bytes:
    if len(raw) == KEY_BYTES:
        return raw
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyUnavailable(f"{where}: not a base64 key") from exc
    if len(key) != KEY_BYTES:
        raise KeyUnavailable(f"{where}: a key must be {KEY_BYTES} bytes, this one is {len(key)}")
    return key


def ensure_key_file(path: Path) -> Path:
    """Make a new random key at `path` (mode 0600, folder 0700) unless one is there; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
    return path


def read_key_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode & 0o777
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyUnavailable(f"cannot read the key file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise KeyUnavailable(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    return parse_key(raw, str(path))


def fetch_key(url: str, token: str = "", timeout: float = 10.0) -> bytes:
    """The key from a key service (GET, base64 body); file:// URLs read a key file."""
    if url.startswith("file://"):
        return read_key_file(Path(url[len("file://") :]))
    if not url.startswith(("https://", "http://")):
        raise KeyUnavailable("a key URL must be https://, http:// or file://")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return parse_key(response.read(), "the key service")
    except OSError as exc:
        raise KeyUnavailable(f"the key service did not answer: {type(exc).__name__}") from exc


def load_key(*, file: str = "", url: str = "", token: str = "") -> bytes:
    """The key a configuration names: a URL wins over a file; neither is an error."""
    if url:
        return fetch_key(url, token)
    if file:
        return read_key_file(Path(file))
    raise KeyUnavailable("no key configured")
