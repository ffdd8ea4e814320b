from __future__ import annotations

from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite

from tests.conftest import Project, entry

MIX = """
    import pytest

    def test_ok():
        print("noise")

    def test_fail():
        print("captured \\x01 output")
        assert False, "nope <&>"

    @pytest.fixture
    def broken():
        raise RuntimeError("setup broke")

    def test_error(broken):
        pass

    @pytest.mark.xfail(reason="known")
    def test_xfail():
        assert False

    class TestGroup:
        @pytest.mark.parametrize("n", [1, 2])
        def test_param(self, n):
            pass
"""


def _run(project: Project) -> TestSuite:
    project.write("tests/test_mix.py", MIX)
    project.registry(
        [entry("mix", "tests/test_mix.py", tier=2, mrr=1234, owner="qa")],
        tiers={2: {"name": "Stable", "retries": 0}},
        gates={},
    )
    assert project.run("--junit", "out/run.xml").returncode == 1
    assert "\x01" not in (project.root / "out/run.xml").read_text()
    (suite,) = list(JUnitXml.fromfile(str(project.root / "out/run.xml")))
    assert isinstance(suite, TestSuite)
    return suite


def test_junit_is_read_by_a_real_parser(project: Project) -> None:
    suite = _run(project)
    assert suite.name == "mix"
    props = {p.name: p.value for p in suite.properties()}  # type: ignore[no-untyped-call]
    assert (props["tier"], props["mrr"], props["owner"]) == ("2", "1234", "qa")
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (6, 1, 1, 1)
    cases = {c.name: c for c in suite}
    assert set(cases) == {
        "test_ok",
        "test_fail",
        "test_error",
        "test_xfail",
        "test_param[1]",
        "test_param[2]",
    }
    assert isinstance(cases["test_fail"].result[0], Failure)
    assert "nope <&>" in (cases["test_fail"].result[0].message or "")
    assert isinstance(cases["test_error"].result[0], Error)
    assert isinstance(cases["test_xfail"].result[0], Skipped)
    assert cases["test_xfail"].result[0].message == "known"  # the reason, as pytest writes it
    assert cases["test_ok"].is_passed
    assert cases["test_param[1]"].classname == "tests.test_mix.TestGroup"
