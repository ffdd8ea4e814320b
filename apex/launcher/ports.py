"""Listening sockets the launcher binds and keeps, so a restarted service keeps its port."""

from __future__ import annotations

import errno
import socket

from apex.launcher.errors import LaunchError

HOST = "127.0.0.1"


def listening_socket(service: str, port: int = 0) -> socket.socket:
    """A TCP socket bound on loopback (IPPROTO_TCP, so asyncio sets TCP_NODELAY)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise LaunchError(service, f"cannot listen on {HOST}:{port}: {why}") from None
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
