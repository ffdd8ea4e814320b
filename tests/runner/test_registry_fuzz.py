"""Bad registries never produce a traceback: only RegistryError (exit 2) naming the file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import RegistryError
from runner.registry.load import load_registry
from runner.registry.yamlread import load_yaml
from tests.conftest import Project, entry

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "version",
        "levels",
        "tiers",
        "tests",
        "gates",
        "default_level",
        "suite_roots",
        "id",
        "tier",
        "mrr",
        "level",
        "path",
        "timeout",
        "includes",
        "name",
        "retries",
        "status",
    ]
)
DOCS = st.recursive(VALUES, lambda inner: st.dictionaries(KEYS, inner, max_size=6), max_leaves=30)


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "levels.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_registry(path, Path(tmp))
        except RegistryError as exc:
            assert str(exc).startswith(str(path))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS)
def test_random_documents_only_ever_raise_registry_errors(doc: object) -> None:
    _load(yaml.safe_dump(doc))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@ \n\t1.")), max_size=60))
def test_malformed_yaml_text_only_ever_raises_registry_errors(text: str) -> None:
    _load(text)


def test_alias_bomb_is_refused_quickly(project: Project) -> None:
    bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)
    ]
    project.write("config/levels.yaml", "\n".join(["version: 1", *bomb, "tests: *i"]) + "\n")
    proc = project.run("--list", timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_huge_and_binary_registries(project: Project) -> None:
    big = project.root / "config/levels.yaml"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"# " + b"x" * (50 * 2**20) + b"\n")
    proc = project.run("--list")
    assert proc.returncode == 2 and "the limit is 16 MiB" in proc.stderr
    big.write_bytes(b"version: 1\n\xff\xfe\x00\x01")
    proc = project.run("--list")
    assert proc.returncode == 2 and "not UTF-8" in proc.stderr


def test_pattern_that_looks_like_an_option_never_reaches_pytest(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.registry([entry("a", "tests/test_a.py")])
    proc = project.run("--pattern", "-p evil")
    assert proc.returncode == 3 and "no registered test matches" in proc.stderr


@pytest.mark.parametrize("flag", ["--json", "--junit", "--html", "--markdown"])
def test_unwritable_report_path_is_a_broken_run(project: Project, flag: str) -> None:
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.write("not-a-dir", "a file where a directory should be\n")
    project.registry([entry("a", "tests/test_a.py")])
    other = ("--junit", "ok.xml") if flag == "--json" else ("--json", "ok.xml")
    proc = project.run(flag, "not-a-dir/report.out", *other)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "cannot write not-a-dir/report.out" in proc.stderr
    assert (project.root / "ok.xml").stat().st_size > 0  # the other report is still written


@settings(max_examples=300, deadline=None)
@given(DOCS)
def test_line_tracking_loader_reads_what_safe_load_reads(doc: object) -> None:
    text = yaml.safe_dump(doc)
    ours = _ours(text)
    if ours is RegistryError:
        return  # duplicate keys and the like: refused, where safe_load would guess
    expected = yaml.safe_load(text)
    assert repr(ours) == repr(expected)  # repr: NaN is never equal to itself


@pytest.mark.parametrize(
    "word",
    [
        "yes",
        "No",
        "TRUE",
        "off",
        "null",
        "Null",
        "yEs",
        "nan",
        "Infinity",
        "onion",
        "nullable",
        "y",
        "n",
    ],
)
def test_plain_words_resolve_like_yaml_1_1(tmp_path: Path, word: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(f"k: {word}\n", encoding="utf-8")
    assert load_yaml(path) == yaml.safe_load(f"k: {word}\n")


TOKENS = st.one_of(
    st.sampled_from(
        [
            "010",
            "0x1F",
            "0o17",
            "0b101",
            "1_000",
            "+12",
            "-0",
            "0",
            "007",
            "1e3",
            "6.5",
            "-.5",
            ".inf",
            "-.INF",
            ".NaN",
            "~",
            "",
            "2026-11-25",
            "2026-11-25 10:00:00",
            "'12'",
            '"yes"',
            "!!str 12",
            "! 12",
            "!!int '7'",
            "&a 5",
            "*a",
            "<<",
            "=",
            "1:20",
            "190:20:30",
            "Yes",
            "OFF",
            "y",
            "|\n  block\n",
            ">-\n  folded\n",
            "[1, two]",
            "{a: 1}",
            "? complex",
            "- nested",
        ]
    ),
    st.text(alphabet="abz019_.:-+ ~'\"!&*#", max_size=6),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(TOKENS, min_size=1, max_size=6))
def test_the_fast_path_reads_every_scalar_as_safe_load_does(tokens: list[str]) -> None:
    """Hand-written YAML, not safe_dump's: octal, hex, sexagesimal, tags, anchors,
    merge keys, block scalars. The fast path answers or hands over; never differs."""
    text = "".join(f"k{i}: {token}\n" for i, token in enumerate(tokens))
    try:  # libyaml's safe loader: pure-Python PyYAML reads a bare `!` tag differently
        expected = yaml.load(text, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, ValueError, OverflowError):
        expected = RegistryError
    assert repr(_ours(text)) == repr(expected), text


def _ours(text: str) -> object:
    """What the runner's loader reads from `text`; the RegistryError class if it refuses."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            return load_yaml(path)
        except RegistryError:
            return RegistryError
