"""Who may open a unit's desk: the officers' accounts (a login, the units it works for, its password kept only as
an scrypt hash) and the desk's sessions (a signed, encrypted cookie that expires after a shift).

Passwords are drawn by the system (``new_password``, 96 random bits) and handed to the officer once, as the
intake's API keys are, so nobody can guess one online; scrypt (``cryptography``'s, with its constant-time verify)
still makes a stolen accounts file useless for an offline search. The file is read again when it changes, so
adding or revoking an officer (``signalements desk-officers``) takes effect at the officer's next request, session
included: a session names a login, and every request checks that login against the file.

A session is a Fernet token (AES-128-CBC + HMAC-SHA256, with its issue time: ``cryptography`` checks the age), in
an HttpOnly, SameSite=Strict cookie: no script reads it and no other site's form carries it, which is what stops a
forged "traiter" from another page. The key is a file every desk of a deployment shares
(``SIGNALEMENTS_DESK_SESSION_KEY_FILE``); a missing one is generated, so a first desk starts on its own.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidKey
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import BaseModel, Field

from signalements.private_files import write_private
from signalements.watched_file import WatchedModelFile, read_model, write_model

# scrypt's cost: 16 MiB and about 50 ms a login on this machine (RFC 7914's interactive figures).
SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES = 2**14, 8, 1, 32
LOGIN_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,62}$"


class OfficerAccount(BaseModel):
    login: str = Field(pattern=LOGIN_PATTERN)
    unit_ids: list[str] = Field(min_length=1, description="the units whose desk this officer may open")
    salt: str = Field(description="base64, 16 bytes")
    scrypt_hash: str = Field(description="base64 of scrypt(password, salt, n=2**14, r=8, p=1)")


class OfficerRegister(BaseModel):
    officers: list[OfficerAccount] = []

    def find(self, login: str) -> OfficerAccount | None:
        return next((officer for officer in self.officers if officer.login == login), None)


def new_password() -> str:
    return secrets.token_urlsafe(12)


def _scrypt(salt: bytes) -> Scrypt:
    return Scrypt(salt=salt, length=HASH_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)


def hashed_account(login: str, unit_ids: list[str], password: str) -> OfficerAccount:
    salt = secrets.token_bytes(16)
    digest = _scrypt(salt).derive(password.encode())
    return OfficerAccount(login=login, unit_ids=unit_ids, salt=base64.b64encode(salt).decode(),
                          scrypt_hash=base64.b64encode(digest).decode())


def password_matches(account: OfficerAccount, password: str) -> bool:
    try:
        _scrypt(base64.b64decode(account.salt)).verify(password.encode(), base64.b64decode(account.scrypt_hash))
    except InvalidKey:
        return False
    return True


def read_officers(path: Path) -> OfficerRegister:
    return read_model(path, OfficerRegister, OfficerRegister)


def write_officers(path: Path, register: OfficerRegister) -> None:
    write_model(path, register)


class DeskOfficers:
    """The accounts of a file, re-read when the file changes. A missing file means nobody may log in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = WatchedModelFile(path, OfficerRegister, OfficerRegister)
        # Compared against when the login is unknown, so a wrong login costs the same time as a wrong password.
        self._decoy = hashed_account("decoy", ["none"], new_password())

    def authenticate(self, login: str, password: str) -> OfficerAccount | None:
        account = self.current(login)
        matches = password_matches(account or self._decoy, password)
        return account if account is not None and matches else None

    def current(self, login: str) -> OfficerAccount | None:
        """The account as the file holds it now: None once revoked."""
        return self._file.current().find(login)


def load_session_key(path: Path) -> bytes:
    """The desks' shared session key; generated (0600) when there is none yet."""
    if not path.exists():
        write_private(path, Fernet.generate_key())
    return path.read_bytes().strip()


class DeskSessions:
    """A session cookie's value names its officer, for ``max_age_s`` after the login."""

    def __init__(self, key: bytes, max_age_s: int) -> None:
        self._fernet = Fernet(key)
        self.max_age_s = max_age_s

    def issue(self, login: str) -> str:
        return self._fernet.encrypt(json.dumps({"login": login}).encode()).decode()

    def login_of(self, token: str | None) -> str | None:
        if not token:
            return None
        try:
            content = json.loads(self._fernet.decrypt(token.encode(), ttl=self.max_age_s))
        except (InvalidToken, ValueError):
            return None
        login = content.get("login") if isinstance(content, dict) else None
        return login if isinstance(login, str) else None
