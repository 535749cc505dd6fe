"""Scheduled and expiring snapshots, as a user sees them: snapshots.schedule takes snapshots at
the minute (named by snapshots.pattern, expiring by snapshots.expiry), a stopped instance is
skipped unless snapshots.schedule.stopped is true, a snapshot whose expires_at has passed is
deleted by lxmd within the minute, and bad values are refused at `lxm config set` naming the key
and the fault."""

import datetime
import os
import re
import time

import pytest

from lxmtest import assert_async, assert_sync, wait_for

pytestmark = pytest.mark.skipif(
    not os.access("/bin/busybox", os.X_OK), reason="busybox-static is not installed")

ZERO = "0001-01-01T00:00:00Z"


def snapshots(lxmd, inst):
    return {s["name"]: s for s in assert_sync(
        lxmd.api("GET", "/1.0/instances/%s/snapshots?recursion=1" % inst))}


def parse(ts):
    """An RFC 3339 time to whole UTC seconds (the fraction is compared separately)."""
    return datetime.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def assert_expires_after(snap, delta):
    assert snap["expires_at"] != ZERO, snap
    assert parse(snap["expires_at"]) - parse(snap["created_at"]) == delta, snap
    # Same fraction of a second: expires_at is created_at plus the expiry exactly.
    assert snap["expires_at"][19:] == snap["created_at"][19:], snap


def test_schedule_expiry_and_stopped(lxmd, launched):
    running = launched()
    stopped = launched()
    stopped_too = launched()
    for name in (stopped, stopped_too):
        lxmd.cli("stop", "--force", name)

    # The set-up must not straddle a minute boundary: then all of it is seen at the next one.
    while time.time() % 60 > 40:
        time.sleep(0.5)
    lxmd.cli("config", "set", running, "snapshots.expiry=1d 3H")
    lxmd.cli("config", "set", running, "snapshots.pattern=auto-%d")

    # A manual snapshot while snapshots.expiry is set expires by it; one that asks for no
    # expiry (lxc snapshot --no-expiry sends the zero time) does not.
    lxmd.cli("snapshot", running, "manual")
    done = lxmd.wait_op(assert_async(lxmd.api(
        "POST", "/1.0/instances/%s/snapshots" % running,
        {"name": "forever", "expires_at": ZERO}))["id"])
    assert done["status"] == "Success", done
    # One that expires in a few seconds: the scheduler removes it.
    done = lxmd.wait_op(assert_async(lxmd.api(
        "POST", "/1.0/instances/%s/snapshots" % running,
        {"name": "short", "expires_at": rfc3339(time.time() + 3)}))["id"])
    assert done["status"] == "Success", done

    lxmd.cli("config", "set", running, "snapshots.schedule=* * * * *")
    lxmd.cli("config", "set", stopped, "snapshots.schedule=* * * * *")
    lxmd.cli("config", "set", stopped_too, "snapshots.schedule=@hourly, * * * * *")
    lxmd.cli("config", "set", stopped_too, "snapshots.schedule.stopped=true")
    assert time.time() % 60 < 58, "set-up too slow"

    snaps = snapshots(lxmd, running)
    assert_expires_after(snaps["manual"], datetime.timedelta(days=1, hours=3))
    assert snaps["forever"]["expires_at"] == ZERO, snaps["forever"]
    assert snaps["short"]["expires_at"] != ZERO, snaps["short"]

    def scheduled_done():
        s = snapshots(lxmd, running)
        auto = [n for n in s if re.fullmatch(r"auto-\d+", n)]
        return auto if auto and "short" not in s and snapshots(lxmd, stopped_too) else None

    auto = wait_for(scheduled_done, timeout=75,
                    what="a scheduled snapshot of %s, of %s, and 'short' expired"
                    % (running, stopped_too))
    snaps = snapshots(lxmd, running)
    assert set(snaps) >= {"manual", "forever"}, snaps.keys()
    # Once in the minute, by the pattern's first free number.
    assert auto == ["auto-0"], auto
    assert_expires_after(snaps[auto[0]], datetime.timedelta(days=1, hours=3))
    # The stopped instance with snapshots.schedule.stopped=true got one, by the default pattern
    # and without expiry; the stopped one without it got none in the same minute.
    assert list(snapshots(lxmd, stopped_too)) == ["snap0"]
    assert snapshots(lxmd, stopped_too)["snap0"]["expires_at"] == ZERO
    assert snapshots(lxmd, stopped) == {}
    # The files went with the row.
    assert not os.path.exists(
        os.path.join(lxmd.root, "containers-snapshots", running, "short"))
    # Taken through an operation as a client's snapshot is.
    ops = assert_sync(lxmd.api("GET", "/1.0/operations?recursion=1"))
    descs = [(o["description"], o["resources"].get("instances_snapshots"))
             for group in ops.values() for o in group]
    assert ("Snapshotting instance", ["/1.0/instances/%s/snapshots/%s" % (running, auto[0])]) \
        in descs, descs
    assert ("Deleting snapshot", ["/1.0/instances/%s/snapshots/short" % running]) in descs, descs


@pytest.mark.parametrize("key,value,fault", [
    ("snapshots.schedule", "61 * * * *", "minute"),
    ("snapshots.schedule", "* * * *", "expected 5"),
    ("snapshots.schedule", "@often", "@often"),
    ("snapshots.expiry", "2 weeks", "unit"),
    ("snapshots.expiry", "3h", "unknown unit 'h'"),
    ("snapshots.pattern", "a/%d", "invalid name"),
    ("snapshots.pattern", "s%s", "%d"),
    ("snapshots.schedule.stopped", "maybe", "boolean"),
    ("snapshots.frequency", "1", "unknown config key"),
])
def test_invalid_values_refused(lxmd, launched, key, value, fault):
    name = launched()
    lxmd.cli("config", "set", name, "snapshots.expiry=2w")
    r = lxmd.cli("config", "set", name, "%s=%s" % (key, value), check=False)
    assert r.returncode == 1 and key in r.stderr and fault in r.stderr, r.stderr
    assert lxmd.cli("config", "get", name, key).stdout.strip() == ("2w" if key ==
                                                                  "snapshots.expiry" else "")
