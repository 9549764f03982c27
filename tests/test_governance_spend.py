"""Spend caps with reservations: per key, agent, owner and global day, in USD and tokens; 50-way
races (threads, asyncio, processes) never push spend over a cap; refusals name cap and spend."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading

import pytest

from sovereign.errors import SpendCapExceededError
from sovereign.governance.audit import AuditLog
from sovereign.governance.keys import KeyStore, Scopes
from sovereign.governance.spend import CapExceededError, SpendGuard
from sovereign.store import Database


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "spend.db")
    yield database
    database.close()


@pytest.fixture
def guard(db):
    return SpendGuard(db, audit=AuditLog(db))


def settled_usd(db) -> float:
    return db.query_one("SELECT COALESCE(SUM(usd), 0) FROM spend_reservations WHERE status = 'settled'")[0]


def test_reserve_settle_release(guard):
    guard.set_cap("agent", "bot", "day", max_usd=1.0, max_tokens=1000)
    r = guard.reserve("k1", "alice", "bot", 0.6, 600)
    status = guard.status(agent_id="bot")
    assert status.caps[0].reserved_usd == pytest.approx(0.6) and status.remaining_usd == pytest.approx(0.4)
    with pytest.raises(CapExceededError):
        guard.reserve("k1", "alice", "bot", 0.5, 10)
    guard.settle(r, 0.1, 100)  # the actual cost frees the rest of the reservation
    r2 = guard.reserve("k1", "alice", "bot", 0.5, 10)
    guard.release(r2)
    status = guard.status(agent_id="bot")
    assert status.today_usd == pytest.approx(0.1) and status.today_tokens == 100
    assert status.remaining_usd == pytest.approx(0.9) and status.remaining_tokens == 900


def test_refusal_names_cap_and_current_spend(guard):
    guard.set_cap("owner", "alice", "day", max_usd=0.5)
    r = guard.reserve(None, "alice", None, 0.3, 0)
    guard.settle(r, 0.3, 0)
    with pytest.raises(SpendCapExceededError) as err:
        guard.reserve("k9", "alice", "bot", 0.25, 0)
    exc = err.value
    assert exc.status_code == 429 and exc.code == "spend_cap_exceeded"
    assert "daily cap on owner 'alice'" in exc.message and "$0.5" in exc.message and "$0.3" in exc.message
    assert exc.to_dict()["spent"] == pytest.approx(0.3) and exc.to_dict()["limit"] == 0.5
    refused = guard.audit.entries(kind="spend.refused")
    assert refused and refused[-1].data["subject"] == "alice"


def test_token_caps(guard):
    guard.set_cap("key", "k1", "total", max_tokens=100)
    guard.reserve("k1", None, None, 0.0, 60)
    with pytest.raises(CapExceededError, match="token cap exceeded.*100 tokens"):
        guard.reserve("k1", None, None, 0.0, 41)
    guard.reserve("k1", None, None, 0.0, 40)
    guard.reserve("k2", None, None, 0.0, 1000)  # another key is not capped


def test_global_daily_cap_applies_to_everyone(guard):
    guard.set_cap("global", None, "day", max_usd=1.0)
    guard.reserve("a", "x", None, 0.7, 0)
    with pytest.raises(CapExceededError, match="daily cap on all spend"):
        guard.reserve("b", "y", "z", 0.4, 0)


def test_key_max_spend_scope_is_a_cap(db):
    keys = KeyStore(db)
    keys.create_identity("alice")
    key_id, _ = keys.create_key("alice", scopes=Scopes(max_spend_usd=0.25))
    guard = SpendGuard(db)
    guard.settle(guard.reserve(key_id, None, None, 0.2, 0), 0.2, 0)
    with pytest.raises(CapExceededError, match=f"total cap on key '{key_id}'"):
        guard.reserve(key_id, None, None, 0.1, 0)


def test_removing_a_cap_and_listing(guard):
    guard.set_cap("agent", "bot", "total", max_usd=1.0)
    assert [c.subject for c in guard.caps()] == ["bot"]
    guard.set_cap("agent", "bot", "total")
    assert guard.caps() == []


def test_stale_reservations_stop_holding_budget(db):
    guard = SpendGuard(db, reservation_ttl_s=-1)  # already expired: a crashed process's reservation
    guard.set_cap("agent", "bot", "day", max_usd=1.0)
    guard.reserve(None, None, "bot", 1.0, 0)
    guard.reserve(None, None, "bot", 1.0, 0)


def test_hold_releases_on_failure(guard):
    guard.set_cap("agent", "bot", "day", max_usd=1.0)
    with pytest.raises(RuntimeError):
        with guard.hold(key_id=None, owner_id=None, agent_id="bot", max_cost_usd=1.0, max_tokens=0):
            raise RuntimeError("backend down")
    with guard.hold(key_id=None, owner_id=None, agent_id="bot", max_cost_usd=1.0, max_tokens=0) as held:
        held.settle(0.5, 10)
    assert guard.status(agent_id="bot").today_usd == pytest.approx(0.5)


CAP, PER_CALL, N = 1.0, 0.07, 50  # 50 requests of $0.07 against $1.00: at most 14 may pass


def _race_thread(guard: SpendGuard, results: list, barrier: threading.Barrier) -> None:
    barrier.wait()
    try:
        r = guard.reserve("k1", "alice", "bot", PER_CALL, 100)
    except CapExceededError:
        results.append("refused")
        return
    guard.settle(r, PER_CALL, 100)
    results.append("ok")


@pytest.mark.parametrize("scope,subject", [("key", "k1"), ("agent", "bot"), ("owner", "alice"), ("global", None)])
def test_fifty_threads_never_exceed_a_cap(db, scope, subject):
    guard = SpendGuard(db)
    guard.set_cap(scope, subject, "day", max_usd=CAP)
    results: list[str] = []
    barrier = threading.Barrier(N)
    threads = [threading.Thread(target=_race_thread, args=(guard, results, barrier)) for _ in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == int(CAP // PER_CALL) == 14
    assert results.count("refused") == N - 14
    assert settled_usd(db) <= CAP + 1e-9


def test_fifty_asyncio_requests_never_exceed_a_cap(db):
    guard = SpendGuard(db)
    guard.set_cap("agent", "bot", "day", max_usd=CAP, max_tokens=10_000)

    async def request() -> str:
        try:
            reservation = await asyncio.to_thread(guard.reserve, "k1", "alice", "bot", PER_CALL, 300)
        except CapExceededError:
            return "refused"
        await asyncio.sleep(0.01)  # the model call
        await asyncio.to_thread(guard.settle, reservation, PER_CALL * 0.5, 250)
        return "ok"

    async def main() -> list[str]:
        return await asyncio.gather(*(request() for _ in range(N)))

    results = asyncio.run(main())
    status = guard.status(agent_id="bot")
    assert status.today_usd <= CAP + 1e-9 and status.today_tokens <= 10_000
    assert results.count("ok") >= 14  # settled below the worst case frees budget for later ones
    assert "refused" in results


def _race_process(path: str, n: int, out) -> None:
    database = Database(path)
    guard = SpendGuard(database)
    ok = 0
    for _ in range(n):
        try:
            r = guard.reserve("k1", "alice", "bot", PER_CALL, 0)
        except CapExceededError:
            continue
        guard.settle(r, PER_CALL, 0)
        ok += 1
    out.put(ok)
    database.close()


def test_fifty_requests_across_processes_never_exceed_a_cap(tmp_path):
    path = str(tmp_path / "shared.db")
    SpendGuard(Database(path)).set_cap("owner", "alice", "day", max_usd=CAP)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_race_process, args=(path, 10, out)) for _ in range(5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sum(out.get() for _ in procs) == 14
    assert settled_usd(Database(path)) <= CAP + 1e-9


def test_a_database_from_before_the_running_totals_keeps_its_spend(db):
    from datetime import UTC, datetime

    from sovereign.governance.spend import MIGRATIONS

    db.migrate("spend", MIGRATIONS[:1])  # the schema as it was: spend only in the reservations
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for n in range(3):
        db.execute("INSERT INTO spend_reservations (id, key_id, owner_id, agent_id, day, status, usd, tokens, "
                   "expires_at, created_at) VALUES (?, 'k1', 'alice', 'bot', ?, 'settled', 0.2, 10, '', '')",
                   (f"res_{n}", today))
    guard = SpendGuard(db)  # migrates: the running totals are built from the settled calls
    guard.set_cap("owner", "alice", "day", max_usd=1.0)
    assert guard.status(owner_id="alice").today_usd == pytest.approx(0.6)
    assert guard.status(agent_id="bot").total_tokens == 30
    guard.reserve("k1", "alice", "bot", 0.4, 0)  # exactly up to the cap
    with pytest.raises(CapExceededError, match=r"current spend \$0.6"):
        guard.reserve("k1", "alice", "bot", 0.01, 0)
