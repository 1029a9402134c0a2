"""Ed25519 key pair and JWT signing/verification.

Every failure to verify -- malformed, expired, wrong signature, wrong algorithm -- becomes
the same opaque :class:`InvalidToken`, so the 401 never tells an attacker which check failed.

Verifying a signature costs more than the rest of a small request's auth, and a worker sends
the same token thousands of times, so :meth:`TokenSigner.verify` remembers the claims of
tokens it has verified (by the exact token string, bounded) and only re-checks their expiry.
Only tokens that passed the full check are remembered, and the key pair is fixed for the
process's life, so a remembered token is one that would verify again.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ALGORITHM = "EdDSA"
ISSUER = "mitosis"
LEEWAY = timedelta(seconds=5)
VERIFIED_CACHE = 4096


class InvalidToken(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: int
    username: str
    session_id: str
    version: int
    expires_at: datetime
    worker_id: str | None = None


def generate_key_pair(private_path: Path, public_path: Path, *, overwrite: bool = False) -> bool:
    """Write a new key pair (private key mode 0600); False when one exists and is kept."""
    if private_path.exists() and not overwrite:
        return False
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(private_path, flags, 0o600)
    except FileExistsError:
        return False  # another coordinator on this host won the race; use its key
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    return True


class TokenSigner:
    def __init__(self, private_pem: bytes, public_pem: bytes) -> None:
        self._private = serialization.load_pem_private_key(private_pem, password=None)
        self._public = serialization.load_pem_public_key(public_pem)
        self._verified: dict[str, Claims] = {}

    @classmethod
    def from_files(cls, private_path: Path, public_path: Path) -> TokenSigner:
        if not public_path.exists():
            private = serialization.load_pem_private_key(private_path.read_bytes(), None)
            public_path.write_bytes(
                private.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
        return cls(private_path.read_bytes(), public_path.read_bytes())

    def sign(self, claims: Claims) -> str:
        payload = {
            "iss": ISSUER,
            "sub": claims.username,
            "uid": claims.user_id,
            "sid": claims.session_id,
            "ver": claims.version,
            "exp": claims.expires_at,
            "iat": datetime.now(UTC),
            "jti": uuid.uuid4().hex,
        }
        if claims.worker_id:
            payload["wid"] = claims.worker_id
        return jwt.encode(payload, self._private, algorithm=ALGORITHM)

    def verify(self, token: str) -> Claims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._verified) >= VERIFIED_CACHE:
                self._verified.clear()
            self._verified[token] = claims
        if claims.expires_at + LEEWAY < datetime.now(UTC):
            self._verified.pop(token, None)
            raise InvalidToken
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sub", "uid", "sid", "ver"]},
                leeway=LEEWAY,
            )
            return Claims(
                user_id=int(payload["uid"]),
                username=str(payload["sub"]),
                session_id=str(payload["sid"]),
                version=int(payload["ver"]),
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
                worker_id=payload.get("wid"),
            )
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            raise InvalidToken from None
