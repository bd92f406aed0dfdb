"""Where the app keeps its login: ``$EVACCESS_APP_HOME/session.json`` (default
``~/.config/evaccess``), written 0600. Phone credentials live beside it (``credentials/``)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from evaccess.domain.errors import NotAuthenticated


def app_home() -> Path:
    configured = os.environ.get("EVACCESS_APP_HOME")
    return Path(configured) if configured else Path.home() / ".config" / "evaccess"


@dataclass(frozen=True, kw_only=True, slots=True)
class AppSession:
    server: str
    token: str
    email: str


def save_session(session: AppSession, home: Path | None = None) -> Path:
    home = home or app_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / "session.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(session), fh)
    tmp.replace(path)
    return path


def load_session(home: Path | None = None) -> AppSession:
    path = (home or app_home()) / "session.json"
    try:
        data = json.loads(path.read_text())
        return AppSession(server=data["server"], token=data["token"], email=data["email"])
    except FileNotFoundError:
        raise NotAuthenticated("not logged in: run `evaccess app login` first") from None
    except (ValueError, KeyError, TypeError):
        raise NotAuthenticated("the saved login is unreadable: run `evaccess app login`") from None


def clear_session(home: Path | None = None) -> None:
    ((home or app_home()) / "session.json").unlink(missing_ok=True)
