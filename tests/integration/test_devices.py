"""Devices as a user sees them: unix-char nodes in an unprivileged busybox container (the right
major/minor, owner and mode shown by `ls -ln` inside, readable), the device cgroup keeping every
other node unusable (open fails with EPERM), unix devices hot-plugged into and out of a running
container (the cgroup allow-list following), required=false with a missing source (the start goes
on, with a log line), unsupported and unknown device types refused (with the nearest valid type
suggested), and type none masking a profile's disk and nic (nothing of them inside, the none
entry in the expanded devices as in LXD).

Traffic: none; the only bridge is one this test creates (no address), removed at the end."""

import os
import random
import subprocess

import pytest

import lxmtest
from lxmtest import assert_async, assert_sync, unique

pytestmark = pytest.mark.skipif(
    not os.access("/bin/busybox", os.X_OK), reason="busybox-static is not installed")


@pytest.fixture
def made(lxmd):
    names = []
    yield names
    for n in names:
        lxmd.cli("delete", "-f", n, check=False)


def sh(d, c, script, check=True):
    return d.cli("exec", c, "--", "sh", "-c", script, check=check)


def patch(d, c, devices):
    """PATCH an instance's devices: the HTTP response, or the finished operation."""
    r = d.api("PATCH", "/1.0/instances/" + c, {"devices": devices})
    if r.status != 202:
        return r
    return d.wait_op(assert_async(r)["id"])


def init(d, made, *profiles):
    c = unique("c")
    made.append(c)
    args = ["init", "busybox", c]
    for p in profiles:
        args += ["-p", p]
    d.cli(*args, timeout=120)
    return c


def init_pid(d, c):
    return assert_sync(d.api("GET", "/1.0/instances/%s/state" % c))["pid"]


@pytest.mark.parametrize("privileged", [False, True])
def test_unix_char_node(lxmd, made, privileged):
    d = lxmd
    c = init(d, made)
    if privileged:
        d.cli("config", "set", c, "security.privileged=true")
    dev = {"type": "unix-char", "source": "/dev/zero", "path": "/dev/myzero", "uid": "1000",
           "gid": "100", "mode": "0640"}
    assert patch(d, c, {"myzero": dev})["status"] == "Success"
    d.cli("start", c, timeout=60)
    # Unprivileged: the container's root is not the host's (and privileged: it is).
    with open("/proc/%d/uid_map" % init_pid(d, c)) as f:
        assert (int(f.read().split()[1]) == 0) == privileged
    # The node lxmd made for it, in the instance's runtime dir.
    node = os.stat(os.path.join(d.root, "run", c, "devices", "myzero"))
    assert os.major(node.st_rdev) == 1 and os.minor(node.st_rdev) == 5
    line = sh(d, c, "ls -ln /dev/myzero").stdout.split()
    # crw-r----- 1 1000 100 1, 5 ... /dev/myzero
    assert line[0] == "crw-r-----", line
    assert (line[2], line[3]) == ("1000", "100"), line
    assert (line[4], line[5]) == ("1,", "5"), line
    assert sh(d, c, "head -c 4 /dev/myzero | od -An -tx1").stdout.split() == ["00"] * 4
    # The container's root owns nothing there but may read it (mode 0640, group 100 too).
    st = sh(d, c, "stat -c '%t:%T' /dev/myzero").stdout.strip()
    assert st == "1:5", st
    d.cli("stop", c, timeout=60)
    # Nothing is left of the node in the runtime dir once it stopped.
    assert not os.path.exists(os.path.join(d.root, "run", c))


def test_allow_list_and_hotplug(lxmd, made, tmp_path):
    """A node that is not in the allow-list cannot be opened; a unix device of the same major
    and minor, hot-plugged, can; removed, the node goes and the allow-list closes again."""
    d = lxmd
    c = init(d, made)
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    # A tun node (c 10:200: any process may open it) reached through a host-path disk.
    os.mknod(str(nodes / "tun"), 0o20666, os.makedev(10, 200))
    os.chmod(str(nodes / "tun"), 0o666)
    assert patch(d, c, {"nodes": {"type": "disk", "source": str(nodes), "path": "/mnt/nodes"}}
                 )["status"] == "Success"
    d.cli("start", c, timeout=60)
    p = sh(d, c, "exec 3<> /mnt/nodes/tun && echo opened", check=False)
    assert p.returncode != 0 and "Operation not permitted" in p.stderr, (p.stdout, p.stderr)

    # Hot-plug: the node appears, opens, and the allow-list now lets 10:200 through.
    r = patch(d, c, {"mytun": {"type": "unix-char", "path": "/dev/net/mytun", "major": "10",
                               "minor": "200", "mode": "0666"}})
    assert r["status"] == "Success", r
    assert sh(d, c, "ls -ln /dev/net/mytun").stdout.split()[4:6] == ["10,", "200"]
    assert sh(d, c, "exec 3<> /dev/net/mytun && echo opened").stdout == "opened\n"
    assert sh(d, c, "exec 3<> /mnt/nodes/tun && echo opened").stdout == "opened\n"
    # Not on the host.
    assert not os.path.exists("/dev/net/mytun")

    # Hot-unplug: the node is gone and 10:200 is denied again.
    r = d.api("GET", "/1.0/instances/" + c)
    devices = assert_sync(r)["devices"]
    del devices["mytun"]
    op = assert_async(d.api("PUT", "/1.0/instances/" + c, {"devices": devices},
                            headers={"If-Match": r.headers["ETag"]}))
    assert d.wait_op(op["id"])["status"] == "Success"
    assert sh(d, c, "test -e /dev/net/mytun && echo yes || echo no").stdout == "no\n"
    p = sh(d, c, "exec 3<> /mnt/nodes/tun && echo opened", check=False)
    assert p.returncode != 0 and "Operation not permitted" in p.stderr, (p.stdout, p.stderr)

    # A hot-plug that cannot work changes nothing: the device is not recorded.
    r = patch(d, c, {"bad": {"type": "unix-char", "source": "/dev/lxm-test-nonexistent",
                             "path": "/dev/bad"}})
    assert r.status == 400 and "unix device 'bad'" in r.json["error"], r
    assert "bad" not in assert_sync(d.api("GET", "/1.0/instances/" + c))["devices"]
    d.cli("stop", c, timeout=60)


def test_hotplug_requires_restart_with_nested_v1_cgroups(lxmd, made):
    """On a v1 devices controller an allow does not reach cgroups the container made below its
    own: the hot-plug is refused rather than half done."""
    d = lxmd
    c = init(d, made)
    d.cli("start", c, timeout=60)
    dirs = [p for p in lxmtest.cgroup_dirs(c)
            if os.path.exists(os.path.join(p, "devices.list"))]
    if not dirs:
        d.cli("stop", c, timeout=60)
        pytest.skip("no v1 devices controller on this host")
    sub = os.path.join(dirs[0], "nested")
    os.mkdir(sub)
    try:
        r = patch(d, c, {"z": {"type": "unix-char", "source": "/dev/zero", "path": "/dev/z2",
                               "major": "1", "minor": "11"}})
        assert r.status == 400 and "requires restart" in r.json["error"], r
        assert "z" not in assert_sync(d.api("GET", "/1.0/instances/" + c))["devices"]
        assert sh(d, c, "test -e /dev/z2 && echo yes || echo no").stdout == "no\n"
    finally:
        os.rmdir(sub)
    d.cli("stop", c, timeout=60)


def test_required_false_missing_source(lxmd, made):
    d = lxmd
    c = init(d, made)
    missing = "/dev/lxm-test-%s" % unique("x")
    dev = {"type": "unix-char", "source": missing, "path": "/dev/maybe"}
    assert patch(d, c, {"maybe": dev})["status"] == "Success"
    # Required (the default): the start fails, naming the device and the path.
    p = d.cli("start", c, check=False, timeout=60)
    assert p.returncode != 0 and "unix device 'maybe'" in p.stderr and missing in p.stderr, \
        p.stderr
    dev["required"] = "false"
    assert patch(d, c, {"maybe": dev})["status"] == "Success"
    d.cli("start", c, timeout=60)
    assert sh(d, c, "test -e /dev/maybe && echo yes || echo no").stdout == "no\n"
    log = d.log_text()
    assert "unix device 'maybe'" in log and "skipped" in log, log[-2000:]
    d.cli("stop", c, timeout=60)


def test_types_refused(lxmd, made):
    d = lxmd
    c = init(d, made)
    r = patch(d, c, {"g": {"type": "gpu"}})
    assert r.status == 400 and "device 'g': type 'gpu' is not supported by lxm" in r.json["error"]
    r = patch(d, c, {"d": {"type": "dsik", "source": "/srv", "path": "/srv"}})
    assert r.status == 400, r
    assert "unknown type 'dsik'" in r.json["error"] and "did you mean 'disk'" in r.json["error"]
    r = patch(d, c, {"z": {"type": "unix-char", "source": "/dev/zero", "mode": "rw"}})
    assert r.status == 400 and "unix device 'z'" in r.json["error"] and "mode=rw" in \
        r.json["error"], r
    r = patch(d, c, {"n": {"type": "none", "path": "/x"}})
    assert r.status == 400 and "key 'path'" in r.json["error"], r
    # The CLI says the same, and profiles are checked the same way.
    p = d.cli("config", "device", "add", c, "u", "usb", check=False)
    assert p.returncode != 0 and "type 'usb' is not supported by lxm" in p.stderr, p.stderr
    r = d.api("POST", "/1.0/profiles", {"name": unique("p"),
                                        "devices": {"x": {"type": "unix-chr", "path": "/dev/x",
                                                          "major": "1", "minor": "5"}}})
    assert r.status == 400 and "did you mean 'unix-char'" in r.json["error"], r
    assert set(assert_sync(d.api("GET", "/1.0/instances/" + c))["devices"]) <= {"root"}


@pytest.fixture
def bridge():
    """A bridge of this test's own, up, without an address; deleted at teardown."""
    name = "lxmd%04x" % random.randrange(0x10000)
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def veths_on(bridge):
    out = subprocess.run(["ip", "-br", "link", "show", "master", bridge], capture_output=True,
                         text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_none_masks_profile_devices(lxmd, made, tmp_path, bridge):
    d = lxmd
    share = tmp_path / "share"
    share.mkdir()
    (share / "f").write_text("from the profile")
    prof = unique("p")
    r = d.api("POST", "/1.0/profiles", {"name": prof, "devices": {
        "data": {"type": "disk", "source": str(share), "path": "/srv/data"},
        "eth1": {"type": "nic", "nictype": "bridged", "parent": bridge}}})
    assert r.status in (200, 201), r
    try:
        c = init(d, made, "default", prof)
        # Without a mask the profile's devices are there (the test can fail).
        d.cli("start", c, timeout=60)
        assert sh(d, c, "cat /srv/data/f").stdout == "from the profile"
        assert sh(d, c, "test -e /sys/class/net/eth1 && echo yes").stdout == "yes\n"
        assert len(veths_on(bridge)) == 1
        d.cli("stop", c, timeout=60)

        # Masked by none devices of the instance's own.
        assert patch(d, c, {"data": {"type": "none"}, "eth1": {"type": "none"}}
                     )["status"] == "Success"
        inst = assert_sync(d.api("GET", "/1.0/instances/" + c))
        assert inst["expanded_devices"]["data"] == {"type": "none"}
        assert inst["expanded_devices"]["eth1"] == {"type": "none"}
        d.cli("start", c, timeout=60)
        assert sh(d, c, "test -e /srv/data/f && echo yes || echo no").stdout == "no\n"
        assert str(share) not in sh(d, c, "cat /proc/mounts").stdout
        assert sh(d, c, "test -e /sys/class/net/eth1 && echo yes || echo no").stdout == "no\n"
        assert veths_on(bridge) == []
        d.cli("stop", c, timeout=60)

        # A later profile masks an earlier one's device the same way.
        mask = unique("m")
        r = d.api("POST", "/1.0/profiles", {"name": mask, "devices": {"data": {"type": "none"}}})
        assert r.status in (200, 201), r
        c2 = init(d, made, "default", prof, mask)
        inst = assert_sync(d.api("GET", "/1.0/instances/" + c2))
        assert inst["expanded_devices"]["data"] == {"type": "none"}
        d.cli("start", c2, timeout=60)
        assert sh(d, c2, "test -e /srv/data/f && echo yes || echo no").stdout == "no\n"
        d.cli("delete", "-f", c2)
        d.api("DELETE", "/1.0/profiles/" + mask)
    finally:
        for n in list(made):
            d.cli("delete", "-f", n, check=False)
        d.api("DELETE", "/1.0/profiles/" + prof)
