"""What the server listens on and what it accepts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from app.errors import AppError

DEFAULT_PORT = 8321


class ServerConfigError(AppError, ValueError):
    """Settings the server refuses to start with; the message says what to change."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key: str = ""  # empty: no key asked (only allowed on the loopback interface)
    cors_origins: tuple[str, ...] = ()  # browsers' cross-origin requests are refused unless listed
    max_request_bytes: int = 8 << 20  # a long document pasted into a conversation fits
    max_tokens: int = 4096  # per answer; also the default when a request names none

    def check(self) -> None:
        if not 0 <= self.port < 65536:  # 0: any free port
            raise ServerConfigError(f"port {self.port} is not a port number (1-65535)")
        if not is_loopback(self.host) and not self.api_key:
            raise ServerConfigError(
                f"listening on {self.host} lets other computers use the model: set an API key first "
                "(or listen on 127.0.0.1, this computer only)"
            )
        if self.max_tokens < 1 or self.max_request_bytes < 1024:
            raise ServerConfigError("the request limits must be positive")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
