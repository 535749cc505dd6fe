"""Instance snapshots through lxmd, as a user sees them: `lxm snapshot` of stopped and running
busybox containers (what was written before is in the snapshot, what came after is not), auto
names, the REST objects, rename and edit, refused names, restore of files and config, restore of a
running instance refused, delete of one snapshot and of the instance with all of them, failures
that leave nothing behind, and publish of a snapshot as an image."""

import os
import sqlite3
import subprocess

import pytest

from lxmtest import (assert_async, assert_error_envelope, assert_sync, assert_timestamps, unique,
                     wait_for)

pytestmark = pytest.mark.skipif(
    not os.access("/bin/busybox", os.X_OK), reason="busybox-static is not installed")

ZERO = "0001-01-01T00:00:00Z"


@pytest.fixture
def names(lxmd):
    """Instance names to force-delete at the end."""
    made = []
    yield made
    for n in made:
        lxmd.cli("delete", "-f", n, check=False)


def launch(lxmd, names, image="busybox", name=None):
    name = name or unique("c")
    names.append(name)
    lxmd.cli("launch", image, name, timeout=180)
    return name


def sh(lxmd, name, script):
    return lxmd.cli("exec", name, "--", "sh", "-c", script).stdout


def snap_dir(lxmd, inst, snap=None):
    d = os.path.join(lxmd.root, "containers-snapshots", inst)
    return os.path.join(d, snap) if snap else d


def snap_file(lxmd, inst, snap, path):
    return os.path.join(snap_dir(lxmd, inst, snap), "rootfs", path.lstrip("/"))


def db_rows(lxmd, inst=None):
    """Snapshot rows (instance name, snapshot name) as the database holds them."""
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(lxmd.root, "lxm.db"), uri=True)
    try:
        q = ("SELECT i.name, s.name FROM instances_snapshots s JOIN instances i"
             " ON i.id = s.instance_id")
        rows = con.execute(q).fetchall()
        orphans = con.execute(
            "SELECT (SELECT COUNT(*) FROM instances_snapshots_config WHERE instance_snapshot_id"
            " NOT IN (SELECT id FROM instances_snapshots)) + (SELECT COUNT(*) FROM"
            " instances_snapshots_profiles WHERE instance_snapshot_id NOT IN (SELECT id FROM"
            " instances_snapshots))").fetchone()[0]
    finally:
        con.close()
    assert orphans == 0, "orphan snapshot config/profile rows"
    return sorted(r for r in rows if inst is None or r[0] == inst)


def snapshots_api(lxmd, inst, recursion=0, prefix="/1.0/instances"):
    return assert_sync(lxmd.api("GET", "%s/%s/snapshots?recursion=%d" % (prefix, inst, recursion)))


def op_of(lxmd, r, timeout=60):
    op = assert_async(r)
    return lxmd.wait_op(op["id"], timeout=timeout)


def post_snapshot(lxmd, inst, body):
    return lxmd.api("POST", "/1.0/instances/%s/snapshots" % inst, body)


def leftovers(lxmd, inst):
    """Work-in-progress directories of the instance's snapshots and restores."""
    found = []
    d = snap_dir(lxmd, inst)
    if os.path.isdir(d):
        found += [e for e in os.listdir(d) if e.startswith(".")]
    idir = os.path.join(lxmd.root, "containers", inst)
    found += [e for e in os.listdir(idir) if e.startswith(".restore-")]
    return found


def test_snapshot_stopped_restore_files_and_config(lxmd, names):
    c = launch(lxmd, names)
    sh(lxmd, c, "echo before > /root/before")
    lxmd.cli("stop", "--force", c)

    # lxc prints nothing; the first auto name is snap0.
    p = lxmd.cli("snapshot", c)
    assert p.stdout == "" and p.stderr == "", p
    assert snapshots_api(lxmd, c) == ["/1.0/instances/%s/snapshots/snap0" % c]
    assert os.path.isfile(snap_file(lxmd, c, "snap0", "/root/before"))
    # The image's metadata and templates come along (publish needs them).
    assert os.path.isfile(os.path.join(snap_dir(lxmd, c, "snap0"), "metadata.yaml"))
    assert os.path.isdir(os.path.join(snap_dir(lxmd, c, "snap0"), "templates"))

    # After the snapshot: a new file, a changed file, a deleted file, a new config key.
    lxmd.cli("start", c)
    sh(lxmd, c, "echo after > /root/after; echo changed > /root/before; rm /etc/hostname")
    lxmd.cli("stop", "--force", c)
    lxmd.cli("config", "set", c, "user.added=yes")
    assert not os.path.exists(snap_file(lxmd, c, "snap0", "/root/after"))
    with open(snap_file(lxmd, c, "snap0", "/root/before")) as f:
        assert f.read() == "before\n"

    # Auto names go on from the highest.
    lxmd.cli("snapshot", c)
    objs = snapshots_api(lxmd, c, 1)
    assert [s["name"] for s in objs] == ["snap0", "snap1"], objs
    s0, s1 = objs
    assert_timestamps(s0)
    assert s0["expires_at"] == ZERO and s0["stateful"] is False, s0
    assert s0["created_at"] <= s1["created_at"]
    assert "user.added" not in s0["config"] and s1["config"]["user.added"] == "yes", objs
    assert s0["config"]["image.os"] == "busybox", s0
    assert s0["profiles"] == ["default"] and isinstance(s0["devices"], dict), s0
    assert s0["expanded_config"]["image.os"] == "busybox", s0
    assert s0["architecture"] and s0["ephemeral"] is False, s0
    assert s0["size"] > 0, s0
    one = assert_sync(lxmd.api("GET", "/1.0/instances/%s/snapshots/snap0" % c))
    assert one == s0

    # lxm info lists both.
    info = lxmd.cli("info", c).stdout
    assert "Snapshots:" in info and "snap0" in info and "snap1" in info, info

    # Restore: files and config as they were at snap0.
    p = lxmd.cli("restore", c, "snap0")
    assert p.stdout == "", p
    inst = assert_sync(lxmd.api("GET", "/1.0/instances/" + c))
    assert "user.added" not in inst["config"], inst["config"]
    assert inst["profiles"] == ["default"]
    lxmd.cli("start", c)
    assert sh(lxmd, c, "cat /root/before") == "before\n"
    assert sh(lxmd, c, "test -e /root/after && echo yes || echo no") == "no\n"
    assert sh(lxmd, c, "cat /etc/hostname") == c + "\n"
    lxmd.cli("stop", "--force", c)

    # And forward again to snap1, pylxd style ("snap1", no instance prefix).
    done = op_of(lxmd, lxmd.api("PUT", "/1.0/instances/" + c, {"restore": "snap1"}))
    assert done["status"] == "Success", done
    inst = assert_sync(lxmd.api("GET", "/1.0/instances/" + c))
    assert inst["config"]["user.added"] == "yes"
    rootfs = os.path.join(lxmd.root, "containers", c, "rootfs")
    with open(os.path.join(rootfs, "root", "after")) as f:
        assert f.read() == "after\n"
    # The files the restore replaced go in the background.
    wait_for(lambda: leftovers(lxmd, c) == [], what="old files removed")
    # The snapshots are untouched by restores.
    assert os.path.isfile(snap_file(lxmd, c, "snap0", "/root/before"))
    assert not os.path.exists(snap_file(lxmd, c, "snap0", "/root/after"))
    assert db_rows(lxmd, c) == [(c, "snap0"), (c, "snap1")]


def test_snapshot_running_is_consistent_and_keeps_it_running(lxmd, names):
    c = launch(lxmd, names)
    sh(lxmd, c, "echo before > /root/before")
    lxmd.cli("snapshot", c, "live")
    st = assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % c))
    assert st["status"] == "Running", st
    # Thawed: it still runs commands.
    sh(lxmd, c, "echo after > /root/after")
    assert os.path.isfile(snap_file(lxmd, c, "live", "/root/before"))
    assert not os.path.exists(snap_file(lxmd, c, "live", "/root/after"))

    # An instance its user froze stays frozen.
    lxmd.cli("pause", c)
    lxmd.cli("snapshot", c, "frozen")
    st = assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % c))
    assert st["status"] == "Frozen", st
    assert os.path.isfile(snap_file(lxmd, c, "frozen", "/root/after"))
    lxmd.cli("start", c)

    # A frozen instance is not restored under its feet.
    lxmd.cli("pause", c)
    r = lxmd.api("PUT", "/1.0/instances/" + c, {"restore": c + "/live"})
    msg = assert_error_envelope(r, 400)
    assert "the instance is Frozen" in msg, msg
    lxmd.cli("start", c)
    assert sh(lxmd, c, "cat /root/after") == "after\n"

    # A running one is stopped, restored and started again, as LXD does.
    pid = assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % c))["pid"]
    lxmd.cli("restore", c, "live")
    st = assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % c))
    assert st["status"] == "Running" and st["pid"] != pid, st
    assert sh(lxmd, c, "cat /root/before; test -e /root/after && echo yes || echo no") == \
        "before\nno\n"


def test_names_conflicts_rename_and_edit(lxmd, names):
    c = launch(lxmd, names)
    lxmd.cli("stop", "--force", c)
    lxmd.cli("snapshot", c, "first")

    # The same name twice: 409, and nothing changes.
    r = post_snapshot(lxmd, c, {"name": "first"})
    assert "already exists" in assert_error_envelope(r, 409)
    p = lxmd.cli("snapshot", c, "first", check=False)
    assert p.returncode != 0 and "already exists" in p.stderr, p
    # Bad names: 400, nothing on disk.
    for bad in ("a/b", "1st", "-x", "a_b", "..", ".tmp-x", "x" * 64):
        r = post_snapshot(lxmd, c, {"name": bad})
        assert "invalid name" in assert_error_envelope(r, 400), bad
    r = post_snapshot(lxmd, c, {"name": "st", "stateful": True})
    assert "stateful" in assert_error_envelope(r, 400)
    assert sorted(os.listdir(snap_dir(lxmd, c))) == ["first"]
    assert db_rows(lxmd, c) == [(c, "first")]
    r = lxmd.api("GET", "/1.0/instances/%s/snapshots/nope" % c)
    assert "not found" in assert_error_envelope(r, 404)
    r = post_snapshot(lxmd, "nope", {"name": "x"})
    assert_error_envelope(r, 404)

    # Rename (POST {"name"}): files and row follow; onto an existing name: 409.
    lxmd.cli("snapshot", c, "second")
    r = lxmd.api("POST", "/1.0/instances/%s/snapshots/first" % c, {"name": "second"})
    assert_error_envelope(r, 409)
    done = op_of(lxmd, lxmd.api("POST", "/1.0/instances/%s/snapshots/first" % c,
                                {"name": "renamed"}))
    assert done["status"] == "Success", done
    assert [s["name"] for s in snapshots_api(lxmd, c, 1)] == ["renamed", "second"]
    assert sorted(os.listdir(snap_dir(lxmd, c))) == ["renamed", "second"]
    r = lxmd.api("POST", "/1.0/instances/%s/snapshots/renamed" % c, {"name": "bad/name"})
    assert_error_envelope(r, 400)

    # PUT sets expires_at and description; PATCH changes only what it names.
    path = "/1.0/instances/%s/snapshots/renamed" % c
    done = op_of(lxmd, lxmd.api("PUT", path, {"expires_at": "2100-01-02T03:04:05Z",
                                              "description": "keep"}))
    assert done["status"] == "Success", done
    s = assert_sync(lxmd.api("GET", path))
    assert s["expires_at"].startswith("2100-01-02T03:04:05") and s["description"] == "keep", s
    op_of(lxmd, lxmd.api("PATCH", path, {"description": "patched"}))
    s = assert_sync(lxmd.api("GET", path))
    assert s["expires_at"].startswith("2100-01-02T03:04:05") and s["description"] == "patched"
    r = lxmd.api("PUT", path, {"expires_at": "tomorrow"})
    assert "expires_at" in assert_error_envelope(r, 400)

    # The legacy /1.0/containers tree serves the same snapshots with its own URLs.
    assert snapshots_api(lxmd, c, prefix="/1.0/containers") == [
        "/1.0/containers/%s/snapshots/renamed" % c, "/1.0/containers/%s/snapshots/second" % c]


def test_delete_snapshot_and_instance(lxmd, names):
    c = launch(lxmd, names)
    lxmd.cli("stop", "--force", c)
    lxmd.cli("snapshot", c, "s1")
    lxmd.cli("snapshot", c, "s2")
    lxmd.cli("delete", "%s/s1" % c)
    assert snapshots_api(lxmd, c) == ["/1.0/instances/%s/snapshots/s2" % c]
    assert db_rows(lxmd, c) == [(c, "s2")]
    # The files go in the background.
    wait_for(lambda: os.listdir(snap_dir(lxmd, c)) == ["s2"], what="s1's files removed")
    p = lxmd.cli("delete", "%s/s1" % c, check=False)
    assert p.returncode != 0 and "not found" in p.stderr, p

    # Deleting the instance takes every snapshot with it, files and rows.
    lxmd.cli("snapshot", c)
    lxmd.cli("delete", c)
    names.remove(c)
    assert not os.path.exists(snap_dir(lxmd, c))
    assert db_rows(lxmd) == []


def test_failures_leave_nothing(lxmd, names):
    c = launch(lxmd, names)
    sh(lxmd, c, "dd if=/dev/zero of=/root/big bs=1M count=4 2>/dev/null")
    lxmd.cli("stop", "--force", c)
    lxmd.cli("snapshot", c, "good")

    # A directory of that name that lxmd did not record: refused, and left as it was.
    stray = snap_dir(lxmd, c, "stray")
    os.makedirs(os.path.join(stray, "mine"))
    done = op_of(lxmd, post_snapshot(lxmd, c, {"name": "stray"}))
    assert done["status"] == "Failure" and "File exists" in done["err"], done
    assert "stray" in done["err"], done
    assert os.listdir(stray) == ["mine"]
    assert db_rows(lxmd, c) == [(c, "good")]
    os.rmdir(os.path.join(stray, "mine"))
    os.rmdir(stray)

    # No space left while copying: no row, no directory, no temporary files.
    mnt = snap_dir(lxmd, c)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt], check=True)
    try:
        done = op_of(lxmd, post_snapshot(lxmd, c, {"name": "nospace"}))
        assert done["status"] == "Failure", done
        assert "No space left" in done["err"] and "nospace" in done["err"], done
        assert os.listdir(mnt) == [], os.listdir(mnt)
        assert db_rows(lxmd, c) == [(c, "good")]
    finally:
        subprocess.run(["umount", mnt], check=True)

    # The snapshots directory is not a directory: the step and the path are named.
    other = launch(lxmd, names)
    lxmd.cli("stop", "--force", other)
    os.makedirs(os.path.join(lxmd.root, "containers-snapshots"), exist_ok=True)
    with open(snap_dir(lxmd, other), "w") as f:
        f.write("in the way\n")
    p = lxmd.cli("snapshot", other, "x", check=False)
    assert p.returncode != 0 and "Not a directory" in p.stderr and other in p.stderr, p
    assert db_rows(lxmd, other) == []
    os.unlink(snap_dir(lxmd, other))

    # A restore that cannot copy leaves the instance as it was.
    marker = os.path.join(lxmd.root, "containers", c, "rootfs", "root", "marker")
    with open(marker, "w") as f:
        f.write("current\n")
    lxmd.cli("config", "set", c, "user.now=1")
    os.rename(os.path.join(snap_dir(lxmd, c, "good"), "rootfs"),
              os.path.join(snap_dir(lxmd, c, "good"), "moved"))
    p = lxmd.cli("restore", c, "good", check=False)
    assert p.returncode != 0 and "rootfs" in p.stderr, p
    with open(marker) as f:
        assert f.read() == "current\n"
    inst = assert_sync(lxmd.api("GET", "/1.0/instances/" + c))
    assert inst["config"]["user.now"] == "1"
    assert leftovers(lxmd, c) == []
    os.rename(os.path.join(snap_dir(lxmd, c, "good"), "moved"),
              os.path.join(snap_dir(lxmd, c, "good"), "rootfs"))


def test_publish_snapshot_and_launch_from_it(lxmd, names):
    c = launch(lxmd, names)
    sh(lxmd, c, "echo before > /root/before")
    lxmd.cli("snapshot", c, "snap0")
    sh(lxmd, c, "echo after > /root/after")
    alias = unique("img")
    # The instance keeps running: a snapshot does not change.
    p = lxmd.cli("publish", "%s/snap0" % c, "--alias", alias, timeout=120)
    assert "fingerprint" in p.stdout, p
    img = assert_sync(lxmd.api("GET", "/1.0/images/aliases/" + alias))
    info = assert_sync(lxmd.api("GET", "/1.0/images/" + img["target"]))
    assert info["filename"] == "%s-snap0.tar.gz" % c, info
    c2 = launch(lxmd, names, image=alias)
    assert sh(lxmd, c2, "cat /root/before") == "before\n"
    assert sh(lxmd, c2, "test -e /root/after && echo yes || echo no") == "no\n"
    assert sh(lxmd, c2, "cat /etc/hostname") == c2 + "\n"

    # A snapshot that does not exist, or a name without one.
    r = lxmd.api("POST", "/1.0/images", {"source": {"type": "snapshot",
                                                      "name": "%s/nope" % c}})
    assert "not found" in assert_error_envelope(r, 404)
    r = lxmd.api("POST", "/1.0/images", {"source": {"type": "snapshot", "name": c}})
    assert "INSTANCE/SNAPSHOT" in assert_error_envelope(r, 400)


def test_start_up_sweeps_interrupted_snapshots_and_restores(lxmd_factory):
    d = lxmd_factory()
    d.start()
    d.cli("init", "busybox", "sw1", timeout=120)
    d.cli("snapshot", "sw1", "keep")
    d.stop_checked()
    pool = os.path.join(d.root, "storage-pools", "default")
    snaps = os.path.join(pool, "containers-snapshots", "sw1")
    inst = os.path.join(pool, "containers", "sw1")
    # What a kill during a snapshot, a copy or a create leaves: staging directories beside
    # the snapshot or volume they were to become.
    left = [os.path.join(snaps, ".tmp-s1-abc123", "rootfs"),
            os.path.join(pool, "containers", ".tmp-sw2-0011223344556677", "rootfs"),
            os.path.join(pool, "images", ".tmp-0123abcd-XyZ123", "rootfs")]
    for p in left:
        os.makedirs(p)
        with open(os.path.join(p, "f"), "w") as f:
            f.write("x")
    d.start()
    wait_for(lambda: not any(os.path.exists(os.path.dirname(p)) for p in left),
             what="leftovers to be removed")
    # What is not a leftover stays: the snapshot and the instance's rootfs.
    assert os.path.isdir(os.path.join(snaps, "keep", "rootfs"))
    assert os.path.isdir(os.path.join(inst, "rootfs", "sbin"))
    for p in left:
        assert "removing %s" % os.path.dirname(p) in d.log_text()
    d.cli("delete", "sw1")
