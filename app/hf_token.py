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


SERVER_KEY_ACCOUNT = "server-api-key"  # the local server's API key (app/server/)
REMOTE_KEY_ACCOUNT = "remote-api-key"  # the key for a remote server the app answers through


class TokenStore:
    """One secret in the keyring: the Hugging Face token by default, or another `account`."""

    def __init__(self, account: str = ACCOUNT, label: str = "Token") -> None:
        self._session_token: str | None = None
        self.account, self.label = account, label

    def save(self, token: str) -> str:
        """Store `token`; return a sentence for the user about where it went."""
        token = token.strip()
        self._session_token = token or None
        try:
            if token:
                keyring.set_password(SERVICE, self.account, token)
            else:
                self._delete()
            return f"{self.label} saved in the system keyring." if token else f"{self.label} removed."
        except keyring.errors.KeyringError as exc:
            log.warning("no usable keyring: %s", type(exc).__name__)
            return (
                f"No system keyring is available, so the {self.label.lower()} cannot be saved; "
                "it will be used until SmallThinker closes."
            )

    def load(self) -> str | None:
        if self._session_token:
            return self._session_token
        try:
            return keyring.get_password(SERVICE, self.account)
        except keyring.errors.KeyringError:
            return None

    def _delete(self) -> None:
        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            keyring.delete_password(SERVICE, self.account)
