"""A profile change reaches the running instances that use it: limits land in their cgroups, disks
are mounted and unmounted, nics hot-plugged and removed, at once, in every instance, with the
stacking order (profiles in order, then the instance's own keys) kept. A change that would make
one instance invalid is refused before anything is recorded, naming that instance; one that a
running instance only takes at its next start is said so; one that is recorded but that an
instance could not take live is reported with the instance and the cause (LXD's "profile change
still saved").

Busybox containers on a private lxmd; the nic test uses a bridge of its own, removed at the end."""

import os
import re
import socket

import pytest

from lxmtest import assert_sync, cgroup_dirs, unique, wait_for
from nettest import free_link_name, host_links, ip

BUSYBOX = "/bin/busybox"
MiB = 1 << 20

pytestmark = pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                                reason="busybox-static is not installed")


@pytest.fixture
def containers(launched):
    """Launches busybox containers with profiles default + the given ones (and config keys),
    through conftest's launched (which checks that nothing of theirs is left)."""
    return lambda profiles, config=None: launched(config=config, profiles=profiles)


@pytest.fixture
def bridge():
    """A bridge of this test's own, up, without an address; deleted at teardown."""
    name = free_link_name("lxmt")
    ip("link", "add", name, "type", "bridge")
    try:
        ip("link", "set", name, "up")
        yield name
    finally:
        ip("link", "del", name, check=False)
    assert name not in host_links()


def profile(d, name):
    return assert_sync(d.api("GET", "/1.0/profiles/" + name))


def new_profile(d, config=None):
    name = unique("p")
    d.cli("profile", "create", name)
    for k, v in (config or {}).items():
        d.cli("profile", "set", name, k, v)
    return name


def cgfile(name, controller, filename):
    """A cgroup v1 file of the instance, or None."""
    for path in cgroup_dirs(name):
        if re.search(r"/%s/lxm\.payload(\.[0-9a-f]{8})?/" % re.escape(controller), path):
            p = os.path.join(path, filename)
            return p if os.path.exists(p) else None
    return None


def memory_limit(name):
    path = cgfile(name, "memory", "memory.limit_in_bytes")
    if path is None:
        pytest.skip("no cgroup v1 memory controller")
    with open(path) as f:
        return int(f.read())


def cfs_quota(name):
    path = cgfile(name, "cpu", "cpu.cfs_quota_us")
    if path is None:
        pytest.skip("no cgroup v1 cpu controller")
    with open(path) as f:
        return int(f.read())


def sh(d, name, script, check=True):
    return d.cli("exec", name, "--", "sh", "-c", script, check=check, timeout=60)


def test_limit_set_on_profile_reaches_running_instances(lxmd, containers):
    d = lxmd
    p = new_profile(d)
    c1, c2 = containers([p]), containers([p])
    before = memory_limit(c1)
    assert before > 128 * MiB

    d.cli("profile", "set", p, "limits.memory", "128MiB")
    assert memory_limit(c1) == 128 * MiB
    assert memory_limit(c2) == 128 * MiB
    assert profile(d, p)["config"]["limits.memory"] == "128MiB"
    # The instances themselves did not change: the limit comes from the profile.
    for c in (c1, c2):
        inst = assert_sync(d.api("GET", "/1.0/instances/" + c))
        assert "limits.memory" not in inst["config"]
        assert inst["expanded_config"]["limits.memory"] == "128MiB"


def test_stacking_order_after_live_changes(lxmd, containers):
    d = lxmd
    a = new_profile(d, {"limits.memory": "100MiB"})
    b = new_profile(d)
    c1 = containers([a, b])
    c2 = containers([a, b], {"limits.memory": "96MiB"})
    assert memory_limit(c1) == 100 * MiB
    assert memory_limit(c2) == 96 * MiB

    # b comes after a; the instance's own key comes last.
    d.cli("profile", "set", b, "limits.memory", "112MiB")
    assert memory_limit(c1) == 112 * MiB
    assert memory_limit(c2) == 96 * MiB
    # a is overridden by b: changing it changes nothing that runs.
    d.cli("profile", "set", a, "limits.memory", "80MiB")
    assert memory_limit(c1) == 112 * MiB
    assert memory_limit(c2) == 96 * MiB
    # Without b's key, a's value applies again.
    d.cli("profile", "unset", b, "limits.memory")
    assert memory_limit(c1) == 80 * MiB
    assert memory_limit(c2) == 96 * MiB


def test_disk_added_to_profile_is_mounted_live(lxmd, containers, tmp_path):
    d = lxmd
    src = tmp_path / "data"
    src.mkdir()
    (src / "hello").write_text("from the host\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(src, 0o755)
    os.chmod(src / "hello", 0o644)
    p = new_profile(d)
    c1, c2 = containers([p]), containers([p])

    d.cli("profile", "device", "add", p, "data", "disk", "source=%s" % src, "path=/mnt/data")
    for c in (c1, c2):
        assert sh(d, c, "cat /mnt/data/hello").stdout == "from the host\n"

    d.cli("profile", "device", "remove", p, "data")
    for c in (c1, c2):
        r = sh(d, c, "cat /mnt/data/hello", check=False)
        assert r.returncode != 0, r.stdout
        assert "/mnt/data" not in sh(d, c, "cat /proc/mounts").stdout
    assert "data" not in profile(d, p)["devices"]


def test_nic_added_to_profile_is_hotplugged(lxmd, containers, bridge):
    d = lxmd
    p = new_profile(d)
    c1, c2 = containers([p]), containers([p])

    d.cli("profile", "device", "add", p, "net9", "nic", "nictype=bridged",
          "parent=%s" % bridge, "name=eth9")
    ends = []
    for c in (c1, c2):
        inst = assert_sync(d.api("GET", "/1.0/instances/" + c))
        hw = inst["config"].get("volatile.net9.hwaddr", "")
        host_end = inst["config"].get("volatile.net9.host_name", "")
        assert re.fullmatch(r"00:16:3e(:[0-9a-f]{2}){3}", hw), inst["config"]
        assert sh(d, c, "cat /sys/class/net/eth9/address").stdout.strip() == hw
        ends.append(host_end)
    out = ip("-br", "link", "show", "master", bridge)
    assert sorted(line.split()[0].split("@")[0] for line in out.splitlines()
                  if line.strip()) == sorted(ends)

    d.cli("profile", "device", "remove", p, "net9")
    for c in (c1, c2):
        assert sh(d, c, "ip link show eth9", check=False).returncode != 0
    assert wait_for(lambda: not ip("-br", "link", "show", "master", bridge).strip(),
                    what="veths off the bridge")


def test_change_invalid_for_one_instance_is_refused(lxmd, containers):
    d = lxmd
    p = new_profile(d)
    c1 = containers([p])
    # c2 runs on one CPU: 150% of CPU time is more than it can use.
    c2 = containers([p], {"limits.cpu": "1"})
    quota1 = cfs_quota(c1)

    r = d.cli("profile", "set", p, "limits.cpu.allowance", "150%", check=False)
    assert r.returncode != 0
    assert c2 in r.stderr and "limits.cpu.allowance" in r.stderr, r.stderr
    assert c1 not in r.stderr, r.stderr
    assert "limits.cpu.allowance" not in profile(d, p)["config"]
    assert cfs_quota(c1) == quota1

    # A disk whose source does not exist would break every running instance: refused too.
    r = d.cli("profile", "device", "add", p, "data", "disk", "source=/nonexistent-lxm-it",
              "path=/mnt/data", check=False)
    assert r.returncode != 0
    assert "/nonexistent-lxm-it" in r.stderr and "instance '" in r.stderr, r.stderr
    assert profile(d, p)["devices"] == {}

    # What fits every instance goes through.
    d.cli("profile", "set", p, "limits.cpu.allowance", "50%")
    assert cfs_quota(c1) > 0 and cfs_quota(c2) > 0


def test_change_that_waits_for_a_restart_is_reported(lxmd, containers):
    d = lxmd
    p = new_profile(d)
    c1, c2 = containers([p]), containers([p])

    r = d.api("PATCH", "/1.0/profiles/" + p, {"config": {"security.nesting": "true"}})
    pending = assert_sync(r)["restart_required"]
    assert pending == {c1: ["security.nesting"], c2: ["security.nesting"]}, pending
    assert profile(d, p)["config"]["security.nesting"] == "true"
    log = d.stderr_text() + d.log_text()
    for c in (c1, c2):
        assert "instance '%s': security.nesting changed: takes effect at its next start" % c \
            in log, log[-3000:]
    # The CLI says it, for a profile and for an instance's own key.
    r = d.cli("profile", "set", p, "security.nesting", "false")
    for c in (c1, c2):
        assert "Instance '%s': security.nesting takes effect at its next start" % c \
            in r.stderr, r.stderr
    r = d.cli("config", "set", c1, "security.nesting", "true")
    assert "Instance '%s': security.nesting takes effect at its next start" % c1 in r.stderr, \
        r.stderr
    r = d.cli("config", "set", c1, "user.note", "x")
    assert "takes effect" not in r.stderr, r.stderr
    d.cli("config", "unset", c1, "security.nesting")
    # A stopped instance has nothing waiting.
    d.cli("stop", "-f", c2, timeout=60)
    r = d.api("PATCH", "/1.0/profiles/" + p, {"config": {"security.nesting": "true"}})
    assert assert_sync(r)["restart_required"] == {c1: ["security.nesting"]}


def test_recorded_change_that_fails_live_names_the_instance(lxmd, containers):
    d = lxmd
    p = new_profile(d)
    c1 = containers([p])
    # A port already in use on the host: the proxy cannot listen.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = d.cli("profile", "device", "add", p, "web", "proxy",
                  "listen=tcp:127.0.0.1:%d" % port, "connect=tcp:127.0.0.1:80", check=False)
        assert r.returncode != 0
        assert "profile change still saved" in r.stderr, r.stderr
        assert "instance '%s'" % c1 in r.stderr and "web" in r.stderr, r.stderr
        # As in LXD, the profile keeps the change.
        assert "web" in profile(d, p)["devices"]
        log = d.stderr_text() + d.log_text()
        assert "instance '%s' could not be updated" % c1 in log, log[-3000:]
    finally:
        s.close()
    d.cli("profile", "device", "remove", p, "web")
    assert "web" not in profile(d, p)["devices"]
