"""How hub and GDSC write a host and port in a URL or a ``Host`` header."""

from __future__ import annotations

__all__ = ["host_header"]


def host_header(host: str, port: int) -> str:
    """``host:port`` as the Host header and a URL's authority write it: an IPv6 literal in
    brackets (RFC 3986 §3.2.2, RFC 9110 §7.2), so ``::1`` port 8443 is ``[::1]:8443``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
