"""The fact memory: every fact the learner took from the conversation, in SQLite (each change one transaction, so
a kill leaves the last committed state).

Importance of a fact at turn t (seen `n` times, last at turn `l`), by `memory.importance`:

    repetition  n
    recency     1 / (1 + max(0, t − l − decay_after))    (full while the fact is fresher than decay_after)
    hybrid      n · (1 + 1 / (1 + t − l)) / 2

times the decay factor `decay_rate ** max(0, t − l − decay_after)`: a fact unseen for long fades, and is removed
once its importance falls below `min_importance`. At more than `max_facts` facts, `memory.policy` picks which goes:
fifo the first stored, lru the least recently seen, importance the least important, hybrid the lowest
importance × (1 + n) / (1 + t − l). Ties go to the smaller id. Worked example in the tests.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from ..config.online import MemoryConfig
from ..errors import UserError
from .detector import Fact

COLUMNS = ("id", "key", "statement", "pattern", "relation", "subject", "value", "entities", "confidence", "forms",
           "times_seen", "first_turn", "last_turn", "updates", "rejected", "learned")


def importance(row: dict, turn: int, cfg: MemoryConfig) -> float:
    """The fact's importance at `turn` (module docstring)."""
    n, since = row["times_seen"], max(0, turn - row["last_turn"])
    recency = 1.0 / (1 + since)
    fresh = 1.0 / (1 + max(0, since - cfg.decay_after))
    score = {"repetition": float(n), "recency": fresh, "hybrid": n * (1 + recency) / 2}[cfg.importance]
    return score * cfg.decay_rate ** max(0, since - cfg.decay_after)


def eviction_score(row: dict, turn: int, cfg: MemoryConfig) -> tuple:
    """Sort key: the fact with the smallest key is evicted first."""
    since = max(0, turn - row["last_turn"])
    score = {"fifo": row["first_turn"], "lru": row["last_turn"], "importance": importance(row, turn, cfg),
             "hybrid": importance(row, turn, cfg) * (1 + row["times_seen"]) / (1 + since)}[cfg.policy]
    return score, row["id"]


class FactMemory:
    """Facts in `path` (SQLite; ':memory:' for a throwaway one). Thread-safe: the learner writes, the server reads."""

    def __init__(self, path: str | Path, cfg: MemoryConfig):
        self.cfg = cfg
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._con.row_factory = sqlite3.Row
        try:
            with self._lock, self._con:
                self._con.execute(
                    "CREATE TABLE IF NOT EXISTS facts (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE, "
                    "statement TEXT, pattern TEXT, relation TEXT, subject TEXT, value TEXT, entities TEXT, "
                    "confidence REAL, forms TEXT, times_seen INTEGER, first_turn INTEGER, last_turn INTEGER, "
                    "updates INTEGER DEFAULT 0, rejected INTEGER DEFAULT 0, learned INTEGER DEFAULT 0)")
        except sqlite3.DatabaseError as e:
            self._con.close()
            raise UserError(f"{path} is not a readable fact memory ({e}); move it away to start the memory afresh "
                            "(the learned adapter stays)") from None

    def close(self) -> None:
        self._con.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[dict]:
        rows = [dict(r) for r in self._con.execute(sql, args)]
        for r in rows:
            r["entities"], r["forms"] = json.loads(r["entities"]), [tuple(f) for f in json.loads(r["forms"])]
        return rows

    def add(self, fact: Fact, turn: int) -> dict:
        """Store `fact` (a fact with the same key is updated: new value, one more time seen); return its row."""
        with self._lock, self._con:
            old = self._con.execute("SELECT id, value, times_seen FROM facts WHERE key = ?", (fact.key,)).fetchone()
            values = (fact.statement, fact.pattern, fact.relation, fact.subject, fact.value, json.dumps(fact.entities),
                      fact.confidence, json.dumps(fact.forms))
            if old:
                seen = old["times_seen"] + 1 if old["value"].lower() == fact.value.lower() else 1  # a new value: anew
                self._con.execute("UPDATE facts SET statement=?, pattern=?, relation=?, subject=?, value=?, entities=?, "
                                  "confidence=?, forms=?, times_seen=?, last_turn=? WHERE id=?",
                                  (*values, seen, turn, old["id"]))
                fid = old["id"]
            else:
                fid = self._con.execute("INSERT INTO facts (key, statement, pattern, relation, subject, value, entities, "
                                        "confidence, forms, times_seen, first_turn, last_turn) VALUES (?,?,?,?,?,?,?,?,?,1,?,?)",
                                        (fact.key, *values, turn, turn)).lastrowid
        self.tidy(turn)
        return self.get(fid) or {}

    def record_update(self, fid: int, kept: bool, learned: bool) -> None:
        with self._lock, self._con:
            self._con.execute("UPDATE facts SET updates = updates + 1, rejected = rejected + ?, learned = ? WHERE id = ?",
                              (0 if kept else 1, int(learned), fid))

    def get(self, fid: int) -> dict | None:
        with self._lock:
            rows = self._rows("SELECT * FROM facts WHERE id = ?", (fid,))
        return rows[0] if rows else None

    def all(self) -> list[dict]:
        with self._lock:
            return self._rows("SELECT * FROM facts ORDER BY id")

    def remove(self, fid: int) -> bool:
        with self._lock, self._con:
            return self._con.execute("DELETE FROM facts WHERE id = ?", (fid,)).rowcount > 0

    def clear(self) -> None:
        with self._lock, self._con:
            self._con.execute("DELETE FROM facts")

    def tidy(self, turn: int) -> list[int]:
        """Remove decayed facts, then evict down to `max_facts`; return the removed ids."""
        rows = self.all()
        gone = [r["id"] for r in rows if importance(r, turn, self.cfg) < self.cfg.min_importance]
        left = sorted((r for r in rows if r["id"] not in gone), key=lambda r: eviction_score(r, turn, self.cfg))
        gone += [r["id"] for r in left[:max(0, len(left) - self.cfg.max_facts)]]
        if gone:
            with self._lock, self._con:
                self._con.executemany("DELETE FROM facts WHERE id = ?", [(i,) for i in gone])
        return gone

    def top(self, n: int, turn: int) -> list[dict]:
        """The `n` most important facts at `turn` (what a replay trains)."""
        return sorted(self.all(), key=lambda r: (-importance(r, turn, self.cfg), r["id"]))[:n]
