"""Id maps and the hugetlb and io limits of busybox containers, read back from the kernel:
security.idmap.isolated gives each container a host id range of its own (disjoint /proc/<init>/
uid_map ranges, kept across starts and lxmd restarts, recorded in volatile.idmap.*) while files
stay root's inside (the rootfs is idmapped, never chowned); raw.idmap maps a host id into the
container on top of the range; a running container's map cannot change (refused: it needs a
restart) and security.protection.shift refuses any change of it; limits.hugepages.<size> lands in
the hugetlb cgroup files (or is refused naming the size where the host cannot limit it);
limits.disk.priority lands in the blkio/io weight file, live; invalid values are refused naming
key and value.
"""

import json
import os

import pytest

from lxmtest import assert_sync, cgroup_dirs

SHARED = 65536


def sh(d, name, script, check=True):
    return d.cli("exec", name, "--", "sh", "-c", script, check=check)


def init_pid(d, name):
    return assert_sync(d.api("GET", "/1.0/instances/%s/state" % name))["pid"]


def config(d, name):
    return assert_sync(d.api("GET", "/1.0/instances/" + name))["config"]


def read_map(pid, which):
    """/proc/<pid>/{uid,gid}_map as (ns, host, count) triples."""
    with open("/proc/%d/%s" % (pid, which)) as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]


def host_ranges(m):
    return [(host, host + count) for _, host, count in m]


def subid_base(path):
    with open(path) as f:
        for line in f:
            who, base, count = line.strip().split(":")
            if who in ("root", "0") and int(count) >= SHARED:
                return int(base)
    raise AssertionError("no range for root in %s" % path)


def meet(a, b):
    return a[0] < b[1] and b[0] < a[1]


def refused(d, *args):
    p = d.cli(*args, check=False)
    assert p.returncode != 0, "lxm %s was accepted" % " ".join(args)
    return p.stderr


def cgroup_file(name, file):
    """The instance's cgroup file, on whichever hierarchy has it, or None."""
    for d in cgroup_dirs(name):
        path = os.path.join(d, file)
        if os.path.exists(path):
            return path
    return None


# ---------------------------------------------------------------- isolated id maps

def test_isolated_containers_have_disjoint_ranges(lxmd, launched):
    d = lxmd
    a = launched(config={"security.idmap.isolated": "true"})
    b = launched(config={"security.idmap.isolated": "true"})
    shared = launched()
    uid_base = subid_base("/etc/subuid")
    maps = {}
    for c in (a, b, shared):
        pid = init_pid(d, c)
        maps[c] = (read_map(pid, "uid_map"), read_map(pid, "gid_map"))
    # The shared map is the first 65536 of root's subordinate ids, as before.
    assert maps[shared][0] == [(0, uid_base, SHARED)]
    for c in (a, b):
        uid, gid = maps[c]
        assert len(uid) == 1 and uid[0][0] == 0 and uid[0][2] == SHARED, uid
        assert gid[0][1] == uid[0][1], "isolated: the same host ids for users and groups"
        # Recorded as LXD does: the base and the map in volatile keys.
        cfg = config(d, c)
        assert int(cfg["volatile.idmap.base"]) == uid[0][1], cfg
        cur = json.loads(cfg["volatile.idmap.current"])
        assert {"Isuid": True, "Isgid": False, "Hostid": uid[0][1], "Nsid": 0,
                "Maprange": SHARED} in cur, cur
        assert json.loads(cfg["volatile.idmap.next"]) == cur
        # Files in the rootfs are still root's inside: no chown was needed.
        out = sh(d, c, "ls -ln /").stdout
        # /proc and /sys are the kernel's (nobody inside): the rest is the rootfs.
        owners = {tuple(line.split()[2:4]) for line in out.splitlines()[1:]
                  if line.strip() and line.split()[-1] not in ("proc", "sys")}
        assert owners == {("0", "0")}, out
        assert sh(d, c, "id -u").stdout.strip() == "0"
    ra, rb, rs = (host_ranges(maps[c][0])[0] for c in (a, b, shared))
    assert not meet(ra, rb), "isolated ranges overlap: %r %r" % (ra, rb)
    assert not meet(ra, rs) and not meet(rb, rs), "an isolated range overlaps the shared one"
    assert config(d, shared).get("volatile.idmap.base") is None

    # The allocation is kept across a stop, a start and an lxmd restart.
    d.cli("stop", a, timeout=60)
    d.restart()
    d.cli("start", a, timeout=60)
    assert read_map(init_pid(d, a), "uid_map")[0][1] == ra[0]


def test_isolated_size_and_base(lxmd, launched):
    d = lxmd
    base = subid_base("/etc/subuid") + 10 * SHARED
    c = launched(config={"security.idmap.isolated": "true", "security.idmap.base": str(base),
                         "security.idmap.size": "100000"})
    assert read_map(init_pid(d, c), "uid_map") == [(0, base, 100000)]
    assert read_map(init_pid(d, c), "gid_map") == [(0, base, 100000)]
    # Another instance cannot take the same ids.
    other = launched(config={"security.idmap.isolated": "true"})
    assert not meet(host_ranges(read_map(init_pid(d, other), "uid_map"))[0],
                    (base, base + 100000))
    d.cli("stop", other, timeout=60)
    d.cli("config", "set", other, "security.idmap.base=%d" % (base + 1000))
    err = d.cli("start", other, check=False, timeout=60)
    assert err.returncode != 0
    assert "security.idmap.base" in err.stderr and "overlap" in err.stderr, err.stderr


# ---------------------------------------------------------------- raw.idmap

def test_raw_idmap_maps_a_host_id(lxmd, launched):
    d = lxmd
    hostdir = os.path.join(d.base, "hostdir")
    os.mkdir(hostdir)
    with open(os.path.join(hostdir, "owned"), "w") as f:
        f.write("x")
    os.chown(os.path.join(hostdir, "owned"), 1000, 1000)
    c = launched(config={"raw.idmap": "both 1000 1000"})
    uid_base = subid_base("/etc/subuid")
    pid = init_pid(d, c)
    assert read_map(pid, "uid_map") == [(0, uid_base, 1000), (1000, 1000, 1),
                                        (1001, uid_base + 1001, SHARED - 1001)]
    assert read_map(pid, "gid_map")[1] == (1000, 1000, 1)
    # A process of the container's uid 1000 is host uid 1000.
    sh(d, c, "touch /tmp/by-1000 /tmp/by-1001 && chown 1000:1000 /tmp/by-1000 && "
             "chown 1001:1001 /tmp/by-1001")
    # Files of the container's uid 1000 are host uid 1000's, seen from the host; the ids
    # around it stay in the container's range.
    st = os.stat("/proc/%d/root/tmp/by-1000" % pid)
    assert (st.st_uid, st.st_gid) == (1000, 1000), (st.st_uid, st.st_gid)
    st = os.stat("/proc/%d/root/tmp/by-1001" % pid)
    assert (st.st_uid, st.st_gid) == (uid_base + 1001, subid_base("/etc/subgid") + 1001)
    # A host directory owned by host uid 1000 shows as uid 1000 inside, and what the
    # container's uid 1000 writes there is host uid 1000's on disk.
    d.cli("config", "device", "add", c, "data", "disk", "source=" + hostdir, "path=/mnt/data",
          timeout=60)
    assert sh(d, c, "stat -c '%u %g' /mnt/data/owned").stdout.strip() == "1000 1000"
    st = os.stat("/proc/%d/root/mnt/data/owned" % pid)
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    sh(d, c, "touch /mnt/data/new && chown 1000:1000 /mnt/data/new")
    st = os.stat(os.path.join(hostdir, "new"))
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_invalid_raw_idmap_refused(lxmd, launched):
    d = lxmd
    c = launched()
    d.cli("stop", c, timeout=60)
    for value, why in (("both 1000", "expected lines"),
                       ("uid 10-20 30-35", "the host range has 11 ids"),
                       ("group 1 1", "'group' is not both, uid or gid"),
                       ("both 1000 1000\nuid 1000 2000", "overlaps an earlier line")):
        err = refused(d, "config", "set", c, "raw.idmap=" + value)
        assert "config key 'raw.idmap': invalid value" in err and why in err, err
    for kv, words in (("security.idmap.size=0", ["'security.idmap.size'", "'0'"]),
                      ("security.idmap.isolated=maybe", ["'security.idmap.isolated'",
                                                         "'maybe'"]),
                      ("security.idmap.base=-5", ["'security.idmap.base'", "'-5'"])):
        err = refused(d, "config", "set", c, kv)
        assert all(w in err for w in words), err
    err = refused(d, "config", "set", c, "security.idmap.size=1000")
    assert "security.idmap.isolated" in err, err
    assert "raw.idmap" not in config(d, c)


# ---------------------------------------------------------------- changes of the map

def test_running_map_change_refused(lxmd, launched):
    d = lxmd
    c = launched()
    pid = init_pid(d, c)
    before = read_map(pid, "uid_map")
    for kv in ("security.idmap.isolated=true", "raw.idmap=both 1000 1000",
               "security.privileged=true"):
        err = refused(d, "config", "set", c, kv)
        assert "is running" in err and "requires a restart" in err and c in err, err
    assert read_map(pid, "uid_map") == before
    cfg = config(d, c)
    assert "security.idmap.isolated" not in cfg and "raw.idmap" not in cfg
    # Keys that leave the map as it is still change live.
    d.cli("config", "set", c, "user.note=x")
    # Stopped, the change is taken and the next start uses the new map.
    d.cli("stop", c, timeout=60)
    d.cli("config", "set", c, "security.idmap.isolated=true")
    d.cli("start", c, timeout=60)
    after = read_map(init_pid(d, c), "uid_map")
    assert after != before and after[0][1] == int(config(d, c)["volatile.idmap.base"])


def test_protection_shift_refuses_map_changes(lxmd, launched):
    d = lxmd
    c = launched(config={"security.protection.shift": "true"})
    before = read_map(init_pid(d, c), "uid_map")
    d.cli("stop", c, timeout=60)
    # Even stopped: the map the instance ran with may not change.
    for kv in ("security.idmap.isolated=true", "raw.idmap=both 1000 1000"):
        err = refused(d, "config", "set", c, kv)
        assert "security.protection.shift" in err and c in err, err
    # Keys outside the map are fine, and unsetting the protection allows the change.
    d.cli("config", "set", c, "limits.processes=200")
    d.cli("config", "unset", c, "security.protection.shift")
    d.cli("config", "set", c, "raw.idmap=both 1000 1000")
    d.cli("start", c, timeout=60)
    assert read_map(init_pid(d, c), "uid_map") != before


# ---------------------------------------------------------------- hugepages

def host_hugepage_sizes():
    sizes = set()
    names = {64: "64KB", 1024: "1MB", 2048: "2MB", 1048576: "1GB"}
    for e in os.listdir("/sys/kernel/mm/hugepages"):
        kb = int(e[len("hugepages-"):-2])
        if kb in names:
            sizes.add(names[kb])
    return sizes


def hugetlb_mounted():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            rest = fields[fields.index("-") + 1:]
            if rest[0] == "cgroup" and "hugetlb" in rest[2].split(","):
                return True
            if rest[0] == "cgroup2":
                ctl = os.path.join(fields[4], "cgroup.controllers")
                if os.path.exists(ctl) and "hugetlb" in open(ctl).read().split():
                    return True
    return False


def test_hugepages_limits(lxmd, launched):
    d = lxmd
    c = launched()
    sizes = host_hugepage_sizes()
    for size in ("64KB", "1MB", "2MB", "1GB"):
        if size in sizes and hugetlb_mounted():
            continue
        # A size the host cannot limit is refused naming it.
        err = refused(d, "config", "set", c, "limits.hugepages.%s=4MiB" % size)
        assert "'limits.hugepages.%s'" % size in err and "cannot limit %s huge pages" % size \
            in err, err
    limitable = [s for s in ("2MB", "1GB", "1MB", "64KB") if s in sizes]
    if not hugetlb_mounted() or not limitable:
        pytest.skip("this host has no hugetlb cgroup controller mounted (or no huge page "
                    "sizes): the refusal was checked, the limit cannot be read back")
    size = limitable[0]
    d.cli("config", "set", c, "limits.hugepages.%s=1GiB" % size)
    path = cgroup_file(c, "hugetlb.%s.limit_in_bytes" % size) or \
        cgroup_file(c, "hugetlb.%s.max" % size)
    assert path, "no hugetlb file for %s: %r" % (c, cgroup_dirs(c))
    with open(path) as f:
        got = int(f.read())
    # The kernel keeps whole pages.
    assert 0 < got <= 1 << 30, got
    d.cli("config", "unset", c, "limits.hugepages.%s" % size)
    with open(path) as f:
        text = f.read().strip()
    assert text == "max" or int(text) > 1 << 40, text


def test_hugepages_invalid_value(lxmd, launched):
    d = lxmd
    c = launched()
    err = refused(d, "config", "set", c, "limits.hugepages.2MB=lots")
    assert "'limits.hugepages.2MB'" in err and "'lots'" in err, err
    err = refused(d, "config", "set", c, "limits.hugepages.4MB=1GiB")
    assert "unknown config key 'limits.hugepages.4MB'" in err, err


# ---------------------------------------------------------------- disk priority

def weight_file(name):
    for f in ("blkio.bfq.weight", "blkio.weight", "io.bfq.weight", "io.weight"):
        p = cgroup_file(name, f)
        if p:
            return p
    return None


def read_weight(path):
    with open(path) as f:
        text = f.read().split()
    # io.weight reads "default N"; the others just N.
    return int(text[1] if text[0] == "default" else text[0])


def test_disk_priority_live(lxmd, launched):
    d = lxmd
    c = launched()
    path = weight_file(c)
    if not path:
        err = refused(d, "config", "set", c, "limits.disk.priority=3")
        assert "limits.disk.priority" in err and "weight" in err, err
        pytest.skip("this host's io controller has no weight file (blkio.weight, "
                    "blkio.bfq.weight, io.weight): the refusal was checked")
    d.cli("config", "set", c, "limits.disk.priority=10")
    assert read_weight(path) == 1000, path
    d.cli("config", "set", c, "limits.disk.priority=0")
    assert read_weight(path) == 10
    d.cli("config", "unset", c, "limits.disk.priority")
    assert read_weight(path) == (500 if path.endswith("blkio.weight") else 100)
    for bad in ("11", "-1", "high"):
        err = refused(d, "config", "set", c, "limits.disk.priority=" + bad)
        assert "'limits.disk.priority'" in err and "'%s'" % bad in err, err


def test_disk_priority_at_start(lxmd, launched):
    c = launched(config={"limits.disk.priority": "8"})
    path = weight_file(c)
    if not path:
        pytest.skip("this host's io controller has no weight file")
    assert read_weight(path) == (802 if path.endswith("blkio.weight") else 400)


def test_copy_of_isolated_instance_gets_its_own_range(lxmd, launched):
    d = lxmd
    a = launched(config={"security.idmap.isolated": "true"})
    ra = read_map(init_pid(d, a), "uid_map")[0][1]
    d.cli("stop", a, timeout=60)
    b = "%s-copy" % a
    d.cli("copy", a, b, timeout=120)
    try:
        # a keeps its range whichever starts first (a copy that carried a's volatile.idmap.base
        # would give it up, being the younger), the copy gets another.
        d.cli("start", a, timeout=60)
        assert read_map(init_pid(d, a), "uid_map")[0][1] == ra
        d.cli("start", b, timeout=60)
        rb = read_map(init_pid(d, b), "uid_map")[0][1]
        assert rb != ra and not meet((ra, ra + SHARED), (rb, rb + SHARED))
        assert int(config(d, b)["volatile.idmap.base"]) == rb
    finally:
        d.cli("delete", "-f", b, check=False)
        assert cgroup_dirs(b) == []
