"""Instance transfers between two lxmd hosts: `lxm copy local:c1 r2:c1` (and `lxm move`) relay
the source's migration websockets to the target's push-mode create. A second private lxmd
listens on 127.0.0.1 (core.https_address) and the local lxm has it as remote r2 (a join token).
What a user checks: the copy exists on r2 with the source's config and files (content, owner,
mode, links), starts there, and the source is unchanged; a snapshot can be copied; a running
instance, an existing name, an interrupted transfer leave nothing on r2. The interrupted
transfers are driven by a Python relay over both daemons' unix sockets, so that they stop at a
known point. Traffic to 127.0.0.1 only."""

import json
import os
import signal

import pytest

import lxmtest
from lxmtest import cli_failed as failed, unique, wait_for


@pytest.fixture
def conf(r2_conf):
    return r2_conf


def names(d):
    return d.instance_names()


def leftovers(d, name):
    """Paths under d's root (outside logs) that carry name: a volume, a link, a directory."""
    found = []
    for top, dirs, files in os.walk(d.root):
        if "/logs" in top:
            continue
        for e in dirs + files:
            if e == name:
                found.append(os.path.join(top, e))
    return found


def sh(d, name, script, env=None):
    return d.cli("exec", name, "--", "sh", "-c", script, env=env).stdout


STAT = "stat -c '%u %g %a %s %h' /root/f /root/hard; readlink /root/link; cat /root/f"


def prepare(lxmd, launched):
    """A stopped busybox c1 with a file (owner, mode, hardlink, symlink) and a config key."""
    name = launched()
    sh(lxmd, name, "echo hello-from-c1 > /root/f && chown 1000:1001 /root/f && "
       "chmod 640 /root/f && ln /root/f /root/hard && ln -s f /root/link")
    lxmd.cli("config", "set", name, "user.origin=here")
    lxmd.cli("stop", "-f", name)
    return name


def test_copy_to_remote(lxmd, launched, r2, conf):
    c1 = prepare(lxmd, launched)
    src_stat = None
    lxmd.cli("start", c1)
    src_stat = sh(lxmd, c1, STAT)
    lxmd.cli("stop", "-f", c1)
    assert "hello-from-c1" in src_stat and "1000 1001 640" in src_stat

    lxmd.cli("copy", "local:" + c1, "r2:" + c1, env=conf, timeout=120)
    assert c1 in names(r2)
    assert r2.cli("config", "get", c1, "user.origin").stdout.strip() == "here"
    r2.cli("start", c1, timeout=60)
    assert sh(r2, c1, STAT) == src_stat
    # The hardlink is one file: two links.
    assert sh(r2, c1, "stat -c %h /root/f").strip() == "2"
    r2.cli("stop", "-f", c1)
    # Through the remote too.
    assert c1 in lxmd.cli("list", "r2:", "--format", "csv", "-c", "n", env=conf).stdout

    # Both names on one server: the server copies, as without remotes.
    c3 = unique("c")
    lxmd.cli("copy", "local:" + c1, "local:" + c3, env=conf)
    assert lxmd.cli("config", "get", c3, "user.origin").stdout.strip() == "here"
    lxmd.cli("delete", c3)

    # The source is unchanged.
    assert lxmd.cli("config", "get", c1, "user.origin").stdout.strip() == "here"
    assert "STOPPED" in lxmd.cli("list", "--format", "csv", "-c", "ns").stdout
    lxmd.cli("start", c1)
    assert sh(lxmd, c1, STAT) == src_stat

    # A running instance is refused, clearly, and nothing is made on r2.
    before = names(r2)
    err = failed(lxmd.cli("copy", "local:" + c1, "r2:other", env=conf, check=False),
                 c1, "running", "stop it", "snapshot")
    assert names(r2) == before and "other" not in names(r2), err
    assert not leftovers(r2, "other")

    # A snapshot of the running instance can be copied; it is the snapshot's state.
    lxmd.cli("snapshot", c1, "snap0")
    sh(lxmd, c1, "echo changed > /root/f")
    c2 = unique("c")
    lxmd.cli("copy", "local:%s/snap0" % c1, "r2:" + c2, "-c", "user.extra=1", env=conf,
             timeout=120)
    assert r2.cli("config", "get", c2, "user.origin").stdout.strip() == "here"
    assert r2.cli("config", "get", c2, "user.extra").stdout.strip() == "1"
    r2.cli("start", c2, timeout=60)
    assert sh(r2, c2, "cat /root/f") == "hello-from-c1\n"
    r2.cli("delete", "-f", c2)

    # An existing name on the target is refused before any data moves; r2's c1 stays as it is.
    lxmd.cli("stop", "-f", c1)
    r2.cli("config", "set", c1, "user.mark=kept")
    failed(lxmd.cli("copy", "local:" + c1, "r2:" + c1, env=conf, check=False),
           "create '%s' on 'r2'" % c1, "already exists")
    assert r2.cli("config", "get", c1, "user.mark").stdout.strip() == "kept"
    # No operation is left running on either side.
    wait_for(lambda: not running_ops(lxmd) and not running_ops(r2), 20, "operations to end")


def running_ops(d):
    ops = json.loads(d.api("GET", "/1.0/operations?recursion=1").raw)["metadata"] or {}
    return [o for group in ops.values() for o in group if o["status_code"] < 200]


def test_move_to_remote(lxmd, launched, r2, conf):
    c1 = prepare(lxmd, launched)
    # With a snapshot a move is refused (its snapshots would be lost): the source stays.
    lxmd.cli("snapshot", c1, "snap0")
    failed(lxmd.cli("move", "local:" + c1, "r2:" + c1, env=conf, check=False), c1, "snapshots")
    assert c1 in names(lxmd) and c1 not in names(r2)
    lxmd.cli("delete", "%s/snap0" % c1)
    # A failing move (the name is taken on r2) keeps the source.
    r2.create_instance(c1)
    failed(lxmd.cli("move", "local:" + c1, "r2:" + c1, env=conf, check=False), "already exists")
    assert c1 in names(lxmd)
    r2.cli("delete", c1)

    lxmd.cli("move", "local:" + c1, "r2:" + c1, env=conf, timeout=120)
    assert c1 not in names(lxmd)
    assert r2.cli("config", "get", c1, "user.origin").stdout.strip() == "here"
    r2.cli("start", c1, timeout=60)
    assert sh(r2, c1, "cat /root/f") == "hello-from-c1\n"
    r2.cli("stop", "-f", c1)
    # Both names on r2: a rename there.
    c9 = unique("c")
    lxmd.cli("move", "r2:" + c1, "r2:" + c9, env=conf)
    assert c9 in names(r2) and c1 not in names(r2)
    r2.cli("delete", "-f", c9)


# ---- interrupted transfers, through a Python relay on both unix sockets ----

def start_transfer(src, dst, name, target):
    """Starts a transfer of src's name to dst's target; returns the operations and their
    websockets (source control, source fs, target control, target fs)."""
    r = src.api("POST", "/1.0/instances/" + name, {"migration": True, "live": False,
                                                    "instance_only": True})
    sop = lxmtest.assert_async(r)
    meta = json.loads(src.api("GET", "/1.0/instances/" + name).raw)["metadata"]
    body = {"name": target, "config": {k: v for k, v in meta["config"].items()
                                       if not k.startswith("volatile.")},
            "devices": meta["devices"], "profiles": meta["profiles"],
            "source": {"type": "migration", "mode": "push"}}
    top = lxmtest.assert_async(dst.api("POST", "/1.0/instances", body))
    assert sop["class"] == "websocket" and top["class"] == "websocket"
    assert set(sop["metadata"]) == {"control", "fs"} and set(top["metadata"]) == {"control", "fs"}
    socks = [lxmtest.ws_connect(src, sop["id"], sop["metadata"]["control"]),
             lxmtest.ws_connect(src, sop["id"], sop["metadata"]["fs"]),
             lxmtest.ws_connect(dst, top["id"], top["metadata"]["control"]),
             lxmtest.ws_connect(dst, top["id"], top["metadata"]["fs"])]
    return sop, top, socks


def relay_some(socks, messages):
    """Passes the header and `messages` fs messages on."""
    import websocket

    op, header = socks[0].recv_data()
    assert json.loads(header)["type"] == "header"
    socks[2].send(header)
    for _ in range(messages):
        op, data = socks[1].recv_data()
        assert op == websocket.ABNF.OPCODE_BINARY
        socks[3].send_binary(data)


def op_result(d, op_id):
    return lxmtest.assert_sync(d.api("GET", "/1.0/operations/%s/wait?timeout=30" % op_id,
                                     timeout=40))


def test_interrupted_transfers(lxmd, launched, r2):
    c1 = launched()
    # A large file: the transfer cannot be over in a few messages.
    sh(lxmd, c1, "dd if=/dev/urandom of=/root/big bs=1M count=24 2>/dev/null")
    lxmd.cli("config", "set", c1, "user.origin=here")
    lxmd.cli("stop", "-f", c1)

    # The fs websocket closes early: the target rolls back, the source fails.
    sop, top, socks = start_transfer(lxmd, r2, c1, "t1")
    relay_some(socks, 5)
    # While the files move, neither side's instance can be started or deleted.
    failed(lxmd.cli("start", c1, check=False), c1, "migration")
    failed(lxmd.cli("delete", c1, check=False), c1, "migration")
    failed(r2.cli("start", "t1", check=False), "t1", "migration")
    failed(r2.cli("delete", "-f", "t1", check=False), "t1", "migration")
    lxmtest.ws_close(socks[3])
    md = op_result(r2, top["id"])
    assert md["status"] == "Failure" and "fs websocket closed" in md["err"], md
    for s in socks:
        lxmtest.ws_close(s)
    assert op_result(lxmd, sop["id"])["status"] == "Failure"
    wait_for(lambda: "t1" not in names(r2), 10, "t1 to go")
    assert not leftovers(r2, "t1")

    # A truncated stream: the end message counts more than arrived.
    sop, top, socks = start_transfer(lxmd, r2, c1, "t2")
    relay_some(socks, 3)
    socks[1].recv_data()  # one message dropped
    socks[3].send(json.dumps({"type": "end", "bytes": 10 ** 12}))
    md = op_result(r2, top["id"])
    assert md["status"] == "Failure" and "truncated" in md["err"], md
    # The target says so on control, for the source.
    op, msg = socks[2].recv_data()
    res = json.loads(msg)
    assert res["success"] is False and "truncated" in res["message"], res
    for s in socks:
        lxmtest.ws_close(s)
    assert not leftovers(r2, "t2") and "t2" not in names(r2)

    # The source fails: the target rolls back.
    sop, top, socks = start_transfer(lxmd, r2, c1, "t3")
    relay_some(socks, 2)
    socks[2].send(json.dumps({"success": False, "message": "disk on fire"}))
    md = op_result(r2, top["id"])
    assert md["status"] == "Failure" and "disk on fire" in md["err"], md
    for s in socks:
        lxmtest.ws_close(s)
    assert not leftovers(r2, "t3") and "t3" not in names(r2)

    # The create is cancelled midway.
    sop, top, socks = start_transfer(lxmd, r2, c1, "t4")
    relay_some(socks, 2)
    assert r2.api("DELETE", "/1.0/operations/" + top["id"]).status == 200
    md = op_result(r2, top["id"])
    assert md["status"] == "Cancelled", md
    for s in socks:
        lxmtest.ws_close(s)
    assert not leftovers(r2, "t4") and "t4" not in names(r2)

    # The target lxmd is killed midway: its next start rolls the create back.
    sop, top, socks = start_transfer(lxmd, r2, c1, "t5")
    relay_some(socks, 4)
    assert "t5" in names(r2)
    r2.kill9()
    for s in socks:
        lxmtest.ws_close(s)
    r2.start()
    assert "t5" not in names(r2)
    assert not leftovers(r2, "t5")

    # Through it all the source is unchanged and nothing runs.
    assert lxmd.cli("config", "get", c1, "user.origin").stdout.strip() == "here"
    wait_for(lambda: not running_ops(lxmd), 20, "the source's operations to end")
    lxmd.cli("start", c1)
    assert sh(lxmd, c1, "stat -c %s /root/big").strip() == str(24 * 1024 * 1024)


def test_cli_killed_midway(lxmd, launched, r2, conf):
    c1 = launched()
    sh(lxmd, c1, "dd if=/dev/urandom of=/root/big bs=1M count=200 2>/dev/null")
    lxmd.cli("stop", "-f", c1)
    p = lxmd.cli_popen("copy", "local:" + c1, "r2:" + c1, env=conf)
    try:
        wait_for(lambda: c1 in names(r2) or p.poll() is not None, 30, "the target's create")
        assert p.poll() is None, "the copy ended before it could be interrupted"
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait(10)
    wait_for(lambda: c1 not in names(r2), 20, "the target to roll back")
    assert not leftovers(r2, c1)
    wait_for(lambda: not running_ops(lxmd) and not running_ops(r2), 20, "operations to end")
    assert c1 in names(lxmd)

