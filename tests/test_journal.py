"""The spend journal against a real SQLite ledger: what is recorded is settled once, in order, however many
times it is replayed, by the process that wrote it or, when that died, by another; bounded in bytes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from plugin.limits.journal import Journal, Settlement
from plugin.limits.ledger import Budget, Limits, SqliteLedger, StoreUnavailable

COUNTER = "mpilot:{key:journal}:nanos"
TEAM = "mpilot:{team:journal}:nanos"


def settlement(n: int, amount: int = 10) -> Settlement:
    return Settlement(f"call-{n}", None, amount, ((COUNTER, 3600), (TEAM, 3600)))


@pytest.fixture
def ledger(tmp_path: Path) -> SqliteLedger:
    SqliteLedger.check(tmp_path / "ledger.sqlite3")
    return SqliteLedger(tmp_path / "ledger.sqlite3")


class Failing:
    """A ledger whose store goes down after `answers` settlements."""

    def __init__(self, ledger: SqliteLedger, answers: int) -> None:
        self.ledger, self.answers, self.settled = ledger, answers, []

    async def settle(self, reservation: str | None, amount: int, counters: object, call: str | None = None) -> None:
        if len(self.settled) >= self.answers:
            raise StoreUnavailable("test ledger: down")
        await self.ledger.settle(reservation, amount, counters, call)  # type: ignore[arg-type]
        self.settled.append(call)


def test_recorded_spend_is_settled_once_in_order(tmp_path: Path, ledger: SqliteLedger) -> None:
    journal = Journal(tmp_path / "journal", 1 << 20)
    for n in range(5):
        assert journal.record(settlement(n, amount=n + 1))
    assert journal.record(settlement(0, amount=1))  # the same call again: kept once
    assert journal.pending == 5

    async def scenario() -> None:
        failing = Failing(ledger, answers=2)
        with pytest.raises(StoreUnavailable):
            await journal.replay(failing)  # type: ignore[arg-type]
        assert failing.settled == ["call-0", "call-1"] and journal.pending == 3
        assert await ledger.spent(COUNTER) == 1 + 2
        assert await journal.replay(ledger) == 3
        assert await journal.replay(ledger) == 0
        assert await ledger.spent(COUNTER) == 15 and await ledger.spent(TEAM) == 15

    asyncio.run(scenario())
    assert journal.pending == 0
    (own,) = (tmp_path / "journal").glob("journal-*.jsonl")
    assert own.stat().st_size == 0  # emptied once all it held was settled


def test_a_settlement_recorded_and_settled_directly_too_counts_once(tmp_path: Path, ledger: SqliteLedger) -> None:
    """A step that timed out may have landed: its replay, under the call's name, is not counted again."""
    journal = Journal(tmp_path / "journal", 1 << 20)
    journal.record(settlement(1))

    async def scenario() -> None:
        await ledger.settle(None, 10, settlement(1).counters, "call-1")
        await journal.replay(ledger)
        assert await ledger.spent(COUNTER) == 10

    asyncio.run(scenario())


def test_a_reservation_is_taken_back_when_replayed(tmp_path: Path, ledger: SqliteLedger) -> None:
    async def scenario() -> None:
        admission = await ledger.admit(Limits(budget=Budget(COUNTER, 100, 40, 600)))
        journal = Journal(tmp_path / "journal", 1 << 20)
        journal.record(Settlement("call-r", admission.reservation, 25, ((COUNTER, 3600),)))
        await journal.replay(ledger)
        after = await ledger.admit(Limits(budget=Budget(COUNTER, 100, 75, 600)))
        assert after.admitted and (after.spent, after.held) == (25, 0)

    asyncio.run(scenario())


WRITER = """
import os, sys
from pathlib import Path
from plugin.limits.journal import Journal, Settlement
journal = Journal(Path(sys.argv[1]), 1 << 20)
for n in range(int(sys.argv[2])):
    journal.record(Settlement(f"dead-{os.getpid()}-{n}", None, 100, (("mpilot:{key:journal}:nanos", 3600),)))
print("recorded", flush=True)
if sys.argv[3] == "stay":
    sys.stdin.readline()
"""


def writer(folder: Path, count: int, stay: bool) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(count), "stay" if stay else "go"],
                               stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parent.parent)
    assert process.stdout is not None and process.stdout.readline().strip() == "recorded"
    return process


def test_a_dead_process_journal_is_settled_by_the_next_and_a_living_one_left_to_its_owner(
        tmp_path: Path, ledger: SqliteLedger) -> None:
    folder = tmp_path / "journal"
    writer(folder, 3, stay=False).wait(10)  # a proxy that journalled, then died before the store was back
    living = writer(folder, 2, stay=True)
    journal = Journal(folder, 1 << 20)
    try:
        assert asyncio.run(journal.replay(ledger)) == 3
        assert asyncio.run(journal.replay(ledger)) == 0
        assert asyncio.run(ledger.spent(COUNTER)) == 300
        (left,) = folder.glob("journal-*.jsonl")  # the living process's own; the dead one's is gone
        assert len(left.read_text().splitlines()) == 2
    finally:
        assert living.stdin is not None
        living.stdin.write("\n")
        living.stdin.close()
        living.wait(10)
    assert asyncio.run(Journal(folder, 1 << 20).replay(ledger)) == 2  # now that it has died too
    assert asyncio.run(ledger.spent(COUNTER)) == 500 and not list(folder.glob("journal-*.jsonl"))


def test_an_orphan_cut_short_is_resumed_where_it_stopped_and_torn_lines_are_skipped(
        tmp_path: Path, ledger: SqliteLedger) -> None:
    folder = tmp_path / "journal"
    writer(folder, 4, stay=False).wait(10)
    (orphan,) = folder.glob("journal-*.jsonl")
    with orphan.open("ab") as file:
        file.write(b'{"settle": {"call": "torn", "reserv')  # a machine that lost power mid-line
    journal = Journal(folder, 1 << 20)
    failing = Failing(ledger, answers=1)
    with pytest.raises(StoreUnavailable):
        asyncio.run(journal.replay(failing))  # type: ignore[arg-type]
    (done,) = [json.loads(line) for line in orphan.read_text().splitlines()[-1:]]
    assert done["done"].startswith("dead-") and done["done"].endswith("-0")
    assert asyncio.run(journal.replay(ledger)) == 3
    assert asyncio.run(ledger.spent(COUNTER)) == 400


def test_a_full_journal_refuses_and_says_so(tmp_path: Path) -> None:
    line = len(settlement(0).line())
    journal = Journal(tmp_path / "journal", 3 * line)
    assert [journal.record(settlement(n)) for n in range(4)] == [True, True, True, False]
    assert journal.pending == 3
    blocked = Journal(tmp_path / "a-file" / "journal", 1 << 20)
    (tmp_path / "a-file").write_text("not a folder")
    assert blocked.record(settlement(0)) is False and blocked.pending == 0


def test_a_new_process_settles_the_journals_it_finds_at_its_first_request(tmp_path: Path, ledger: SqliteLedger,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy restarted during an outage: its first request (any, the master key's too) asks the store, and
    the store's first answer settles what the process before it journalled."""
    from plugin import host
    from plugin.auth.hook import MPilotAuth
    from plugin.limits.guard import StoreGuard

    folder = tmp_path / "journal"
    writer(folder, 2, stay=False).wait(10)
    monkeypatch.setattr(host, "ledger_file", lambda path: folder if "journal" in path else tmp_path / path)
    auth = MPilotAuth({})
    auth._ledger = StoreGuard(ledger, 1.0, auth._store_changed)

    async def scenario() -> None:
        auth.first_request()
        auth.first_request()  # once per process
        for _ in range(100):
            if await ledger.spent(COUNTER) == 200:
                break
            await asyncio.sleep(0.02)
        assert await ledger.spent(COUNTER) == 200
        while auth._replays:
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert not list(folder.glob("journal-*.jsonl"))
