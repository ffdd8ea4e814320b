"""A pytest-xdist scheduler that keeps each registry `group` on one worker.

Tests of entries that share a group form one scope, sent whole to a single worker and
run there one after another; every other test is a scope of its own, so it goes to
whichever worker is free. Imported only in the xdist controller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling


class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist is untyped
    def __init__(
        self, config: pytest.Config, log: Any, group_of: Callable[[str], str | None]
    ) -> None:
        super().__init__(config, log)
        self.group_of = group_of

    def _split_scope(self, nodeid: str) -> str:
        group = self.group_of(nodeid)
        return f"group:{group}" if group else nodeid
