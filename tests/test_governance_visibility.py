"""Public agents see only what their owner exposed; private agents and humans are unrestricted."""

from __future__ import annotations

import pytest

from sovereign.errors import InvalidRequestError, PermissionDeniedError
from sovereign.governance.keys import KeyStore
from sovereign.governance.visibility import VisibilityStore, decide_access
from sovereign.store import Database


@pytest.fixture
def stores(tmp_path):
    db = Database(tmp_path / "v.db")
    keys = KeyStore(db)
    keys.create_identity("alice", kind="human")
    keys.create_identity("concierge", kind="agent", owner="alice", public=True)
    keys.create_identity("butler", kind="agent", owner="alice")
    yield keys, VisibilityStore(db)
    db.close()


def test_public_agent_sees_nothing_by_default(stores):
    _, vis = stores
    access = vis.access_for("concierge")
    assert access.public
    for kind, name in (("memory", "alice:private"), ("kb", "default"), ("workspace", "alice"), ("tool", "shell")):
        assert not access.allows(kind, name)
        with pytest.raises(PermissionDeniedError) as err:
            access.require(kind, name)
        assert err.value.status_code == 403 and name in err.value.message


def test_public_agent_sees_exactly_its_exposures(stores):
    _, vis = stores
    vis.expose("concierge", "kb", "faq")
    vis.expose("concierge", "tool", "calculator")
    access = vis.access_for("concierge")
    assert access.allows("kb", "faq") and not access.allows("kb", "internal")
    assert access.filter("tool", ["calculator", "shell", "http_fetch"]) == ["calculator"]
    assert not access.allows("memory", "alice:private")
    vis.unexpose("concierge", "tool", "calculator")
    assert not vis.access_for("concierge").allows("tool", "calculator")
    vis.expose("concierge", "tool", "*")
    assert vis.access_for("concierge").allows("tool", "anything")


def test_private_agent_and_humans_are_unrestricted(stores):
    _, vis = stores
    assert vis.access_for("butler").allows("memory", "alice:private")
    assert vis.access_for("alice").allows("workspace", "alice")
    with pytest.raises(InvalidRequestError):
        vis.expose("alice", "kb", "faq")


def test_decide_access_is_pure():
    agent = {"name": "a", "kind": "agent", "public": 1}
    assert decide_access(agent, [("memory", "m")]).allows("memory", "m")
    assert not decide_access(agent, []).allows("memory", "m")
    assert decide_access({"name": "h", "kind": "human", "public": 1}, []).allows("memory", "m")
