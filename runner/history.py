"""Run history in a local SQLite file: protected MRR over time, flakiest and slowest tests."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from runner.baseline import Baseline
from runner.errors import UsageError
from runner.recall import observed
from runner.results import Status
from runner.verdict import Outcome

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT,
    level TEXT, exit_code INTEGER, duration_s REAL, registered REAL, protected REAL,
    at_risk REAL, unverified REAL);
CREATE TABLE IF NOT EXISTS results (run_id INTEGER REFERENCES runs(id), entry_id TEXT,
    status TEXT, duration_s REAL, attempts INTEGER);
"""


# columns added since the first schema: an older history gains them when next written
ADDED = {"recall": "REAL", "recall_mrr": "REAL", "commit_sha": "TEXT", "whole": "INTEGER"}


def _columns(db: sqlite3.Connection) -> set[str]:
    """The columns `runs` has: a history written by an older runner lacks the newer ones."""
    return {row[1] for row in db.execute("PRAGMA table_info(runs)")}


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=2.0)  # a locked database: a warning, not a wait
    try:
        db.executescript(SCHEMA)
        have = _columns(db)
        for name, kind in ADDED.items():
            if name not in have:
                db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    except sqlite3.Error:
        db.close()
        raise
    return db


INSERT_RUN = (
    "INSERT INTO runs (started_at, level, exit_code, duration_s, registered, "
    "protected, at_risk, unverified, recall, recall_mrr, commit_sha, whole) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
RUN_KEYS: tuple[str, ...] = ("id", "started_at", "level", "exit_code", "protected")
RUN_KEYS += ("registered", "at_risk", *ADDED)


def _runs_query(db: sqlite3.Connection) -> str:
    """The runs, newest first; columns an older history lacks read as null."""
    have = _columns(db)
    columns = [k if k in have or k not in ADDED else f"NULL AS {k}" for k in RUN_KEYS]
    return f"SELECT {', '.join(columns)} FROM runs ORDER BY id DESC LIMIT ?"


FLAKIEST = (
    "SELECT entry_id, SUM(status = ?) AS flaky, COUNT(DISTINCT status) AS outcomes, "
    "COUNT(*) FROM results GROUP BY entry_id HAVING flaky > 0 OR outcomes > 1 "
    "ORDER BY flaky DESC, outcomes DESC LIMIT 10"
)
# an entry that passed and failed on one commit, or was flaky there, within the last runs
CANDIDATES = (
    "SELECT r.entry_id, u.commit_sha, GROUP_CONCAT(DISTINCT r.status), COUNT(*) "
    "FROM results r JOIN runs u ON u.id = r.run_id "
    "WHERE u.commit_sha IS NOT NULL AND u.id > (SELECT MAX(id) FROM runs) - ? "
    "GROUP BY r.entry_id, u.commit_sha "
    "HAVING (SUM(r.status IN ('passed', 'flaky')) > 0 "
    "AND SUM(r.status IN ('failed', 'error', 'timed_out')) > 0) OR SUM(r.status = 'flaky') > 0 "
    "ORDER BY COUNT(*) DESC, r.entry_id LIMIT 20"
)
SLOWEST = (
    "SELECT entry_id, AVG(duration_s), MAX(duration_s) FROM results "
    "WHERE duration_s > 0 GROUP BY entry_id ORDER BY 2 DESC LIMIT 10"
)


def append(path: Path, outcome: Outcome, commit: str | None = None, whole: bool = True) -> int:
    """Record one run (`commit`: the code it ran, when known; `whole`: the level as a whole,
    not a part picked by --id, --changed, a shard...: only those are baselines and trend);
    returns its id."""
    total, run = outcome.summary.total, outcome.run
    found = observed(outcome)
    row = (
        run.started_at,
        run.level,
        outcome.exit_code,
        run.duration,
        total.registered_mrr,
        total.protected,
        total.at_risk,
        total.unverified,
        found.recall if found else None,
        found.recall_mrr if found else None,
        commit,
        int(whole),
    )
    with contextlib.closing(_connect(path)) as db, db:
        run_id = int(db.execute(INSERT_RUN, row).lastrowid or 0)
        db.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?)", _results(run_id, outcome))
    return run_id


def _results(run_id: int, outcome: Outcome) -> list[tuple[Any, ...]]:
    return [
        (
            run_id,
            r.entry_id,
            r.status,
            r.duration,
            max((len(t.attempts) for t in r.tests), default=0),
        )
        for r in outcome.run.entries
    ]


LAST_RUN = "SELECT id, started_at, protected FROM runs WHERE level = ? AND {whole} "
LAST_RUN += "ORDER BY id DESC LIMIT 1"
STATUSES = "SELECT entry_id, status FROM results WHERE run_id = ?"


def last_run(path: Path, level: str) -> Baseline | None:
    """The last run of `level` on record, as a baseline; None when there is none (or the
    history cannot be read: a comparison is a courtesy, never a reason to stop)."""
    if not _readable(path):
        return None
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=2.0)) as db:
            row = db.execute(LAST_RUN.format(whole=_whole(db)), (level,)).fetchone()
            statuses = db.execute(STATUSES, (row[0],)).fetchall() if row else []
    except sqlite3.Error:
        return None
    if row is None:
        return None
    source = f"the last {level} run on record (#{row[0]}, {row[1]})"
    return Baseline(source=source, protected=float(row[2]), statuses=dict(statuses))


TREND = "SELECT started_at, protected, registered FROM runs WHERE level = ? AND {whole} "
TREND += "ORDER BY id DESC LIMIT ?"


def _readable(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a directory on the way that may not be searched
        return False


def _whole(db: sqlite3.Connection) -> str:
    """Runs of the whole level (a history from before `whole` was kept: every run)."""
    return "COALESCE(whole, 1) = 1" if "whole" in _columns(db) else "1 = 1"


def trend(path: Path, level: str, last: int = 30) -> tuple[tuple[str, float, float], ...]:
    """(started_at, protected, registered) of the last runs of `level`, oldest first;
    empty when there is no readable history (a chart is a courtesy)."""
    if not _readable(path):
        return ()
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=2.0)) as db:
            rows = db.execute(TREND.format(whole=_whole(db)), (level, last)).fetchall()
    except sqlite3.Error:
        return ()
    return tuple((str(s), float(p or 0), float(r or 0)) for s, p, r in rows[::-1])


def _nothing() -> dict[str, Any]:
    return {"runs": [], "flakiest": [], "slowest": [], "quarantine_candidates": []}


def summary(path: Path, last: int = 20) -> dict[str, Any]:
    """The history's figures; a file that is not a readable history is a UsageError."""
    if not path.exists():
        return _nothing()
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=2.0)) as db:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
                return _nothing()  # an empty database (a 0-byte file, say): no runs yet
            runs = db.execute(_runs_query(db), (last,)).fetchall()
            flaky = db.execute(FLAKIEST, (Status.FLAKY,)).fetchall()
            slow = db.execute(SLOWEST).fetchall()
            candidates = _candidates(db, last)
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: cannot read the run history: {exc}") from None
    return {
        "runs": [dict(zip(RUN_KEYS, r, strict=True)) for r in runs[::-1]],
        "flakiest": [
            {"id": f[0], "flaky_runs": f[1], "distinct_outcomes": f[2], "runs": f[3]} for f in flaky
        ],
        "slowest": [{"id": s[0], "mean_s": round(s[1], 3), "max_s": round(s[2], 3)} for s in slow],
        "quarantine_candidates": candidates,
    }


def _candidates(db: sqlite3.Connection, last: int) -> list[dict[str, Any]]:
    """Entries whose outcome flipped on the same code in the last `last` runs: what a
    quarantine is for. A history from before commits were recorded has none."""
    if "commit_sha" not in _columns(db):
        return []
    rows = db.execute(CANDIDATES, (last,)).fetchall()
    return [
        {"id": e, "commit": c, "outcomes": sorted(str(s).split(",")), "runs": n}
        for e, c, s, n in rows
    ]
