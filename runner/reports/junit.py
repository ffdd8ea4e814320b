"""JUnit XML: one testcase per pytest test, one testsuite per registry entry."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from runner.results import EntryResult, Status, TestResult
from runner.verdict import Outcome

_ELEMENT = {
    Status.FAILED: "failure",
    Status.ERROR: "error",
    Status.TIMED_OUT: "error",
    Status.SKIPPED: "skipped",
    Status.XFAILED: "skipped",  # as pytest writes an expected failure
    Status.NOT_RUN: "skipped",
}


def render_junit(outcome: Outcome) -> str:
    root = ET.Element("testsuites", name="unified-test-runner")
    for result in outcome.run.entries:
        root.append(_suite(outcome, result))
    _count(root, list(root))
    root.set("time", f"{outcome.run.duration:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite(outcome: Outcome, result: EntryResult) -> ET.Element:
    entry = outcome.registry.by_id[result.entry_id]
    suite = ET.Element(
        "testsuite", name=entry.id, timestamp=outcome.run.started_at, time=f"{result.duration:.3f}"
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("id", entry.id),
        ("name", entry.name),
        ("tier", entry.tier),
        ("mrr", f"{entry.mrr:g}"),
        ("level", entry.level),
        ("owner", entry.owner),
        ("status", result.status),
        *((("environment", outcome.environment),) if outcome.environment else ()),
    ):
        ET.SubElement(props, "property", name=name, value=str(value))
    muted = result.status is Status.QUARANTINED  # its failures are carried, not failing
    cases = [_case(t, muted) for t in result.tests if t.status is not Status.DESELECTED]
    suite.extend(cases)
    _count(suite, cases)
    return suite


_COUNTED = (("failures", "failure"), ("errors", "error"), ("skipped", "skipped"))


def _count(parent: ET.Element, cases: list[ET.Element]) -> None:
    """Set tests/failures/errors/skipped from testcases, or sum them over testsuites."""
    if parent.tag == "testsuites":
        for attr in ("tests", *(a for a, _ in _COUNTED)):
            parent.set(attr, str(sum(int(s.get(attr, "0")) for s in cases)))
        return
    parent.set("tests", str(len(cases)))
    for attr, tag in _COUNTED:
        parent.set(attr, str(sum(c.find(tag) is not None for c in cases)))


def _case(test: TestResult, muted: bool = False) -> ET.Element:
    path, _, rest = test.nodeid.partition("::")
    parts = rest.split("::") if rest else [path]
    module = path.removesuffix(".py").replace("/", ".")
    classname = ".".join([module, *parts[:-1]])
    case = ET.Element(
        "testcase", classname=classname, name=parts[-1], file=path, time=f"{test.duration:.3f}"
    )
    tag = _ELEMENT.get(test.status)
    if tag is not None:
        message = test.message or str(test.status)
        if muted and tag in ("failure", "error"):  # a CI's reader would fail the build on it
            tag, message = "skipped", f"quarantined ({test.status}): {message}"
        child = ET.SubElement(case, tag, message=_attr(message))
        child.text = _text(test.longrepr)
        if test.status is Status.XFAILED:
            child.set("type", "pytest.xfail")
    _rerun_elements(case, test)
    if test.output:
        ET.SubElement(case, "system-out").text = _text(test.output)
    return case


def _rerun_elements(case: ET.Element, test: TestResult) -> None:
    """Surefire's flakyFailure (passed in the end) / rerunFailure (failed every time)."""
    tag = "flakyFailure" if test.status is Status.FLAKY else "rerunFailure"
    earlier = test.attempts[:-1] if test.status is not Status.FLAKY else test.attempts
    for attempt in earlier:
        if attempt.status in (Status.FAILED, Status.ERROR):
            ET.SubElement(case, tag, message=_attr(attempt.message), type=str(attempt.status))


def _attr(text: Any) -> str:
    return _text(str(text).splitlines()[0] if str(text) else "")[:500]


def _text(text: str) -> str:
    """XML 1.0 forbids most control characters; test output may hold any byte."""
    return "".join(ch if ch in "\t\n\r" or ord(ch) >= 0x20 else "\ufffd" for ch in text)
