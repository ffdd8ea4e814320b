"""The one error the launcher raises: which service, and why."""

from __future__ import annotations


class LaunchError(RuntimeError):
    def __init__(self, service: str, message: str, log_tail: str = "") -> None:
        text = f"{service}: {message}"
        if log_tail:
            text += f"\n--- last lines of the {service} log ---\n{log_tail}"
        super().__init__(text)
        self.service = service
