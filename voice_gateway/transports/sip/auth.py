"""Digest authentication (RFC 2617/7616, MD5, qop=auth): of INVITEs against one user and password, and our
answer to a challenge when we place a call (`digest_authorization`)."""

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


def digest_authorization(
    challenge: str, user: str, password: str, method: str, uri: str, cnonce: str, nc: int = 1
) -> str:
    """Our answer to a far end's `WWW-Authenticate`/`Proxy-Authenticate` challenge (a call we place): the value of
    the Authorization (or Proxy-Authorization) header. MD5, with qop=auth when the challenge offers it.
    ValueError: a challenge we cannot answer (not Digest, another algorithm, no nonce)."""
    try:
        parsed = parse_auth(challenge)
    except (ValueError, IndexError):
        raise ValueError("unreadable challenge") from None
    p = parsed.params
    if parsed.scheme.lower() != "digest" or not p.get("nonce"):
        raise ValueError(f"not a digest challenge: {parsed.scheme}")
    if p.get("algorithm", "MD5").upper() != "MD5":
        raise ValueError(f"digest algorithm {p.get('algorithm')} not supported")

    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    realm, nonce = p.get("realm", ""), p["nonce"]
    ha1, ha2 = h(f"{user}:{realm}:{password}"), h(f"{method}:{uri}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        count = f"{nc:08x}"
        response = h(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', "algorithm=MD5", f'cnonce="{cnonce}"', "qop=auth", f"nc={count}"]
    else:
        fields += [f'response="{h(f"{ha1}:{nonce}:{ha2}")}"', "algorithm=MD5"]
    if p.get("opaque"):
        fields.append(f'opaque="{p["opaque"]}"')
    return "Digest " + ", ".join(fields)
