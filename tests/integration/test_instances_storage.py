"""Instances on storage pools, as a user sees them, on each driver (dir, btrfs on a loop file,
overlay): launch into the pool that `lxm init --auto` made, snapshot, restore, copy (of the
instance and of a snapshot), move, delete; what each driver makes on disk (btrfs subvolumes and
read-only snapshots, overlay mounts); a server without a root disk device refuses to create; a
restarted lxmd mounts its volumes again."""

import os
import stat
import subprocess
import time

import pytest

from lxmtest import assert_async, unique

pytestmark = pytest.mark.skipif(
    not os.access("/bin/busybox", os.X_OK), reason="busybox-static is not installed")


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path + "/")]


def sh(d, name, script):
    return d.cli("exec", name, "--", "sh", "-c", script).stdout


def update(d, method, name, body):
    """PUT or PATCH of an instance, waited for (LXD answers both with an operation)."""
    done = d.wait_op(assert_async(d.api(method, "/1.0/instances/" + name, body))["id"])
    assert done["status"] == "Success", done


def volumes(d, pool="default"):
    r = d.api("GET", "/1.0/storage-pools/%s/volumes?recursion=1" % pool)
    assert r.status == 200, r
    return sorted("%s/%s" % (v["type"], v["name"]) for v in r.json["metadata"])


@pytest.fixture(params=["dir", "btrfs", "overlay"])
def pooled(request, lxmd_factory):
    d = lxmd_factory(storage=request.param)
    d.start()
    d.driver = request.param
    d.made = []
    yield d
    for n in d.made:
        d.cli("delete", "-f", n, check=False)


def test_launch_snapshot_restore_copy_move_delete(pooled):
    d = pooled
    c1, c2, c3, c4 = (unique("c") for _ in range(4))
    d.made += [c1, c2, c3, c4]
    d.cli("launch", "busybox", c1, timeout=120)
    pool_dir = os.path.join(d.root, "storage-pools", "default")
    vol = os.path.join(pool_dir, "containers", c1)
    assert os.path.realpath(os.path.join(d.root, "containers", c1)) == vol
    assert os.path.isdir(os.path.join(vol, "rootfs", "bin"))

    sh(d, c1, "echo one > /root/a")
    d.cli("snapshot", c1, "s0")
    sh(d, c1, "echo two > /root/a; echo new > /root/b")
    snap = os.path.join(pool_dir, "containers-snapshots", c1, "s0")
    assert os.path.isdir(snap)

    # A copy of the running instance has what it has now; one of the snapshot what it had.
    d.cli("copy", c1, c2)
    d.cli("copy", c1 + "/s0", c3)
    d.cli("stop", "-f", c1)
    d.cli("restore", c1, "s0")
    d.cli("start", c1)
    assert sh(d, c1, "cat /root/a") == "one\n"
    assert sh(d, c1, "test -e /root/b && echo yes || echo no") == "no\n"

    d.cli("start", c2)
    assert sh(d, c2, "cat /root/a; cat /root/b") == "two\nnew\n"
    d.cli("start", c3)
    assert sh(d, c3, "cat /root/a") == "one\n"
    # The copy keeps the source's config but none of its volatile state.
    src = d.api("GET", "/1.0/instances/%s" % c1).json["metadata"]["config"]
    cfg = d.api("GET", "/1.0/instances/%s" % c2).json["metadata"]["config"]
    assert cfg.get("volatile.base_image") == src.get("volatile.base_image")
    assert cfg.get("image.os") == src.get("image.os")

    # move: refused while running, then the instance, its volume and its snapshots follow.
    d.cli("snapshot", c3, "keep")
    r = d.cli("move", c3, c4, check=False)
    assert r.returncode != 0 and "stop it first" in r.stderr
    d.cli("stop", "-f", c3)
    d.cli("move", c3, c4)
    names = [i["name"] for i in d.api("GET", "/1.0/instances?recursion=1").json["metadata"]]
    assert c4 in names and c3 not in names
    assert not os.path.lexists(os.path.join(d.root, "containers", c3))
    assert os.path.isdir(os.path.join(d.root, "containers-snapshots", c4, "keep", "rootfs"))
    d.cli("start", c4)
    assert sh(d, c4, "cat /root/a") == "one\n"

    assert [v for v in volumes(d) if v.startswith("container/")] == \
        sorted("container/%s" % n for n in (c1, c2, c4))

    for n in (c1, c2, c4):
        d.cli("delete", "-f", n)
    assert [v for v in volumes(d) if v.startswith("container/")] == []
    for n in (c1, c2, c3, c4):
        assert not os.path.lexists(os.path.join(d.root, "containers", n))
        assert not os.path.lexists(os.path.join(pool_dir, "containers", n))
        assert not os.path.lexists(os.path.join(pool_dir, "containers-snapshots", n))
    assert [m for m in mounts_under(pool_dir) if "/containers" in m] == []


def test_driver_layout(pooled):
    d = pooled
    c = unique("c")
    d.made.append(c)
    d.cli("launch", "busybox", c, timeout=120)
    d.cli("snapshot", c, "s0")
    pool_dir = os.path.join(d.root, "storage-pools", "default")
    vol = os.path.join(pool_dir, "containers", c)
    snap = os.path.join(pool_dir, "containers-snapshots", c, "s0")
    if d.driver == "btrfs":
        # An instance is a subvolume (inode 256); its snapshot is a read-only one.
        assert os.stat(vol).st_ino == 256
        assert os.stat(snap).st_ino == 256
        r = subprocess.run(["touch", os.path.join(snap, "rootfs", "x")], capture_output=True)
        assert r.returncode != 0 and "Read-only" in r.stderr.decode()
    elif d.driver == "overlay":
        assert os.path.join(vol, "rootfs") in mounts_under(pool_dir)
    else:
        assert os.path.join(vol, "rootfs") not in mounts_under(pool_dir)
        assert os.path.isdir(os.path.join(snap, "rootfs", "bin"))


def test_restart_mounts_volumes_again(pooled):
    d = pooled
    c = unique("c")
    d.made.append(c)
    d.cli("launch", "busybox", c, timeout=120)
    sh(d, c, "echo kept > /root/f")
    d.cli("stop", "-f", c)
    d.restart()
    d.cli("start", c)
    assert sh(d, c, "cat /root/f") == "kept\n"


def test_no_root_disk_device_refuses_create(lxmd_factory):
    d = lxmd_factory(storage=None)
    d.start()
    name = unique("c")
    r = d.cli("launch", "busybox", name, check=False, timeout=120)
    assert r.returncode != 0
    assert "no root disk device" in r.stderr and "lxm init --auto" in r.stderr, r.stderr
    assert d.api("GET", "/1.0/instances/%s" % name).status == 404
    assert not os.path.lexists(os.path.join(d.root, "containers", name))


def test_copy_errors(pooled):
    d = pooled
    c = unique("c")
    d.made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    r = d.cli("copy", unique("missing"), unique("x"), check=False)
    assert r.returncode != 0 and "not found" in r.stderr
    r = d.cli("copy", c + "/nosnap", unique("x"), check=False)
    assert r.returncode != 0 and "nosnap" in r.stderr
    r = d.cli("copy", c, c, check=False)
    assert r.returncode != 0 and "exists" in r.stderr
    r = d.cli("move", c, "bad/name", check=False)
    assert r.returncode != 0


def test_unprivileged_ownership(pooled):
    """Files keep their owners on every driver: the container sees root's files as 0 0, and what
    it writes is stored with the container's ids (what the idmapped rootfs writes, as on a dir
    pool) and seen from the host through the container's mounts as its mapped ids. On overlay the
    rootfs is an overlay of idmapped layers: new files, copied-up and deleted (whiteout) lower
    files all land in the instance's upper dir."""
    d = pooled
    c = unique("c")
    d.made.append(c)
    d.cli("launch", "busybox", c, timeout=120)
    listing = {line.split()[-1]: line.split()[2:4]
               for line in sh(d, c, "ls -ln /").splitlines() if line.startswith(("d", "-"))}
    assert listing["bin"] == ["0", "0"] and listing["etc"] == ["0", "0"], listing
    sh(d, c, "touch /root/x; touch /root/y; chown 1000:1001 /root/y; echo added >> /etc/passwd; "
             "rm /etc/hostname")
    assert sh(d, c, "stat -c '%u %g' /root/x /root/y") == "0 0\n1000 1001\n"
    assert "added" in sh(d, c, "cat /etc/passwd")
    assert sh(d, c, "test -e /etc/hostname && echo yes || echo no") == "no\n"

    pid = d.api("GET", "/1.0/instances/%s/state" % c).json["metadata"]["pid"]
    with open("/proc/%d/uid_map" % pid) as f:
        uid_base = int(f.read().split()[1])
    with open("/proc/%d/gid_map" % pid) as f:
        gid_base = int(f.read().split()[1])
    assert uid_base != 0 and gid_base != 0
    # Through the container's own mounts the host sees the mapped ids.
    st = os.stat("/proc/%d/root/root/x" % pid)
    assert (st.st_uid, st.st_gid) == (uid_base, gid_base)
    st = os.stat("/proc/%d/root/root/y" % pid)
    assert (st.st_uid, st.st_gid) == (uid_base + 1000, gid_base + 1001)

    pool_dir = os.path.join(d.root, "storage-pools", "default")
    if d.driver == "overlay":
        stored = os.path.join(pool_dir, ".overlay", c, "upper")
    else:
        stored = os.path.join(pool_dir, "containers", c, "rootfs")
    # On disk the ids are the container's, as the idmapped mount writes them.
    for path, ids in (("root/x", (0, 0)), ("root/y", (1000, 1001)), ("etc/passwd", (0, 0))):
        st = os.lstat(os.path.join(stored, path))
        assert (st.st_uid, st.st_gid) == ids, path
    if d.driver == "overlay":
        # The change to a lower file is a copy-up and the removal a whiteout, both in the upper
        # dir; the image's own rootfs is untouched.
        with open(os.path.join(stored, "etc", "passwd")) as f:
            assert "added" in f.read()
        st = os.lstat(os.path.join(stored, "etc", "hostname"))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        images = os.path.join(pool_dir, "images")
        for fp in os.listdir(images):
            assert os.path.exists(os.path.join(images, fp, "rootfs", "etc", "hostname"))


def test_kill_during_creates_leaves_no_residue(pooled):
    """lxmd killed while it creates instances from an image: after the restart every instance
    it lists is whole, and the pool holds nothing else (no half-made volume, no staging
    directory, no row without files)."""
    d = pooled
    d.cli("image", "list")  # the daemon answers
    warm = unique("w")
    d.made.append(warm)
    d.cli("init", "busybox", warm, timeout=120)  # the image exists: creates are copies now
    names = [unique("k%d" % i) for i in range(12)]
    d.made.extend(names)
    procs = [d.cli_popen("init", "busybox", n) for n in names]
    time.sleep(0.15)
    d.kill9()
    for p in procs:
        p.communicate(timeout=30)
    d.start()
    listed = {i["name"] for i in d.api("GET", "/1.0/instances?recursion=1").json["metadata"]}
    assert warm in listed
    pool_dir = os.path.join(d.root, "storage-pools", "default")
    for n in names:
        vol = os.path.join(pool_dir, "containers", n)
        if n in listed:
            assert os.path.isfile(os.path.join(vol, "backup.yaml")), n
            assert os.path.isdir(os.path.join(vol, "rootfs", "bin")), n
        else:
            assert not os.path.lexists(vol), n
            assert not os.path.lexists(os.path.join(d.root, "containers", n)), n
    entries = sorted(os.listdir(os.path.join(pool_dir, "containers")))
    assert entries == sorted(listed), entries
    assert [v for v in volumes(d) if v.startswith("container/")] == \
        sorted("container/%s" % n for n in listed)
    # What was rolled back can be created again.
    for n in names:
        if n not in listed:
            d.cli("init", "busybox", n, timeout=120)
            break


def test_full_pool_gives_a_clear_error_and_leaves_nothing(lxmd_factory):
    """A btrfs pool with no space left: creating an instance from an image the pool does not
    hold yet fails with "No space left on device", and leaves no volume, no staging directory
    and no row behind."""
    d = lxmd_factory(storage=None)
    d.start()
    d.cli("storage", "create", "default", "btrfs", "size=300MiB")
    r = d.api("PATCH", "/1.0/profiles/default",
              {"devices": {"root": {"type": "disk", "path": "/", "pool": "default"}}})
    assert r.status == 200, r
    c = unique("c")
    d.cli("init", "busybox", c, timeout=120)
    # A second image (published from c) that the pool has no volume of yet.
    d.cli("publish", c, "--alias", "second", timeout=120)
    vol = os.path.join(d.root, "storage-pools", "default", "containers", c, "rootfs")
    with open(os.path.join(vol, "fill"), "wb") as f:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    name = unique("c")
    r = d.cli("init", "second", name, check=False, timeout=120)
    assert r.returncode != 0
    assert "No space left on device" in r.stderr and name in r.stderr, r.stderr
    assert d.api("GET", "/1.0/instances/%s" % name).status == 404
    pool_dir = os.path.join(d.root, "storage-pools", "default")
    for sub in ("containers", "images"):
        left = [e for e in os.listdir(os.path.join(pool_dir, sub)) if e.startswith(".tmp-")]
        assert left == [], left
    assert not os.path.lexists(os.path.join(pool_dir, "containers", name))
    assert [v for v in volumes(d) if v.startswith("container/")] == ["container/" + c]
    # Space again: the same create works.
    os.unlink(os.path.join(vol, "fill"))
    subprocess.run(["sync"], check=True)
    d.cli("init", "second", name, timeout=120)
    d.cli("delete", c)
    d.cli("delete", name)


def test_root_disk_size_is_a_quota(pooled):
    """size= on the root disk device: a btrfs quota (writing past it fails inside the container,
    and unsetting it lifts it at the next start); dir and overlay pools refuse it at start with
    the reason."""
    d = pooled
    c = unique("c")
    d.made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    root = {"type": "disk", "path": "/", "pool": "default", "size": "32MiB"}
    update(d, "PATCH", c, {"devices": {"root": root}})
    if d.driver != "btrfs":
        r = d.cli("start", c, check=False)
        assert r.returncode != 0 and "root disk size" in r.stderr and \
            "cannot limit a volume's size" in r.stderr, r.stderr
        return
    d.cli("start", c)
    r = d.cli("exec", c, "--", "sh", "-c",
              "dd if=/dev/zero of=/root/big bs=1M count=64 2>&1; sync", check=False)
    assert "Disk quota exceeded" in r.stdout + r.stderr, r
    d.cli("stop", "-f", c)
    del root["size"]
    update(d, "PUT", c, {"devices": {"root": root}, "config": {}, "profiles": ["default"]})
    d.cli("start", c)
    r = d.cli("exec", c, "--", "sh", "-c",
              "rm -f /root/big; dd if=/dev/zero of=/root/big bs=1M count=64 2>&1 && sync")
    assert "64" in r.stdout


def test_copy_with_snapshots_is_refused_not_silent(pooled):
    """LXD copies snapshots unless instance_only is set; lxm cannot yet, so such a request is
    refused with the way out, and nothing is made."""
    d = pooled
    c, dst = unique("c"), unique("c")
    d.made += [c, dst]
    d.cli("init", "busybox", c, timeout=120)
    d.cli("snapshot", c, "s0")
    r = d.api("POST", "/1.0/instances",
              {"name": dst, "source": {"type": "copy", "source": c, "instance_only": False}})
    assert r.status == 501, r
    assert "snapshots" in r.json["error"] and "--instance-only" in r.json["error"], r.json
    assert d.api("GET", "/1.0/instances/" + dst).status == 404
    d.cli("copy", c, dst)  # lxm copy asks for the instance only
    assert d.api("GET", "/1.0/instances/%s/snapshots" % dst).json["metadata"] == []


def test_info_shows_disk_usage_and_snapshot_sizes(pooled):
    d = pooled
    c = unique("c")
    d.made.append(c)
    d.cli("launch", "busybox", c, timeout=120)
    sh(d, c, "dd if=/dev/urandom of=/root/blob bs=1M count=3 2>/dev/null; sync")
    d.cli("snapshot", c, "s0")
    state = d.api("GET", "/1.0/instances/%s/state" % c).json["metadata"]
    usage = state["disk"]["root"]["usage"]
    # The volume holds the 3 MiB written inside (and, on dir, the whole busybox tree).
    assert usage >= 3 << 20, state["disk"]
    info = d.cli("info", c).stdout
    assert "Disk usage:" in info and "root:" in info, info
    snaps = d.api("GET", "/1.0/instances/%s/snapshots?recursion=1" % c).json["metadata"]
    assert len(snaps) == 1 and snaps[0]["size"] >= 0, snaps
    assert "SIZE" in info and "s0" in info, info
