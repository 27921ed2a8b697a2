"""The Hugging Face token, kept in the OS keyring and nowhere else.

Never written to the settings file or a log. Without a usable keyring backend the
token lives in memory for this session only, and `save` says so.
"""

from __future__ import annotations

import contextlib
import logging

import keyring
import keyring.errors

log = logging.getLogger(__name__)

SERVICE = "SmallThinker Desktop"
ACCOUNT = "huggingface-token"


class TokenStore:
    def __init__(self) -> None:
        self._session_token: str | None = None

    def save(self, token: str) -> str:
        """Store `token`; return a sentence for the user about where it went."""
        token = token.strip()
        self._session_token = token or None
        try:
            if token:
                keyring.set_password(SERVICE, ACCOUNT, token)
            else:
                self._delete()
            return "Token saved in the system keyring." if token else "Token removed."
        except keyring.errors.KeyringError as exc:
            log.warning("no usable keyring: %s", type(exc).__name__)
            return (
                "No system keyring is available, so the token cannot be saved; "
                "it will be used until SmallThinker closes."
            )

    def load(self) -> str | None:
        if self._session_token:
            return self._session_token
        try:
            return keyring.get_password(SERVICE, ACCOUNT)
        except keyring.errors.KeyringError:
            return None

    def _delete(self) -> None:
        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            keyring.delete_password(SERVICE, ACCOUNT)
