"""Instances (empty ones) and the asynchronous operations and events that come with them."""

import time
import uuid

import pytest

from lxmtest import (STATUS_CODES, assert_async, assert_error_envelope, assert_sync, http_request,
                     assert_timestamps, is_rfc3339, unique)


def check_operation(op):
    for k in ("id", "class", "description", "created_at", "updated_at", "status", "status_code",
              "resources", "metadata", "may_cancel", "err"):
        assert k in op, "operation lacks %r: %r" % (k, op)
    assert op["class"] in ("task", "websocket", "token"), op
    assert op["status_code"] in STATUS_CODES, op
    assert isinstance(op["may_cancel"], bool), op
    assert isinstance(op["err"], str), op
    assert is_rfc3339(op["created_at"]) and is_rfc3339(op["updated_at"]), op


def test_create_is_async_with_location(lxmd):
    name = unique("c")
    r = lxmd.api("POST", "/1.0/instances", {"name": name, "source": {"type": "none"}})
    op = assert_async(r)
    check_operation(op)
    assert op["class"] == "task"
    assert "/1.0/instances/" + name in op["resources"]["instances"], op
    # The Location is a real operation.
    got = assert_sync(lxmd.api("GET", r.headers["Location"]))
    assert got["id"] == op["id"]
    check_operation(got)
    assert lxmd.wait_op(op["id"])["status"] == "Success"


def test_wait_returns_success_and_instance_exists(lxmd):
    name = unique("c")
    op = lxmd.create_instance(name, wait=False)
    done = lxmd.wait_op(op["id"])
    check_operation(done)
    assert done["status"] == "Success" and done["status_code"] == 200, done
    assert done["err"] == ""
    assert done["id"] == op["id"]
    inst = assert_sync(lxmd.api("GET", "/1.0/instances/" + name))
    assert inst["name"] == name
    assert inst["status"] == "Stopped" and inst["status_code"] == 102, inst
    assert inst["profiles"] == ["default"], inst
    assert isinstance(inst["config"], dict) and isinstance(inst["devices"], dict), inst
    assert all(isinstance(v, str) for v in inst["config"].values()), inst["config"]
    assert is_rfc3339(inst["created_at"]), inst
    assert_timestamps(inst)


def test_finished_operation_stays_listed(lxmd):
    name = unique("c")
    op = lxmd.create_instance(name, wait=False)
    lxmd.wait_op(op["id"])
    url = "/1.0/operations/" + op["id"]
    t_done = time.monotonic()
    ops = assert_sync(lxmd.api("GET", "/1.0/operations"))
    assert url in ops.get("success", []), ops
    assert url not in ops.get("running", []), ops
    objs = assert_sync(lxmd.api("GET", "/1.0/operations?recursion=1"))
    assert op["id"] in [o["id"] for o in objs.get("success", [])], objs
    # Clients GET an operation after it finished (lxc refresh, pylxd); LXD keeps it 5 s.
    time.sleep(max(0.0, 4.0 - (time.monotonic() - t_done)))
    assert url in assert_sync(lxmd.api("GET", "/1.0/operations")).get("success", [])
    assert assert_sync(lxmd.api("GET", url))["status"] == "Success"


def test_wait_timeout_zero_on_finished_operation(lxmd):
    op = lxmd.create_instance(unique("c"), wait=False)
    lxmd.wait_op(op["id"])
    t0 = time.monotonic()
    got = assert_sync(lxmd.api("GET", "/1.0/operations/%s/wait?timeout=0" % op["id"]))
    assert time.monotonic() - t0 < 2, "wait?timeout=0 on a finished operation blocked"
    assert got["id"] == op["id"] and got["status"] == "Success", got


def test_events_see_operation_and_lifecycle(lxmd):
    name = unique("c")
    with lxmd.events() as ev:
        op = lxmd.create_instance(name, wait=False)
        final = ev.wait_for(lambda e: e.get("type") == "operation"
                            and e["metadata"].get("id") == op["id"]
                            and e["metadata"].get("status_code", 0) >= 200)
        assert final["metadata"]["status_code"] == 200, final
        assert final["metadata"]["status"] == "Success", final
        check_operation(final["metadata"])
        life = ev.wait_for(lambda e: e.get("type") == "lifecycle"
                           and e["metadata"].get("action") == "instance-created")
        assert life["metadata"].get("source") == "/1.0/instances/" + name, life
        for e in ev.seen:
            assert is_rfc3339(e.get("timestamp")), e
            assert e.get("project") == "default" and e.get("location") == "none", e
            assert isinstance(e.get("metadata"), dict), e


def test_events_type_filter(lxmd):
    name = unique("c")
    with lxmd.events(types=["operation"]) as ops, lxmd.events(types=["lifecycle"]) as life:
        lxmd.create_instance(name)
        deleted = lxmd.delete_instance(name)
        life.wait_for(lambda e: e["metadata"].get("action") == "instance-deleted")
        ops.wait_for(lambda e: e["metadata"].get("id") == deleted["id"]
                     and e["metadata"].get("status_code", 0) >= 200)
        # Drain whatever else is already queued.
        while ops.recv(0.3) or life.recv(0.3):
            pass
        assert {e["type"] for e in ops.seen} == {"operation"}, ops.seen
        assert {e["type"] for e in life.seen} == {"lifecycle"}, life.seen


def test_events_several_subscribers(lxmd):
    with lxmd.events() as a, lxmd.events() as b:
        op = lxmd.create_instance(unique("c"), wait=False)
        for ev in (a, b):
            ev.wait_for(lambda e: e.get("type") == "operation"
                        and e["metadata"].get("id") == op["id"]
                        and e["metadata"].get("status_code", 0) >= 200)


def test_unknown_operation_404(lxmd):
    op_id = str(uuid.uuid4())
    assert_error_envelope(lxmd.api("GET", "/1.0/operations/" + op_id), 404)
    assert_error_envelope(lxmd.api("GET", "/1.0/operations/%s/wait?timeout=1" % op_id), 404)
    assert_error_envelope(lxmd.api("DELETE", "/1.0/operations/" + op_id), 404)


def test_cancel_finished_operation_refused(lxmd):
    op = lxmd.create_instance(unique("c"), wait=False)
    lxmd.wait_op(op["id"])
    r = lxmd.api("DELETE", "/1.0/operations/" + op["id"])
    assert r.status in (400, 403), r
    assert_error_envelope(r, r.status)
    assert assert_sync(lxmd.api("GET", "/1.0/operations/" + op["id"]))["status"] == "Success"


def test_delete_instance(lxmd):
    name = unique("c")
    lxmd.create_instance(name)
    with lxmd.events(types=["lifecycle"]) as ev:
        r = lxmd.api("DELETE", "/1.0/instances/" + name)
        op = assert_async(r)
        assert "/1.0/instances/" + name in op["resources"]["instances"], op
        done = lxmd.wait_op(op["id"])
        assert done["status"] == "Success", done
        life = ev.wait_for(lambda e: e["metadata"].get("action") == "instance-deleted")
        assert life["metadata"].get("source") == "/1.0/instances/" + name, life
    assert_error_envelope(lxmd.api("GET", "/1.0/instances/" + name), 404)
    assert lxmd.instance_names() == []


def test_delete_missing_instance_404(lxmd):
    assert_error_envelope(lxmd.api("DELETE", "/1.0/instances/" + unique("missing")), 404)


def test_containers_mirror_instances(lxmd):
    a, b = unique("a"), unique("b")
    lxmd.create_instance(a)
    lxmd.create_instance(b, prefix="/1.0/containers")  # pylxd only uses /1.0/containers
    assert lxmd.instance_names() == sorted([a, b])
    assert lxmd.instance_names("/1.0/containers") == sorted([a, b])
    for n in (a, b):
        i = assert_sync(lxmd.api("GET", "/1.0/instances/" + n))
        c = assert_sync(lxmd.api("GET", "/1.0/containers/" + n))
        assert i["name"] == c["name"] == n
        assert i["status"] == c["status"] == "Stopped"
    objs = assert_sync(lxmd.api("GET", "/1.0/containers?recursion=1"))
    assert sorted(o["name"] for o in objs) == sorted([a, b])
    op = assert_async(lxmd.api("DELETE", "/1.0/containers/" + a))
    assert lxmd.wait_op(op["id"])["status"] == "Success"
    assert lxmd.instance_names() == [b]


def test_recursion(lxmd):
    name = unique("c")
    lxmd.create_instance(name)
    assert assert_sync(lxmd.api("GET", "/1.0/instances")) == ["/1.0/instances/" + name]
    for rec in (1, 2):
        objs = assert_sync(lxmd.api("GET", "/1.0/instances?recursion=%d" % rec))
        assert isinstance(objs, list) and len(objs) == 1, objs
        o = objs[0]
        assert o["name"] == name and o["status"] == "Stopped", o
        assert o["type"] == "container", o
        assert o["profiles"] == ["default"], o
        assert_timestamps(o)


def test_filter(lxmd):
    a, b = unique("a"), unique("b")
    lxmd.create_instance(a)
    lxmd.create_instance(b)

    def names(q):
        return sorted(o["name"] for o in assert_sync(lxmd.api(
            "GET", "/1.0/instances?recursion=1&filter=" + q)))

    assert names("") == sorted([a, b])
    assert names("name+eq+" + a) == [a]
    assert names("status+eq+stopped") == sorted([a, b])  # LXD compares case-insensitively
    assert names("status+eq+running") == []


@pytest.mark.parametrize("name", ["1abc", "a_b", "-x", "x-", "a" * 64, "a b", "a/b", "a.b"],
                         ids=["digit-first", "underscore", "hyphen-first", "hyphen-last", "64-chars",
                              "space", "slash", "dot"])
def test_invalid_instance_name_400(lxmd, name):
    with lxmd.events(types=["operation"]) as ev:
        r = lxmd.api("POST", "/1.0/instances", {"name": name, "source": {"type": "none"}})
        msg = assert_error_envelope(r, 400)
        assert "name" in msg.lower(), "the error does not say the name is the problem: %r" % msg
        assert ev.recv(0.5) is None, "an operation was started for an invalid name"
    assert lxmd.instance_names() == []
    ops = assert_sync(lxmd.api("GET", "/1.0/operations"))
    assert not any(ops.values()), ops


def test_longest_valid_name(lxmd):
    name = "lxm-it-" + "a" * 56
    assert len(name) == 63
    lxmd.create_instance(name)
    assert lxmd.instance_names() == [name]


def test_duplicate_instance_409(lxmd):
    name = unique("dup")
    lxmd.create_instance(name)
    r = lxmd.api("POST", "/1.0/instances", {"name": name, "source": {"type": "none"}})
    assert_error_envelope(r, 409)
    r = lxmd.api("POST", "/1.0/containers", {"name": name, "source": {"type": "none"}})
    assert_error_envelope(r, 409)
    assert lxmd.instance_names() == [name]


def test_create_with_unknown_profile_fails(lxmd):
    name = unique("c")
    r = lxmd.api("POST", "/1.0/instances", {"name": name, "source": {"type": "none"},
                                            "profiles": ["lxm-it-no-such-profile"]})
    if r.status == 202:
        done = lxmd.api("GET", "/1.0/operations/%s/wait?timeout=30" % r.json["metadata"]["id"])
        op = assert_sync(done)
        assert op["status_code"] == 400 and op["err"], op
    else:
        msg = assert_error_envelope(r, r.status)
        assert r.status in (400, 404), r
        assert "lxm-it-no-such-profile" in msg, msg
    assert lxmd.instance_names() == []


def test_instance_with_explicit_profiles(lxmd):
    p = unique("p")
    r = lxmd.api("POST", "/1.0/profiles", {"name": p})
    assert r.status in (200, 201), r
    name = unique("c")
    lxmd.create_instance(name, profiles=["default", p])
    assert assert_sync(lxmd.api("GET", "/1.0/instances/" + name))["profiles"] == ["default", p]
    name2 = unique("c")
    lxmd.create_instance(name2, profiles=[])
    assert assert_sync(lxmd.api("GET", "/1.0/instances/" + name2))["profiles"] == []


def test_events_clients_dropping_without_close_frame(lxmd):
    # lxc drops its events connection without a close frame when it exits.
    for _ in range(20):
        ev = lxmd.events()
        ev.ws.sock.close()
    with lxmd.events() as ev:
        op = lxmd.create_instance(unique("c"), wait=False)
        ev.wait_for(lambda e: e.get("type") == "operation" and e["metadata"].get("id") == op["id"]
                    and e["metadata"].get("status_code", 0) >= 200)
    assert_sync(lxmd.api("GET", "/1.0"))


def test_slow_events_subscriber_does_not_block(lxmd):
    """A subscriber that never reads must not stall the daemon or the other subscribers."""
    n = 1500
    names = [unique("s%d" % i) for i in range(n)]
    with lxmd.events(types=["lifecycle"]), lxmd.events(types=["lifecycle"]) as reader:
        with lxmd.conn(timeout=60) as c:
            # Pipelined in batches; each creation emits a lifecycle event that the first
            # subscriber never reads.
            for i in range(0, n, 100):
                c.send(b"".join(http_request("POST", "/1.0/profiles", {"name": x})
                                for x in names[i:i + 100]))
                for _ in names[i:i + 100]:
                    r = c.read_response()
                    assert r.status in (200, 201), r
                # Keep the reading subscriber drained.
                while reader.recv(0.01):
                    pass
        t0 = time.monotonic()
        assert_sync(lxmd.api("GET", "/1.0", timeout=10))
        assert time.monotonic() - t0 < 2
        reader.wait_for(lambda e: e["metadata"].get("source") == "/1.0/profiles/" + names[-1],
                        timeout=20)
        got = {e["metadata"].get("source") for e in reader.seen}
        missing = [x for x in names if "/1.0/profiles/" + x not in got]
        assert not missing, "%d profile-created events missing for the reading subscriber" % len(missing)
