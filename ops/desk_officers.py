"""The operator's side of the desk's officers: give one an account for their units (the password is drawn here and
shown once, only its scrypt hash is kept), revoke one. Both rewrite the accounts file atomically; the running desk
reads it again at the officer's next request."""

from __future__ import annotations

from pathlib import Path

from consumers.desk_officers import hashed_account, new_password, read_officers, write_officers


def add_officer(path: Path, login: str, unit_ids: list[str]) -> str:
    """Give ``login`` a new password for ``unit_ids`` (replacing its account if it had one); return the password."""
    password = new_password()
    register = read_officers(path)
    register.officers = [o for o in register.officers if o.login != login]
    register.officers.append(hashed_account(login, unit_ids, password))
    write_officers(path, register)
    return password


def revoke_officer(path: Path, login: str) -> bool:
    """Remove ``login``'s account: its session ends at its next request. False if it had none."""
    register = read_officers(path)
    kept = [o for o in register.officers if o.login != login]
    if len(kept) == len(register.officers):
        return False
    register.officers = kept
    write_officers(path, register)
    return True
