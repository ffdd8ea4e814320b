"""The dev launcher: Redis and every Apex service on free local ports, kept healthy."""

from apex.launcher.errors import LaunchError
from apex.launcher.stack import Stack, StackConfig

__all__ = ["LaunchError", "Stack", "StackConfig"]
