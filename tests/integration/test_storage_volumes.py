"""Custom storage volumes, as a user sees them, on dir and btrfs pools: create, list, show, set,
rename, snapshot, restore and delete through the CLI and the API; size quotas where the driver has
them (btrfs: a write past the size fails inside the container), refused with a clear error where it
has none (dir); attached to a busybox container (files written inside land in the volume with the
container's ids, seen from the host through its mounts as its host ids, and survive a stop and
start), hot-plugged into and out of a running one, detached; delete refused while an instance uses
the volume; host directories (read-only too) as disk devices; bad names and sizes refused."""

import os

import pytest

from lxmtest import assert_async, assert_sync, unique

pytestmark = pytest.mark.skipif(
    not os.access("/bin/busybox", os.X_OK), reason="busybox-static is not installed")

VOLS = "/1.0/storage-pools/default/volumes/custom"


@pytest.fixture(params=["dir", "btrfs"])
def pooled(request, lxmd_factory):
    d = lxmd_factory(storage=request.param)
    d.start()
    d.driver = request.param
    d.pool_dir = os.path.join(d.root, "storage-pools", "default")
    d.made = []
    yield d
    for n in d.made:
        d.cli("delete", "-f", n, check=False)


def custom_names(d):
    r = d.api("GET", "/1.0/storage-pools/default/volumes/custom")
    return sorted(u.rsplit("/", 1)[1] for u in assert_sync(r))


def fails(d, *args):
    p = d.cli(*args, check=False)
    assert p.returncode != 0, "lxm %s should have failed: %s" % (" ".join(args), p.stdout)
    return p.stderr


def test_volume_life_cycle_cli(pooled):
    d = pooled
    d.cli("storage", "volume", "create", "default", "v1", "--description", "data")
    vol = os.path.join(d.pool_dir, "custom", "v1")
    assert os.path.isdir(vol)
    assert custom_names(d) == ["v1"]
    out = d.cli("storage", "volume", "list", "default").stdout
    assert "v1" in out and "custom" in out
    show = d.cli("storage", "volume", "show", "default", "v1").stdout
    assert "name: v1" in show and "description: data" in show and "type: custom" in show

    # Files, a snapshot, changes, a restore brings the snapshot's files back.
    with open(os.path.join(vol, "f"), "w") as f:
        f.write("one")
    d.cli("storage", "volume", "snapshot", "default", "v1", "s0")
    assert os.path.isfile(os.path.join(d.pool_dir, "custom-snapshots", "v1", "s0", "f"))
    snaps = assert_sync(d.api("GET", VOLS + "/v1/snapshots"))
    assert snaps == [VOLS + "/v1/snapshots/s0"]
    s0 = assert_sync(d.api("GET", VOLS + "/v1/snapshots/s0"))
    assert s0["name"] == "s0"
    with open(os.path.join(vol, "f"), "w") as f:
        f.write("two")
    d.cli("storage", "volume", "restore", "default", "v1", "s0")
    with open(os.path.join(d.pool_dir, "custom", "v1", "f")) as f:
        assert f.read() == "one"
    # An automatic snapshot name, then a snapshot deleted through the API.
    d.cli("storage", "volume", "snapshot", "default", "v1")
    names = [u.rsplit("/", 1)[1] for u in assert_sync(d.api("GET", VOLS + "/v1/snapshots"))]
    assert names == ["s0", "snap0"]
    op = assert_async(d.api("DELETE", VOLS + "/v1/snapshots/snap0"))
    assert d.wait_op(op["id"])["status"] == "Success"
    assert not os.path.exists(os.path.join(d.pool_dir, "custom-snapshots", "v1", "snap0"))
    assert "not found" in fails(d, "storage", "volume", "restore", "default", "v1", "nope")

    # Rename carries the files and the snapshots.
    d.cli("storage", "volume", "rename", "default", "v1", "v2")
    assert custom_names(d) == ["v2"]
    assert not os.path.exists(vol)
    with open(os.path.join(d.pool_dir, "custom", "v2", "f")) as f:
        assert f.read() == "one"
    assert assert_sync(d.api("GET", VOLS + "/v2/snapshots")) == [VOLS + "/v2/snapshots/s0"]
    assert d.api("GET", VOLS + "/v1").status == 404

    d.cli("storage", "volume", "delete", "default", "v2")
    assert custom_names(d) == []
    assert not os.path.exists(os.path.join(d.pool_dir, "custom", "v2"))
    assert not os.path.exists(os.path.join(d.pool_dir, "custom-snapshots", "v2"))
    # The pool is free again.
    d.cli("storage", "volume", "create", "default", "v3")
    d.cli("storage", "volume", "delete", "default", "v3")


def test_volume_api_put_patch_etag(pooled):
    d = pooled
    # Created when the answer comes (sync, as LXD without storage_and_profile_operations).
    assert_sync(d.api("POST", VOLS, {"name": "a", "description": "x", "config": {},
                                     "source": {"type": ""}}))
    r = d.api("GET", VOLS + "/a")
    v = assert_sync(r)
    assert v["name"] == "a" and v["type"] == "custom" and v["description"] == "x"
    assert v["used_by"] == [] and v["content_type"] == "filesystem"
    etag = r.headers["ETag"]
    assert etag
    r = d.api("PATCH", VOLS + "/a", {"description": "y"})
    assert_sync(r)
    assert assert_sync(d.api("GET", VOLS + "/a"))["description"] == "y"
    # The old ETag no longer matches.
    r = d.api("PUT", VOLS + "/a", {"description": "z", "config": {}}, headers={"If-Match": etag})
    assert r.status == 412, r
    r = d.api("PUT", VOLS + "/a", {"description": "z", "config": {}})
    assert_sync(r)
    assert assert_sync(d.api("GET", VOLS + "/a"))["description"] == "z"
    r = d.api("PUT", VOLS + "/a", {"config": {"bogus": "1"}})
    assert r.status == 400 and "unknown config key 'bogus'" in r.json["error"], r
    # Duplicates, bad names, other volume types.
    r = d.api("POST", VOLS, {"name": "a"})
    assert r.status == 409 and "already exists" in r.json["error"], r
    for bad in ("a/b", "..", ""):
        r = d.api("POST", VOLS, {"name": bad})
        assert r.status == 400, (bad, r)
    r = d.api("POST", "/1.0/storage-pools/default/volumes/image", {"name": "q"})
    assert r.status == 400 and "only custom volumes" in r.json["error"], r
    r = d.api("POST", "/1.0/storage-pools/nopool/volumes/custom", {"name": "q"})
    assert r.status == 404, r
    assert "invalid name" in fails(d, "storage", "volume", "create", "default", "b/c")
    r = d.api("DELETE", VOLS + "/a")
    assert_sync(r)
    assert d.api("DELETE", VOLS + "/a").status == 404


def test_volume_size(pooled):
    d = pooled
    if d.driver == "dir":
        err = fails(d, "storage", "volume", "create", "default", "q", "size=1GiB")
        assert "no volume quotas" in err and "dir" in err, err
        assert custom_names(d) == []
        d.cli("storage", "volume", "create", "default", "q")
        err = fails(d, "storage", "volume", "set", "default", "q", "size=1GiB")
        assert "no volume quotas" in err, err
        d.cli("storage", "volume", "delete", "default", "q")
        return
    err = fails(d, "storage", "volume", "create", "default", "q", "size=lots")
    assert "size" in err and "lots" in err, err
    err = fails(d, "storage", "volume", "create", "default", "q", "size=0")
    assert "size" in err, err
    assert custom_names(d) == []
    d.cli("storage", "volume", "create", "default", "q", "size=20MiB")
    v = assert_sync(d.api("GET", VOLS + "/q"))
    assert v["config"] == {"size": "20MiB"}
    d.cli("storage", "volume", "set", "default", "q", "size=30MiB")
    assert assert_sync(d.api("GET", VOLS + "/q"))["config"] == {"size": "30MiB"}
    d.cli("storage", "volume", "unset", "default", "q", "size")
    assert assert_sync(d.api("GET", VOLS + "/q"))["config"] == {}
    d.cli("storage", "volume", "delete", "default", "q")


def sh(d, name, script, check=True):
    return d.cli("exec", name, "--", "sh", "-c", script, check=check)


def container_ids(d, c):
    pid = assert_sync(d.api("GET", "/1.0/instances/%s/state" % c))["pid"]
    with open("/proc/%d/uid_map" % pid) as f:
        uid_base = int(f.read().split()[1])
    with open("/proc/%d/gid_map" % pid) as f:
        gid_base = int(f.read().split()[1])
    return pid, uid_base, gid_base


def test_attach_to_container(pooled):
    d = pooled
    c = unique("c")
    d.made.append(c)
    d.cli("launch", "busybox", c, timeout=120)
    d.cli("storage", "volume", "create", "default", "data")
    vol = os.path.join(d.pool_dir, "custom", "data")
    with open(os.path.join(vol, "from-host"), "w") as f:
        f.write("hello")

    d.cli("stop", c, timeout=60)
    d.cli("storage", "volume", "attach", "default", "data", c, "/mnt/data")
    dev = assert_sync(d.api("GET", "/1.0/instances/" + c))["devices"]["data"]
    assert dev == {"type": "disk", "pool": "default", "source": "data", "path": "/mnt/data"}
    v = assert_sync(d.api("GET", VOLS + "/data"))
    assert v["used_by"] == ["/1.0/instances/" + c]
    d.cli("start", c, timeout=60)

    # Inside: the host's file, owned by the container's root; a new file lands in the volume.
    assert sh(d, c, "cat /mnt/data/from-host").stdout == "hello"
    assert sh(d, c, "stat -c '%u %g' /mnt/data /mnt/data/from-host").stdout == "0 0\n0 0\n"
    sh(d, c, "echo inside > /mnt/data/new; mkdir /mnt/data/dir; touch /mnt/data/dir/x; "
             "chown 1000:1001 /mnt/data/dir/x")
    pid, uid_base, gid_base = container_ids(d, c)
    # The host sees the container's ids through its mounts, as for its rootfs; on disk the ids
    # are the container's own, as the idmapped rootfs writes them.
    st = os.stat("/proc/%d/root/mnt/data/new" % pid)
    assert (st.st_uid, st.st_gid) == (uid_base, gid_base)
    st = os.stat("/proc/%d/root/mnt/data/dir/x" % pid)
    assert (st.st_uid, st.st_gid) == (uid_base + 1000, gid_base + 1001)
    with open(os.path.join(vol, "new")) as f:
        assert f.read() == "inside\n"
    st = os.stat(os.path.join(vol, "new"))
    assert (st.st_uid, st.st_gid) == (0, 0)
    st = os.stat(os.path.join(vol, "dir", "x"))
    assert (st.st_uid, st.st_gid) == (1000, 1001)

    # In use: delete and rename are refused, naming the instance.
    p = d.cli("storage", "volume", "delete", "default", "data", check=False)
    assert p.returncode != 0
    assert "storage volume 'data' is in use by instance '%s'" % c in p.stderr, p.stderr
    r = d.api("DELETE", VOLS + "/data")
    assert r.status == 400 and "is in use by instance '%s'" % c in r.json["error"], r
    assert os.path.isdir(vol)

    # Persists across stop and start.
    d.cli("restart", c, timeout=60)
    assert sh(d, c, "cat /mnt/data/new").stdout == "inside\n"

    d.cli("stop", c, timeout=60)
    d.cli("storage", "volume", "detach", "default", "data", c)
    assert "data" not in assert_sync(d.api("GET", "/1.0/instances/" + c))["devices"]
    assert assert_sync(d.api("GET", VOLS + "/data"))["used_by"] == []
    d.cli("start", c, timeout=60)
    assert sh(d, c, "test -e /mnt/data/new && echo yes || echo no").stdout == "no\n"
    d.cli("storage", "volume", "delete", "default", "data")
    assert not os.path.exists(vol)


def test_hotplug(pooled):
    """Disks attached to and detached from a running container (LXD hot-plugs disk devices)."""
    d = pooled
    c = unique("c")
    d.made.append(c)
    d.cli("launch", "busybox", c, timeout=120)
    d.cli("storage", "volume", "create", "default", "hot")
    vol = os.path.join(d.pool_dir, "custom", "hot")
    with open(os.path.join(vol, "f"), "w") as f:
        f.write("plugged")
    d.cli("storage", "volume", "attach", "default", "hot", c, "hotdev", "/srv/a/b")
    assert sh(d, c, "cat /srv/a/b/f").stdout == "plugged"
    # The directories made for it belong to the container's root; the volume keeps its owners.
    assert sh(d, c, "stat -c '%u %g' /srv/a /srv/a/b/f").stdout == "0 0\n0 0\n"
    sh(d, c, "echo live > /srv/a/b/g")
    st = os.stat(os.path.join(vol, "g"))
    assert (st.st_uid, st.st_gid) == (0, 0)
    pid, uid_base, _ = container_ids(d, c)
    assert os.stat("/proc/%d/root/srv/a/b/g" % pid).st_uid == uid_base
    # Not on the host: the mount lives in the container's mount namespace only.
    assert not os.path.exists("/srv/a/b/f")

    d.cli("storage", "volume", "detach", "default", "hot", c)
    assert sh(d, c, "test -e /srv/a/b/f && echo yes || echo no").stdout == "no\n"
    assert "hotdev" not in assert_sync(d.api("GET", "/1.0/instances/" + c))["devices"]

    # A failing hot-plug changes nothing: the device is not recorded.
    r = d.api("PATCH", "/1.0/instances/" + c,
              {"devices": {"bad": {"type": "disk", "pool": "default", "source": "nope",
                                   "path": "/x"}}})
    assert r.status == 404 and "disk device 'bad'" in r.json["error"], r
    assert "nope" in r.json["error"], r
    assert "bad" not in assert_sync(d.api("GET", "/1.0/instances/" + c))["devices"]
    # A mount that fails inside (the target is below a file) is undone: nothing recorded.
    sh(d, c, "touch /file")
    p = d.cli("storage", "volume", "attach", "default", "hot", c, "/file/x", check=False)
    assert p.returncode != 0 and "disk device 'hot'" in p.stderr, p.stderr
    assert "hot" not in assert_sync(d.api("GET", "/1.0/instances/" + c))["devices"]
    assert assert_sync(d.api("GET", VOLS + "/hot"))["used_by"] == []
    d.cli("storage", "volume", "delete", "default", "hot")


def patch_devices(d, c, devices):
    op = assert_async(d.api("PATCH", "/1.0/instances/" + c, {"devices": devices}))
    assert d.wait_op(op["id"])["status"] == "Success"


def test_host_path_readonly(pooled, tmp_path):
    d = pooled
    if d.driver != "dir":
        pytest.skip("host directories do not depend on the pool's driver")
    c = unique("c")
    d.made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    src = tmp_path / "share"
    src.mkdir()
    (src / "f").write_text("host file")
    devices = {"ro": {"type": "disk", "source": str(src), "path": "/srv/ro", "readonly": "true"},
               "rw": {"type": "disk", "source": str(src), "path": "/srv/rw"}}
    patch_devices(d, c, devices)
    d.cli("start", c, timeout=60)
    assert sh(d, c, "cat /srv/ro/f").stdout == "host file"
    p = sh(d, c, "echo x > /srv/ro/g", check=False)
    assert p.returncode != 0 and "Read-only file system" in p.stderr, p.stderr
    sh(d, c, "echo y > /srv/rw/g")
    assert (src / "g").read_text() == "y\n"
    assert (src / "g").stat().st_uid == 0
    d.cli("stop", c, timeout=60)

    # A missing source fails the start with the device named.
    bad = {"gone": {"type": "disk", "source": str(tmp_path / "nope"), "path": "/x"}}
    patch_devices(d, c, bad)
    p = d.cli("start", c, check=False, timeout=60)
    assert p.returncode != 0 and "disk device 'gone'" in p.stderr, p.stderr
    bad = {"gone": {"type": "disk", "pool": "default", "source": "novol", "path": "/x"}}
    assert d.cli("config", "show", c).returncode == 0
    r = d.api("GET", "/1.0/instances/" + c)
    devices = assert_sync(r)["devices"]
    devices["gone"] = bad["gone"]
    op = assert_async(d.api("PUT", "/1.0/instances/" + c, {"devices": devices},
                            headers={"If-Match": r.headers["ETag"]}))
    assert d.wait_op(op["id"])["status"] == "Success"
    p = d.cli("start", c, check=False, timeout=60)
    assert p.returncode != 0 and "novol" in p.stderr and "not found" in p.stderr, p.stderr


def test_quota_inside_container(pooled):
    d = pooled
    if d.driver != "btrfs":
        pytest.skip("only btrfs pools have volume quotas")
    c = unique("c")
    d.made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    d.cli("storage", "volume", "create", "default", "small", "size=16MiB")
    d.cli("storage", "volume", "attach", "default", "small", c, "/small")
    d.cli("start", c, timeout=60)
    p = sh(d, c, "dd if=/dev/zero of=/small/big bs=1M count=64 conv=fsync", check=False)
    assert p.returncode != 0 and "Disk quota exceeded" in p.stderr, p.stderr
    # Within the size is fine.
    sh(d, c, "rm /small/big; dd if=/dev/zero of=/small/ok bs=1M count=4 conv=fsync")
    d.cli("stop", c, timeout=60)
    d.cli("storage", "volume", "detach", "default", "small", c)
    d.cli("storage", "volume", "delete", "default", "small")
