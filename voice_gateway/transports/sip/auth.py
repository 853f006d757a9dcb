"""Digest authentication of INVITEs (RFC 2617/7616, MD5, qop=auth) against one user and password."""

from __future__ import annotations

import hashlib
import hmac
import os
import time

from aiosipua.header_codec import parse_auth

NONCE_TTL_S = 300


class DigestAuth:
    """Stateless nonces (a timestamp signed with a per-process key), checked against one user and password."""

    def __init__(self, user: str, password: str, realm: str = "hotline") -> None:
        self.user, self.password, self.realm = user, password, realm
        self._key = os.urandom(16)

    def nonce(self, now: float | None = None) -> str:
        stamp = f"{int(now if now is not None else time.time()):x}"
        return stamp + "." + hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:20]

    def challenge(self, *, stale: bool = False) -> str:
        value = f'Digest realm="{self.realm}", nonce="{self.nonce()}", algorithm=MD5, qop="auth"'
        return value + (", stale=true" if stale else "")

    def check(self, method: str, header: str | None, now: float | None = None) -> str:
        """ "ok", "missing", "stale" (an old nonce of ours: retry without asking the user) or "bad"."""
        if not header:
            return "missing"
        try:
            creds = parse_auth(header, credentials=True)
        except (ValueError, IndexError):
            return "bad"
        p = creds.params
        if creds.scheme.lower() != "digest" or p.get("username") != self.user or p.get("realm") != self.realm:
            return "bad"
        nonce = p.get("nonce", "")
        stamp, _, _ = nonce.partition(".")
        try:
            issued = int(stamp, 16)
        except ValueError:
            return "bad"
        if not hmac.compare_digest(nonce, self.nonce(issued)):
            return "bad"
        if p.get("algorithm", "MD5").upper() != "MD5":
            return "bad"

        def h(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1, ha2 = h(f"{self.user}:{self.realm}:{self.password}"), h(f"{method}:{p.get('uri', '')}")
        if p.get("qop"):
            expected = h(f"{ha1}:{nonce}:{p.get('nc', '')}:{p.get('cnonce', '')}:{p.get('qop')}:{ha2}")
        else:
            expected = h(f"{ha1}:{nonce}:{ha2}")
        if not hmac.compare_digest(p.get("response", ""), expected):
            return "bad"
        if (now if now is not None else time.time()) - issued > NONCE_TTL_S:
            return "stale"
        return "ok"
