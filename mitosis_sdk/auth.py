"""The credential cache: one token per coordinator and user, in a 0600 file.

Clients reuse a cached token until the coordinator rejects it, then ask for the password
again. The file also remembers the last coordinator and user, so ``mitosis-tui`` and the
worker start without flags after a first login.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

__all__ = ["CachedLogin", "CredentialCache"]


@dataclass(frozen=True)
class CachedLogin:
    url: str
    username: str
    token: str
    expires_at: datetime

    @property
    def expired(self) -> bool:
        return self.expires_at <= datetime.now(UTC)


def _key(url: str, username: str) -> str:
    return f"{url.rstrip('/')}|{username}"


class CredentialCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(platformdirs.user_config_dir("mitosis")) / "credentials.json"

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, OSError):
            return {"logins": {}, "last": {}}
        data.setdefault("logins", {})
        data.setdefault("last", {})
        return data

    def _save(self, data: dict) -> None:
        """Atomic replace; the file is never readable by others, not even briefly."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".credentials.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get(self, url: str, username: str) -> CachedLogin | None:
        entry = self._load()["logins"].get(_key(url, username))
        if not entry:
            return None
        login = CachedLogin(
            url=url.rstrip("/"),
            username=username,
            token=entry["token"],
            expires_at=datetime.fromisoformat(entry["expires_at"]),
        )
        return None if login.expired else login

    def put(self, url: str, username: str, token: str, expires_at: datetime) -> None:
        data = self._load()
        data["logins"][_key(url, username)] = {
            "token": token,
            "expires_at": expires_at.isoformat(),
        }
        data["last"] = {"url": url.rstrip("/"), "username": username}
        self._save(data)

    def forget(self, url: str, username: str) -> None:
        data = self._load()
        if data["logins"].pop(_key(url, username), None) is not None:
            self._save(data)

    def last(self, url: str | None = None) -> tuple[str, str] | None:
        """The last (url, username) used; with ``url``, the last user on that coordinator."""
        data = self._load()
        last = data["last"]
        if last and (url is None or last.get("url") == url.rstrip("/")):
            return last["url"], last["username"]
        if url is not None:
            prefix = url.rstrip("/") + "|"
            users = [k.split("|", 1)[1] for k in data["logins"] if k.startswith(prefix)]
            if len(users) == 1:
                return url.rstrip("/"), users[0]
        return None
