"""`python -m apex.launcher`: start the platform, print where it is, run until Ctrl-C.

`--check` instead checks the health of an already running deployment named by the
APEX_*_URL variables and exits 0 (all healthy) or 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

import httpx

from apex.launcher.errors import LaunchError
from apex.launcher.stack import Stack, StackConfig
from apex.tls import tls

CHECKED = ("APEX_AUTH_URL", "APEX_BACKEND_URL", "APEX_IDP_URL")


def check() -> int:
    """Health of a running deployment: one line per service, exit 0 only if all are ready."""
    failed = 0
    urls = {var: os.environ.get(var, "") for var in CHECKED}
    gateway = os.environ.get("APEX_GATEWAY_URL", "")
    if gateway:
        urls["APEX_GATEWAY_URL"] = gateway.replace("ws://", "http://").removesuffix("/ws")
    for var, url in urls.items():
        status = _ready(url) if url else "not set"
        failed += status != "ready"
        print(f"{var}={url or '-'} {status}")
    return 1 if failed else 0


def _ready(url: str) -> str:
    try:
        resp = httpx.get(f"{url}/health/ready", timeout=2.0, verify=tls())
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"
    return "ready" if resp.status_code == 200 else f"not ready ({resp.status_code})"


def run() -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack = Stack(StackConfig.from_env())
        stack.start()
    except (LaunchError, ValueError) as exc:
        print(f"apex.launcher: {exc}", file=sys.stderr)
        return 1
    try:
        _announce(stack)
        stop.wait()
    finally:
        stack.stop()
    return 0


def _announce(stack: Stack) -> None:
    for line in stack.env_lines():
        print(line)
    if not os.environ.get("APEX_DEMO_PASSWORD"):
        path = stack.workdir / "demo-credentials.env"
        path.write_text(f"APEX_DEMO_EMAIL={stack.demo[0]}\nAPEX_DEMO_PASSWORD={stack.demo[1]}\n")
        path.chmod(0o600)
        print(f"# demo user credentials are in {path}")
    print(f"ready in {stack.started_in:.2f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apex.launcher", description=__doc__)
    parser.add_argument("--check", action="store_true", help="health-check APEX_*_URL only")
    args = parser.parse_args(argv)
    return check() if args.check else run()


if __name__ == "__main__":
    sys.exit(main())
