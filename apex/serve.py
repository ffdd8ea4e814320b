"""`python -m apex.serve NAME --fd N`: run one service on a socket the launcher bound."""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys

SERVICES = {
    "auth": "apex.auth.app",
    "backend": "apex.backend.app",
    "gateway": "apex.gateway.app",
    "idp": "apex.idp.app",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m apex.serve")
    parser.add_argument("service", choices=sorted(SERVICES))
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    args = parser.parse_args(argv)
    run_service(args.service, args.fd)


def lean_imports() -> None:
    """httpx imports its command line (click, rich, pygments: about 50 ms here) unless it
    is told the module is absent; no service uses it. Only in a service's own process."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def run_service(name: str, fd: int) -> None:
    """Serve service `name` on the listening socket `fd` until it is stopped."""
    lean_imports()
    from apex.service import serve  # noqa: PLC0415 - the launcher reads SERVICES only

    with socket.socket(fileno=os.dup(fd)) as probe:
        host, port = probe.getsockname()[:2]
    os.environ["APEX_SELF_URL"] = f"http://{host}:{port}"  # what discovery advertises
    module = importlib.import_module(SERVICES[name])
    serve(module.create_app(), fd)


if __name__ == "__main__":
    main()
