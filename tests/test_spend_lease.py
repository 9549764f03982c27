"""Budget leases (``governance.spend_lease``): a run's calls draw from one reservation, yet every
cap holds — across processes, through cap changes, across a day boundary and after a crash —
and the settled spend is exactly what was spent. Runs use the deterministic ``FunctionModel``
double from ``sovereign.testing``."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sovereign.governance import spend as spend_module
from sovereign.governance import spend_lease
from sovereign.governance.spend import CapExceededError, SpendGuard
from sovereign.governance.spend_lease import LEASE_SHARE, SpendLease
from sovereign.finops.ledger import UsageLedger
from sovereign.kernel.messages import Timings, Usage
from sovereign.store import Database


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "lease.db")
    yield database
    database.close()


def _draw(lease: SpendLease, usd: float, tokens: int = 0):
    with lease.guard.db.transaction() as conn:
        return lease.draw_in(conn, usd, tokens)


def _settle(lease: SpendLease, call, usd: float, tokens: int = 0) -> None:
    """Settle as the governor does: the call's ledger row (naming its reservation) and the
    lease's settlement in one transaction."""
    ledger = UsageLedger(lease.guard.db)
    with lease.guard.db.transaction() as conn:
        ledger.record_in(conn, model="m", usage=Usage(prompt_tokens=tokens), timings=Timings(), cost=usd,
                         reservation=call.id)
        lease.settle_in(conn, call, usd, tokens)


def _totals(db: Database, scope: str, subject: str) -> tuple[float, int]:
    """The running totals (all days) of one subject, as stored."""
    row = db.query_one("SELECT usd, tokens FROM spend_totals WHERE scope = ? AND subject = ? AND day = '*'",
                       (scope, subject))
    return (row["usd"], row["tokens"]) if row is not None else (0.0, 0)


def _rows(db: Database) -> list:
    return db.query("SELECT id, status, usd, tokens FROM spend_reservations ORDER BY created_at")


def _cap_status(guard: SpendGuard, **subject):
    return guard.status(**subject).caps[0]


def test_many_calls_one_row_and_exact_settled_spend(db):
    guard = SpendGuard(db)
    guard.set_cap("owner", "alice", "day", max_usd=10.0, max_tokens=100_000)
    lease = SpendLease(guard, "k1", "alice", "bot")
    for _ in range(20):
        call = _draw(lease, 0.01, 100)
        assert call.lease is lease and call.id == lease.row.id
        _settle(lease, call, 0.004, 40)
    assert len(_rows(db)) == 1  # one reservation for twenty calls
    cap = _cap_status(guard, owner_id="alice")
    assert cap.spent_usd == pytest.approx(0.08) and cap.spent_tokens == 800
    assert cap.reserved_usd == pytest.approx(lease.held_usd) and lease.drawn_usd == 0
    with db.transaction() as conn:
        lease.close_in(conn)
    (row,) = _rows(db)
    assert row["status"] == "settled" and row["usd"] == pytest.approx(0.08) and row["tokens"] == 800
    cap = _cap_status(guard, owner_id="alice")
    assert cap.reserved_usd == 0 and cap.spent_usd == pytest.approx(0.08)  # spend counted once


def test_a_lease_takes_a_share_of_the_headroom_never_less_than_the_call(db):
    guard = SpendGuard(db)
    guard.set_cap("agent", "bot", "day", max_usd=1.0)
    lease = SpendLease(guard, None, None, "bot")
    _draw(lease, 0.1)
    assert lease.held_usd == pytest.approx(0.1 + LEASE_SHARE * 0.9)  # not 32 calls' worth
    tight = SpendLease(guard, None, None, "bot")
    with pytest.raises(CapExceededError):
        _draw(tight, 0.7)  # the first lease holds 0.325 of the 1.0
    _draw(tight, 0.6)
    assert tight.held_usd == pytest.approx(0.6 + LEASE_SHARE * 0.075)
    assert _cap_status(guard, agent_id="bot").reserved_usd <= 1.0 + 1e-9


def test_a_call_that_does_not_fit_grows_the_lease_or_is_refused(db):
    guard = SpendGuard(db)
    guard.set_cap("key", "k1", "total", max_usd=1.0)
    lease = SpendLease(guard, "k1", None, None)
    _settle(lease, _draw(lease, 0.2), 0.2)
    held = lease.held_usd
    call = _draw(lease, held + 0.1)  # more than the lease holds: it grows, same row
    assert len(_rows(db)) == 1 and lease.held_usd > held
    _settle(lease, call, held + 0.1)
    with pytest.raises(CapExceededError):
        _draw(lease, 0.9)
    assert _cap_status(guard, key_id="k1").spent_usd <= 1.0 + 1e-9


def test_a_cap_change_applies_from_the_next_call(db):
    guard = SpendGuard(db)
    guard.set_cap("owner", "alice", "day", max_usd=10.0)
    lease = SpendLease(guard, None, "alice", None)
    _settle(lease, _draw(lease, 0.1), 0.1)
    assert lease.held_usd > 0.3  # room for many more calls
    guard.set_cap("owner", "alice", "day", max_usd=0.15)  # now only $0.05 is left
    with pytest.raises(CapExceededError):
        _draw(lease, 0.1)  # checked against the new cap, not drawn from the old slice
    lease.close()  # a refused call ends the run, whose last commit closes the lease
    assert _cap_status(guard, owner_id="alice").reserved_usd == 0
    _settle(lease, _draw(lease, 0.05), 0.05)
    assert _cap_status(guard, owner_id="alice").spent_usd == pytest.approx(0.15)


def test_a_new_day_starts_a_new_lease(db, monkeypatch):
    guard = SpendGuard(db)
    guard.set_cap("global", None, "day", max_usd=5.0)
    lease = SpendLease(guard, None, None, None)
    _settle(lease, _draw(lease, 0.1), 0.1)
    first = lease.row.id
    later = datetime.now(UTC) + timedelta(days=1)
    tomorrow = later.strftime("%Y-%m-%d")
    assert lease.renew_at <= spend_lease._day_ends(lease.row.day)  # the lease ends with its day
    lease.clock = later.timestamp
    monkeypatch.setattr(spend_module, "_now", lambda: later)
    call = _draw(lease, 0.1)
    assert call.id != first and call.day == tomorrow
    assert {r["id"]: r["status"] for r in _rows(db)}[first] == "settled"


def test_a_stale_lease_with_a_call_in_flight_reserves_the_next_call_on_its_own(db):
    guard = SpendGuard(db)
    guard.set_cap("owner", "alice", "day", max_usd=5.0)
    lease = SpendLease(guard, None, "alice", None)
    in_flight = _draw(lease, 0.1)
    guard.set_cap("owner", "alice", "day", max_usd=4.0)
    alone = _draw(lease, 0.1)
    assert alone.lease is None and alone.id.startswith("res_")
    guard.settle(alone, 0.1, 0)
    _settle(lease, in_flight, 0.1)
    assert _cap_status(guard, owner_id="alice").spent_usd == pytest.approx(0.2)


def test_a_released_call_frees_its_share_of_the_lease(db):
    guard = SpendGuard(db)
    guard.set_cap("owner", "alice", "day", max_usd=1.0)
    lease = SpendLease(guard, None, "alice", None)
    call = _draw(lease, 0.5)
    lease.release(call)
    assert lease.drawn_usd == 0
    _draw(lease, 0.5)  # drawn again from the same slice, no second row
    assert len(_rows(db)) == 1


def _draw_until_refused(path: str, per_call: float, out) -> None:
    database = Database(path)
    lease = SpendLease(SpendGuard(database), "k1", "alice", "bot")
    spent = 0.0
    for _ in range(40):
        try:
            call = _draw(lease, per_call)
        except CapExceededError:
            continue
        _settle(lease, call, per_call)
        spent += per_call
    lease.close()
    out.put(spent)
    database.close()


def test_leases_in_several_processes_never_exceed_a_cap(tmp_path):
    path = str(tmp_path / "shared.db")
    database = Database(path)
    guard = SpendGuard(database)
    cap, per_call = 1.0, 0.03
    guard.set_cap("owner", "alice", "day", max_usd=cap)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_draw_until_refused, args=(path, per_call, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    spent = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    status = _cap_status(guard, owner_id="alice")
    assert status.spent_usd == pytest.approx(sum(spent))  # every settled call counted, once
    assert status.spent_usd <= cap + 1e-9 and status.reserved_usd == 0
    assert status.spent_usd > cap - 2 * per_call  # and the cap was usable to its end
    database.close()


def _crash_after_two_calls(path: str) -> None:
    database = Database(path)
    lease = SpendLease(SpendGuard(database), "k1", None, None)
    for _ in range(2):
        _settle(lease, _draw(lease, 0.1), 0.05)
    os._exit(3)  # no close: the process dies holding its lease


def test_a_crash_keeps_the_settled_spend_and_holds_only_the_rest_until_it_expires(tmp_path, monkeypatch):
    path = str(tmp_path / "crash.db")
    database = Database(path)
    guard = SpendGuard(database)
    guard.set_cap("key", "k1", "total", max_usd=2.0)
    proc = multiprocessing.get_context("spawn").Process(target=_crash_after_two_calls, args=(path,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 3
    status = _cap_status(guard, key_id="k1")
    (row,) = _rows(database)
    assert status.spent_usd == pytest.approx(0.1)  # both settled calls survived the crash (in the ledger)
    assert row["status"] == "open" and status.spent_usd + status.reserved_usd == pytest.approx(row["usd"])
    assert _totals(database, "key", "k1") == (0.0, 0)  # not folded yet: the row holds it
    later = datetime.now(UTC) + timedelta(seconds=guard.reservation_ttl_s + 1)
    monkeypatch.setattr(spend_module, "_now", lambda: later)
    status = _cap_status(guard, key_id="k1")
    assert status.reserved_usd == 0 and status.spent_usd == pytest.approx(0.1)
    assert _totals(database, "key", "k1")[0] == pytest.approx(0.1)  # the sweep folded the ledger rows
    (row,) = _rows(database)
    assert row["status"] == "settled" and row["usd"] == pytest.approx(0.1)
    database.close()


def test_a_governed_run_draws_every_call_from_one_lease(tmp_path):
    """Through the runtime: twelve model calls, one lease row, settled = ledger = audit."""
    from sovereign.agent import Agent, Budget, Runner
    from sovereign.config import load_settings
    from sovereign.kernel.messages import ChatResponse, Message, ToolCall, Usage
    from sovereign.kernel.registry import ModelSpec, PriceSheet
    from sovereign.services import Services
    from sovereign.testing import FunctionModel
    from sovereign.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def script(request):
        turn = len(model.requests) - 1
        usage = Usage(prompt_tokens=10, completion_tokens=5, requests=1)
        if turn < 11:
            call = ToolCall(name="add", arguments=json.dumps({"a": turn, "b": 1}), id=f"c{turn}")
            return ChatResponse(model="m", message=Message(role="assistant", tool_calls=[call]), usage=usage)
        return ChatResponse(model="m", message=Message(role="assistant", content="done"), usage=usage)

    model = FunctionModel(script, name="priced")
    services = Services.open(load_settings(tmp_path / "home"))
    try:
        services.register(ModelSpec(name="priced", backend="in_process", prices=PriceSheet(input=1.0, output=2.0)),
                          model)
        owner = services.keys.local_principal().identity_id
        services.spend.set_cap("owner", owner, "day", max_usd=100.0)
        agent = Agent(name="adder", model="priced", tools=[add], budget=Budget(max_steps=20))
        result = asyncio.run(Runner(services).run(agent, "add"))
        assert result.ok and result.spent.usage.requests == 12
        (row,) = services.db.query("SELECT status, usd FROM spend_reservations")
        ledger = services.ledger.totals()
        assert row["status"] == "settled" and row["usd"] == pytest.approx(ledger.cost_usd)
        status = services.spend.status(owner_id=owner)
        assert status.today_usd == pytest.approx(ledger.cost_usd) and status.caps[0].reserved_usd == 0
        assert len(services.audit.entries(kind="model.call")) == ledger.calls == 12
        assert services.audit.verify().ok
    finally:
        services.close()


def _run_then_die(home: str, calls: int) -> None:
    """A governed run whose process dies (``os._exit``, no cleanup) inside its model call number
    ``calls + 1``: ``calls`` calls were settled through the run's lease, which is never closed."""
    from sovereign.agent import Agent, Budget, Runner
    from sovereign.config import load_settings
    from sovereign.kernel.messages import ChatResponse, Message, ToolCall
    from sovereign.kernel.registry import ModelSpec, PriceSheet
    from sovereign.services import Services
    from sovereign.testing import FunctionModel
    from sovereign.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def script(request):
        turn = len(model.requests) - 1
        if turn == calls:
            os._exit(9)
        call = ToolCall(name="add", arguments=json.dumps({"a": turn, "b": 1}), id=f"c{turn}")
        return ChatResponse(model="m", message=Message(role="assistant", tool_calls=[call]),
                            usage=Usage(prompt_tokens=100 + turn, completion_tokens=7, requests=1))

    model = FunctionModel(script, name="priced")
    services = Services.open(load_settings(Path(home)))
    services.register(ModelSpec(name="priced", backend="in_process", prices=PriceSheet(input=1.0, output=2.0)), model)
    asyncio.run(Runner(services).run(Agent(name="adder", model="priced", tools=[add], budget=Budget(max_steps=50)),
                                     "add"))


def test_a_run_killed_mid_way_folds_its_ledger_into_the_totals_once_its_lease_expires(tmp_path, monkeypatch):
    """Settled spend of a run lives in its lease's row until the lease closes; when the process
    dies first, the sweep after expiry makes the running totals equal the ledger, exactly."""
    from sovereign.config import load_settings
    from sovereign.services import Services

    home = tmp_path / "home"
    services = Services.open(load_settings(home))
    owner = services.keys.local_principal().identity_id
    services.spend.set_cap("owner", owner, "day", max_usd=1000.0)
    services.spend.set_cap("global", None, "day", max_usd=1000.0)
    proc = multiprocessing.get_context("spawn").Process(target=_run_then_die, args=(str(home), 6))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 9
    ledger = services.ledger.totals()
    assert ledger.calls == 6 and ledger.cost_usd > 0
    tokens = ledger.prompt_tokens + ledger.completion_tokens
    (lease,) = services.db.query("SELECT status, usd FROM spend_reservations WHERE id LIKE 'lease_%'")
    assert lease["status"] == "open" and lease["usd"] >= ledger.cost_usd  # the row holds what was settled
    assert _totals(services.db, "owner", owner) == (0.0, 0)  # not folded yet
    status = services.spend.status(owner_id=owner)
    assert status.total_usd == pytest.approx(ledger.cost_usd)  # reports count it as spent already
    cap = status.caps[0]
    assert cap.spent_usd + cap.reserved_usd == pytest.approx(lease["usd"])  # counted once against the cap
    later = datetime.now(UTC) + timedelta(seconds=services.spend.reservation_ttl_s + 1)
    monkeypatch.setattr(spend_module, "_now", lambda: later)
    status = services.spend.status(owner_id=owner)  # any cap check or report sweeps
    assert status.caps[0].reserved_usd == 0
    for scope, subject in (("owner", owner), ("global", "*")):
        usd, folded_tokens = _totals(services.db, scope, subject)
        assert usd == pytest.approx(ledger.cost_usd) and folded_tokens == tokens
    (lease,) = services.db.query("SELECT status, usd, tokens FROM spend_reservations WHERE id LIKE 'lease_%'")
    assert lease["status"] == "settled" and lease["usd"] == pytest.approx(ledger.cost_usd) and lease["tokens"] == tokens
    services.spend.status(owner_id=owner)  # a second sweep folds nothing twice
    assert _totals(services.db, "owner", owner)[0] == pytest.approx(ledger.cost_usd)
    services.close()


def test_a_call_settled_after_its_lease_row_was_swept_goes_straight_to_the_totals(db, monkeypatch):
    """A call in flight for longer than the lease row lives (its row expired and was folded by
    another process's sweep) is still counted, once."""
    guard = SpendGuard(db)
    guard.set_cap("owner", "alice", "day", max_usd=5.0)
    lease = SpendLease(guard, None, "alice", None)
    _settle(lease, _draw(lease, 0.1), 0.05)
    slow = _draw(lease, 0.1)
    later = datetime.now(UTC) + timedelta(seconds=guard.reservation_ttl_s + 1)
    monkeypatch.setattr(spend_module, "_now", lambda: later)
    lease.clock = lambda: later.timestamp()
    assert _cap_status(guard, owner_id="alice").reserved_usd == 0  # swept: the row folded its one call
    assert _totals(db, "owner", "alice")[0] == pytest.approx(0.05)
    _settle(lease, slow, 0.07)
    assert _totals(db, "owner", "alice")[0] == pytest.approx(0.12)
    lease.close()  # the row is closed already: nothing is folded twice
    assert _cap_status(guard, owner_id="alice").spent_usd == pytest.approx(0.12)
