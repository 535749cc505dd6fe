"""Storage pools: `lxm storage ...` and /1.0/storage-pools for the dir, btrfs and overlay drivers,
their errors, re-mounting after an lxmd restart, and `lxm init --auto`.

Every test deletes the pools it made and checks that nothing stays mounted or attached to a loop
device under its daemon's directory."""

import glob
import json
import os
import subprocess

import pytest
import yaml

import lxmtest
from lxmtest import assert_error_envelope, assert_sync


def supported(lxmd):
    env = assert_sync(lxmd.api("GET", "/1.0"))["environment"]
    return [d["name"] for d in env["storage_supported_drivers"]]


def loops_under(base):
    """Loop devices whose backing file is under base."""
    found = []
    for f in glob.glob("/sys/block/loop*/loop/backing_file"):
        try:
            with open(f) as fh:
                backing = fh.read().strip()
        except OSError:
            continue
        if backing.startswith(os.path.realpath(base) + "/"):
            found.append((f.split("/")[3], backing))
    return found


def assert_clean(lxmd):
    assert lxmtest.mounts_under(lxmd.base) == [], "mounts left under %s" % lxmd.base
    assert loops_under(lxmd.base) == [], "loop devices left for files under %s" % lxmd.base


def pool_mount(lxmd, name):
    """(fstype, source) of the pool's mount, or None."""
    path = os.path.join(os.path.realpath(lxmd.root), "storage-pools", name)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == path:
                sep = fields.index("-")
                return fields[sep + 1], fields[sep + 2]
    return None


def need(lxmd, driver):
    if driver not in supported(lxmd):
        pytest.skip("the %s driver is not available on this host" % driver)


def delete_pool(lxmd, name):
    lxmd.cli("storage", "delete", name, check=False)


# ---- dir, btrfs, overlay through the CLI


def test_dir_pool_cli(lxmd):
    try:
        out = lxmd.cli("storage", "create", "p1", "dir", "--description", "first pool").stdout
        assert "Storage pool p1 created" in out

        table = lxmd.cli("storage", "list").stdout
        row = [line for line in table.splitlines() if "| p1 " in line]
        assert row, table
        cells = [c.strip() for c in row[0].strip("|").split("|")]
        assert cells[1] == "dir" and cells[3] == "first pool" and cells[5] == "CREATED", cells
        header = [c.strip() for c in table.splitlines()[1].strip("|").split("|")]
        assert header == ["NAME", "DRIVER", "SOURCE", "DESCRIPTION", "USED BY", "STATE"]

        listed = json.loads(lxmd.cli("storage", "list", "--format", "json").stdout)
        assert {p["name"] for p in listed} >= {"p1", "default"}
        csv = lxmd.cli("storage", "list", "--format", "csv").stdout
        assert "p1,dir,,first pool,0,CREATED" in csv.splitlines()

        shown = yaml.safe_load(lxmd.cli("storage", "show", "p1").stdout)
        assert shown["name"] == "p1" and shown["driver"] == "dir"
        assert shown["status"] == "Created" and shown["used_by"] == []
        assert shown["description"] == "first pool" and shown["locations"] == ["none"]
        assert os.path.isdir(os.path.join(lxmd.root, "storage-pools", "p1", "containers"))

        info = lxmd.cli("storage", "info", "p1").stdout
        doc = yaml.safe_load(info)
        assert doc["info"]["driver"] == "dir" and doc["info"]["name"] == "p1"
        assert doc["info"]["space used"].endswith("B") and doc["info"]["total space"][0].isdigit()
        assert "iB" in doc["info"]["total space"], info

        # A dir pool takes no config: the error names the key.
        p = lxmd.cli("storage", "set", "p1", "bogus.key=1", check=False)
        assert p.returncode != 0 and "bogus.key" in p.stderr
        assert lxmd.cli("storage", "get", "p1", "bogus.key").stdout == "\n"
        p = lxmd.cli("storage", "unset", "p1", "bogus.key", check=False)
        assert p.returncode != 0 and "'bogus.key'" in p.stderr and "not set" in p.stderr

        # edit changes the description (YAML on stdin).
        shown["description"] = "edited"
        lxmd.cli("storage", "edit", "p1", input=yaml.safe_dump(shown))
        assert yaml.safe_load(lxmd.cli("storage", "show", "p1").stdout)["description"] == "edited"

        assert "deleted" in lxmd.cli("storage", "delete", "p1").stdout
        assert "p1" not in lxmd.cli("storage", "list", "--format", "csv").stdout
        assert not os.path.exists(os.path.join(lxmd.root, "storage-pools", "p1"))
        p = lxmd.cli("storage", "show", "p1", check=False)
        assert p.returncode != 0 and "storage pool 'p1' not found" in p.stderr
    finally:
        delete_pool(lxmd, "p1")
        assert_clean(lxmd)


def test_btrfs_pool_cli(lxmd):
    need(lxmd, "btrfs")
    try:
        lxmd.cli("storage", "create", "b1", "btrfs", "size=512MiB")
        mount = pool_mount(lxmd, "b1")
        assert mount and mount[0] == "btrfs", mount
        loops = loops_under(lxmd.base)
        assert len(loops) == 1 and loops[0][1].endswith(".img"), loops

        shown = yaml.safe_load(lxmd.cli("storage", "show", "b1").stdout)
        assert shown["config"]["size"] == "512MiB"
        assert shown["config"]["source"] == loops[0][1]
        assert lxmd.cli("storage", "get", "b1", "size").stdout.strip() == "512MiB"
        table = lxmd.cli("storage", "list").stdout
        assert loops[0][1] in table  # the SOURCE column

        doc = yaml.safe_load(lxmd.cli("storage", "info", "b1").stdout)
        assert doc["info"]["total space"].endswith("MiB"), doc
        assert 300 <= float(doc["info"]["total space"][:-3]) <= 512, doc

        res = assert_sync(lxmd.api("GET", "/1.0/storage-pools/b1/resources"))
        assert 0 < res["space"]["used"] < res["space"]["total"] <= 512 * 2**20
        # btrfs allocates inodes on demand: statvfs reports no fixed count.
        assert res["inodes"]["used"] <= res["inodes"]["total"]

        # The loop file's size cannot change later.
        p = lxmd.cli("storage", "set", "b1", "size", "1GiB", check=False)
        assert p.returncode != 0 and "'size'" in p.stderr and "cannot be changed" in p.stderr
        assert lxmd.cli("storage", "get", "b1", "size").stdout.strip() == "512MiB"

        lxmd.cli("storage", "delete", "b1")
        assert pool_mount(lxmd, "b1") is None
        assert not os.path.exists(loops[0][1]), "the loop file was not removed"
    finally:
        delete_pool(lxmd, "b1")
        assert_clean(lxmd)


def test_overlay_pool_cli(lxmd):
    need(lxmd, "overlay")
    try:
        lxmd.cli("storage", "create", "o1", "overlay")
        shown = yaml.safe_load(lxmd.cli("storage", "show", "o1").stdout)
        assert shown["driver"] == "overlay" and shown["status"] == "Created"
        assert yaml.safe_load(lxmd.cli("storage", "info", "o1").stdout)["info"]["driver"] \
            == "overlay"
        lxmd.cli("storage", "delete", "o1")
        assert not os.path.exists(os.path.join(lxmd.root, "storage-pools", "o1"))
    finally:
        delete_pool(lxmd, "o1")
        assert_clean(lxmd)


# ---- the API


def test_pools_api(lxmd):
    try:
        r = lxmd.api("POST", "/1.0/storage-pools",
                     {"name": "a1", "driver": "dir", "description": "via api", "config": {}})
        assert_sync(r)
        assert "/1.0/storage-pools/a1" in assert_sync(lxmd.api("GET", "/1.0/storage-pools"))

        objs = assert_sync(lxmd.api("GET", "/1.0/storage-pools?recursion=1"))
        a1 = [p for p in objs if p["name"] == "a1"][0]
        assert a1["driver"] == "dir" and a1["description"] == "via api"
        assert a1["status"] == "Created" and a1["locations"] == ["none"]
        assert a1["used_by"] == [] and a1["config"] == {}

        r = lxmd.api("GET", "/1.0/storage-pools/a1")
        etag = r.headers.get("ETag")
        assert etag and assert_sync(r)["name"] == "a1"

        # A stale ETag is refused; the right one is accepted.
        r = lxmd.api("PUT", "/1.0/storage-pools/a1", {"description": "x", "config": {}},
                     headers={"If-Match": "0" * 64})
        assert_error_envelope(r, 412)
        r = lxmd.api("PUT", "/1.0/storage-pools/a1", {"description": "put", "config": {}},
                     headers={"If-Match": etag})
        assert_sync(r)
        assert assert_sync(lxmd.api("GET", "/1.0/storage-pools/a1"))["description"] == "put"
        assert_sync(lxmd.api("PATCH", "/1.0/storage-pools/a1", {"description": "patched"}))
        assert assert_sync(lxmd.api("GET", "/1.0/storage-pools/a1"))["description"] == "patched"
        r = lxmd.api("PATCH", "/1.0/storage-pools/a1", {"config": {"nope": "1"}})
        assert_error_envelope(r, 400)
        assert "nope" in json.loads(r.raw)["error"]

        res = assert_sync(lxmd.api("GET", "/1.0/storage-pools/a1/resources"))
        assert res["space"]["total"] > 0 and res["inodes"]["total"] > 0

        assert assert_sync(lxmd.api("GET", "/1.0/storage-pools/a1/volumes")) == []
        assert assert_sync(lxmd.api("GET", "/1.0/storage-pools/a1/volumes?recursion=1")) == []
        assert assert_sync(lxmd.api("GET", "/1.0/storage-pools/a1/volumes/custom")) == []
        assert_error_envelope(lxmd.api("GET", "/1.0/storage-pools/a1/volumes/bogus"), 404)
        assert_error_envelope(lxmd.api("GET", "/1.0/storage-pools/nope"), 404)
        assert_error_envelope(lxmd.api("GET", "/1.0/storage-pools/nope/resources"), 404)

        r = lxmd.api("POST", "/1.0/storage-pools", {"name": "a1", "driver": "dir"})
        assert_error_envelope(r, 409)

        assert_sync(lxmd.api("DELETE", "/1.0/storage-pools/a1"))
        assert_error_envelope(lxmd.api("GET", "/1.0/storage-pools/a1"), 404)
        assert_error_envelope(lxmd.api("DELETE", "/1.0/storage-pools/a1"), 404)
    finally:
        lxmd.api("DELETE", "/1.0/storage-pools/a1")
        assert_clean(lxmd)


def test_btrfs_pool_api(lxmd):
    need(lxmd, "btrfs")
    try:
        r = lxmd.api("POST", "/1.0/storage-pools",
                     {"name": "ab", "driver": "btrfs", "config": {"size": "512MiB"}})
        assert_sync(r)
        pool = assert_sync(lxmd.api("GET", "/1.0/storage-pools/ab"))
        assert pool["config"]["size"] == "512MiB" and pool["config"]["source"]
        assert pool_mount(lxmd, "ab")[0] == "btrfs"
        r = lxmd.api("PATCH", "/1.0/storage-pools/ab", {"config": {"source": "/elsewhere"}})
        assert_error_envelope(r, 400)
        assert "'source'" in json.loads(r.raw)["error"]
        assert_sync(lxmd.api("DELETE", "/1.0/storage-pools/ab"))
    finally:
        lxmd.api("DELETE", "/1.0/storage-pools/ab")
        assert_clean(lxmd)


# ---- errors


@pytest.mark.parametrize("name", ["bad/name", "-dash", ".dot", "a b", "x" * 64, "ünï"])
def test_invalid_names(lxmd, name):
    p = lxmd.cli("storage", "create", "--", name, "dir", check=False)
    assert p.returncode != 0 and "invalid storage pool name" in p.stderr, p.stderr
    r = lxmd.api("POST", "/1.0/storage-pools", {"name": name, "driver": "dir"})
    assert "invalid storage pool name" in assert_error_envelope(r, 400)
    assert sorted(os.listdir(os.path.join(lxmd.root, "storage-pools"))) == ["default"]


def test_create_errors(lxmd):
    p = lxmd.cli("storage", "create", "z1", "zfs", check=False)
    assert p.returncode != 0 and "unknown driver 'zfs'" in p.stderr
    p = lxmd.cli("storage", "create", "z2", "dir", "frobnicate=1", check=False)
    assert p.returncode != 0 and "'frobnicate'" in p.stderr
    if "btrfs" in supported(lxmd):
        p = lxmd.cli("storage", "create", "z3", "btrfs", "size=lots", check=False)
        assert p.returncode != 0 and "size" in p.stderr and "lots" in p.stderr
        p = lxmd.cli("storage", "create", "z4", "btrfs", "color=red", check=False)
        assert p.returncode != 0 and "'color'" in p.stderr
    p = lxmd.cli("storage", "create", "default", "dir", check=False)
    assert p.returncode != 0 and "already exists" in p.stderr
    r = lxmd.api("POST", "/1.0/storage-pools", {"name": "z5"})
    assert_error_envelope(r, 400)
    r = lxmd.api("POST", "/1.0/storage-pools", {"name": "z6", "driver": "dir",
                                                  "config": {"k": 1}})
    assert_error_envelope(r, 400)
    names = [p["name"] for p in assert_sync(lxmd.api("GET", "/1.0/storage-pools?recursion=1"))]
    assert names == ["default"], names
    assert sorted(os.listdir(os.path.join(lxmd.root, "storage-pools"))) == ["default"]
    assert_clean(lxmd)


def test_delete_refused_while_in_use(lxmd):
    try:
        lxmd.cli("storage", "create", "busy", "dir")
        lxmd.cli("profile", "create", "onbusy")
        body = {"config": {}, "description": "",
                "devices": {"root": {"type": "disk", "path": "/", "pool": "busy"}}}
        assert_sync(lxmd.api("PUT", "/1.0/profiles/onbusy", body))
        pool = assert_sync(lxmd.api("GET", "/1.0/storage-pools/busy"))
        assert pool["used_by"] == ["/1.0/profiles/onbusy"]
        assert "| busy " in lxmd.cli("storage", "list").stdout

        r = lxmd.api("DELETE", "/1.0/storage-pools/busy")
        assert_error_envelope(r, 400)
        assert "currently in use" in json.loads(r.raw)["error"]
        p = lxmd.cli("storage", "delete", "busy", check=False)
        assert p.returncode != 0 and "currently in use" in p.stderr and "onbusy" in p.stderr
        info = yaml.safe_load(lxmd.cli("storage", "info", "busy").stdout)
        assert info["used by"] == {"profiles": ["onbusy"]}

        # A disk device that is not the root one does not hold the pool.
        body["devices"] = {"data": {"type": "disk", "path": "/data", "pool": "busy",
                                    "source": "x"}}
        assert_sync(lxmd.api("PUT", "/1.0/profiles/onbusy", body))
        assert assert_sync(lxmd.api("GET", "/1.0/storage-pools/busy"))["used_by"] == []
        lxmd.cli("storage", "delete", "busy")
    finally:
        delete_pool(lxmd, "busy")
        lxmd.cli("profile", "delete", "onbusy", check=False)
        assert_clean(lxmd)


# ---- restarts


def test_btrfs_pool_remounted_after_restart(lxmd):
    need(lxmd, "btrfs")
    path = os.path.join(lxmd.root, "storage-pools", "rb")
    try:
        lxmd.cli("storage", "create", "rb", "btrfs", "size=512MiB")
        with open(os.path.join(path, "marker"), "w") as f:
            f.write("kept")

        # A clean restart leaves the pool mounted (containers may use it).
        lxmd.restart()
        assert pool_mount(lxmd, "rb")[0] == "btrfs"

        # As after a reboot: nothing mounted when lxmd starts.
        for stop in (lxmd.stop_checked, lxmd.kill9):
            stop()
            subprocess.run(["umount", path], check=True)
            assert pool_mount(lxmd, "rb") is None and loops_under(lxmd.base) == []
            lxmd.start()
            assert pool_mount(lxmd, "rb")[0] == "btrfs"
            with open(os.path.join(path, "marker")) as f:
                assert f.read() == "kept"
            pool = assert_sync(lxmd.api("GET", "/1.0/storage-pools/rb"))
            assert pool["status"] == "Created"
        lxmd.cli("storage", "delete", "rb")
    finally:
        delete_pool(lxmd, "rb")
        assert_clean(lxmd)


def test_unmountable_pool_is_unavailable(lxmd):
    need(lxmd, "btrfs")
    path = os.path.join(lxmd.root, "storage-pools", "ub")
    lxmd.cli("storage", "create", "ub", "btrfs", "size=512MiB")
    source = assert_sync(lxmd.api("GET", "/1.0/storage-pools/ub"))["config"]["source"]
    lxmd.stop_checked()
    subprocess.run(["umount", path], check=True)
    # Wipe the file system's superblock: the pool can no longer be mounted.
    with open(source, "r+b") as f:
        f.seek(64 * 1024)
        f.write(b"\0" * 4096)
    lxmd.start()
    pool = assert_sync(lxmd.api("GET", "/1.0/storage-pools/ub"))
    assert pool["status"] == "Unavailable"
    r = lxmd.api("GET", "/1.0/storage-pools/ub/resources")
    assert_error_envelope(r, 503)
    assert "unavailable" in json.loads(r.raw)["error"]
    assert "ub" in lxmd.log_text() and "unavailable" in lxmd.log_text()
    assert "UNAVAILABLE" in lxmd.cli("storage", "list").stdout
    assert pool_mount(lxmd, "ub") is None
    assert_clean(lxmd)


# ---- lxm init --auto


def test_init_auto(lxmd_factory):
    d = lxmd_factory(storage=None).start()
    drivers = supported(d)
    assert assert_sync(d.api("GET", "/1.0"))["environment"]["storage"] == ""
    try:
        out = d.cli("init", "--auto", "--no-network").stdout
        want = "btrfs" if "btrfs" in drivers else "dir"
        assert "Storage pool default created" in out and want in out, out
        pool = assert_sync(d.api("GET", "/1.0/storage-pools/default"))
        assert pool["driver"] == want and pool["status"] == "Created"
        prof = yaml.safe_load(d.cli("profile", "show", "default").stdout)
        assert prof["devices"]["root"] == {"type": "disk", "path": "/", "pool": "default"}
        assert pool["used_by"] == ["/1.0/profiles/default"]
        assert assert_sync(d.api("GET", "/1.0"))["environment"]["storage"] == want

        p = d.cli("init", "--auto", check=False)
        assert p.returncode != 0 and "'default' already exists" in p.stderr
    finally:
        body = {"config": {}, "description": "Default lxm profile", "devices": {}}
        d.api("PUT", "/1.0/profiles/default", body)
        d.cli("storage", "delete", "default", check=False)
        assert_clean(d)


def test_init_auto_dir_and_errors(lxmd_factory):
    d = lxmd_factory(storage=None).start()
    try:
        p = d.cli("init", "--auto", "--storage-backend", "zfs", check=False)
        assert p.returncode != 0 and "'zfs' is not available" in p.stderr
        p = d.cli("init", "--auto", "--storage-backend", "dir", "--storage-create-loop", "5",
                  check=False)
        assert p.returncode != 0 and "btrfs" in p.stderr
        assert_error_envelope(d.api("GET", "/1.0/storage-pools/default"), 404)

        # A root device on another pool is not silently replaced.
        d.cli("storage", "create", "other", "dir")
        body = {"config": {}, "description": "",
                "devices": {"rootfs": {"type": "disk", "path": "/", "pool": "other"}}}
        assert_sync(d.api("PUT", "/1.0/profiles/default", body))
        p = d.cli("init", "--auto", "--storage-backend", "dir", check=False)
        assert p.returncode != 0 and "'rootfs'" in p.stderr and "'other'" in p.stderr
        assert_error_envelope(d.api("GET", "/1.0/storage-pools/default"), 404)
        body["devices"] = {}
        assert_sync(d.api("PUT", "/1.0/profiles/default", body))

        out = d.cli("init", "--auto", "--storage-backend", "dir", "--no-network").stdout
        assert "driver dir" in out
        assert assert_sync(d.api("GET", "/1.0/storage-pools/default"))["driver"] == "dir"
        prof = yaml.safe_load(d.cli("profile", "show", "default").stdout)
        assert prof["devices"]["root"]["pool"] == "default"
        # `lxm init IMAGE NAME` still creates instances.
        d.cli("init", "--empty", "e1")
        assert "e1" in d.instance_names()
        d.delete_instance("e1")
    finally:
        d.api("PUT", "/1.0/profiles/default", {"config": {}, "description": "", "devices": {}})
        d.cli("storage", "delete", "default", check=False)
        d.cli("storage", "delete", "other", check=False)
        assert_clean(d)


def test_init_auto_btrfs_loop(lxmd_factory):
    d = lxmd_factory(storage=None).start()
    need(d, "btrfs")
    try:
        d.cli("init", "--auto", "--storage-backend", "btrfs", "--storage-create-loop", "1",
              "--no-network")
        pool = assert_sync(d.api("GET", "/1.0/storage-pools/default"))
        assert pool["driver"] == "btrfs" and pool["config"]["size"] == "1GiB"
        assert pool_mount(d, "default")[0] == "btrfs"
    finally:
        d.api("PUT", "/1.0/profiles/default", {"config": {}, "description": "", "devices": {}})
        d.cli("storage", "delete", "default", check=False)
        assert_clean(d)
