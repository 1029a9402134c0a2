"""argon2id password hashing, off the event loop (a hash costs tens of milliseconds).

The cost is set once per process from the coordinator settings (``password_hash_memory``,
``password_hash_rounds``); hashes made with other parameters still verify, since argon2
stores its parameters in the hash.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's recommended parameters
_dummy_hash = _hasher.hash("mitosis: no such user")


def configure_hashing(memory_kib: int, rounds: int) -> None:
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(memory_cost=memory_kib, time_cost=rounds)
    _dummy_hash = _hasher.hash("mitosis: no such user")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash (unknown user) burn the same time and say no, so
    a login for an unknown name does not reveal which names exist."""

    def _verify() -> bool:
        try:
            return _hasher.verify(password_hash or _dummy_hash, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(_verify)
