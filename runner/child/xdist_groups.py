"""A pytest-xdist scheduler that keeps each registry `group` on one worker.

Tests of entries that share a group form one scope, sent whole to a single worker and
run there one after another; every other test is a scope of its own, so it goes to
whichever worker is free. Imported only in the xdist controller.

When a worker dies, xdist's scope scheduler puts the scope back whole, the test that
crashed included, so every replacement worker runs it again and dies the same way. This
one puts back only what never ran: the crashed test is the runner's error, never re-run.
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

    def remove_node(self, node: Any) -> str | None:
        workload = self.assigned_work.pop(node)
        pending = [
            (scope, nodeid)
            for scope, unit in workload.items()
            for nodeid, completed in unit.items()
            if not completed
        ]
        if not pending:
            return None
        scope, crashitem = pending[0]
        workload[scope][crashitem] = True  # it ran, and took its worker down
        self.workqueue.update({s: u for s, u in workload.items() if not all(u.values())})
        for other in self.assigned_work:
            self._reschedule(other)
        return str(crashitem)
