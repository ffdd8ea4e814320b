"""`--env NAME`: profiles point the suites somewhere else; secrets come only from the
environment, and the report says which environment it ran against."""

from __future__ import annotations

import pytest

from tests.conftest import Project, entry

pytestmark = pytest.mark.slow

ENVIRONMENTS = {
    "local": {"description": "launch the platform here"},
    "staging": {
        "description": "the deployed staging platform",
        "variables": {"APEX_AUTH_URL": "https://auth.staging.test", "APEX_REGION": "${REGION}"},
        "secrets": ["APEX_SERVICE_TOKEN"],
    },
}
PROBE = """
import os

def test_sees_the_profile():
    assert os.environ["APEX_AUTH_URL"] == "https://auth.staging.test"
    assert os.environ["APEX_REGION"] == "eu-1"
    assert os.environ["APEX_SERVICE_TOKEN"] == "from-the-environment"
"""


@pytest.fixture
def staged(project: Project) -> Project:
    project.write("tests/test_probe.py", PROBE)
    project.registry([entry("probe", "tests/test_probe.py")], environments=ENVIRONMENTS)
    return project


REPORTS = {"--json": "run.json", "--markdown": "run.md", "--html": "run.html", "--junit": "run.xml"}


def test_a_profile_sets_variables_and_the_report_names_it(staged: Project) -> None:
    staged.env.update({"REGION": "eu-1", "APEX_SERVICE_TOKEN": "from-the-environment"})
    flags = [arg for pair in REPORTS.items() for arg in pair]
    proc = staged.run("--env", "staging", *flags, "--no-history")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "environment `staging`" in (staged.root / "run.md").read_text()
    assert "environment staging</h1>" in (staged.root / "run.html").read_text()
    assert 'name="environment" value="staging"' in (staged.root / "run.xml").read_text()
    assert "environment 'staging': the deployed staging platform" in proc.stdout
    recorded = staged.report()["run"]["environment"]
    assert recorded == {
        "name": "staging",
        "description": "the deployed staging platform",
        "variables": ["APEX_AUTH_URL", "APEX_REGION"],
        "secrets": ["APEX_SERVICE_TOKEN"],
    }
    for name in REPORTS.values():
        assert "from-the-environment" not in (staged.root / name).read_text()


def test_a_missing_secret_or_variable_is_a_usage_error(staged: Project) -> None:
    staged.env.update({"REGION": "eu-1"})
    proc = staged.run("--env", "staging")
    assert proc.returncode == 2 and "needs $APEX_SERVICE_TOKEN set" in proc.stderr
    staged.env.update({"APEX_SERVICE_TOKEN": "x"})
    staged.env.pop("REGION")
    proc = staged.run("--env", "staging")
    assert proc.returncode == 2 and "needs $REGION set" in proc.stderr
    proc = staged.run("--env", "prod")
    assert proc.returncode == 2 and "unknown environment 'prod'" in proc.stderr


def test_a_secret_written_in_the_registry_is_refused(project: Project) -> None:
    project.write("tests/test_probe.py", PROBE)
    leaky = {"staging": {"variables": {"APEX_JWT_SECRET": "hunter2"}}}
    project.registry([entry("probe", "tests/test_probe.py")], environments=leaky)
    proc = project.run("plan")
    assert proc.returncode == 2 and "looks like a secret" in proc.stderr
    assert "hunter2" not in proc.stderr


def test_plan_json_records_the_environment(staged: Project) -> None:
    proc = staged.run("plan", "--env", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"name": "local"' in proc.stdout
