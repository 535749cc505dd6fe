"""Nic devices as a user sees them: a busybox container with a `nictype=bridged` nic on a bridge
the test creates gets eth0 with the MAC lxmd recorded (volatile.eth0.hwaddr), reaches the bridge
and is reached from the host; a second nic is hot-plugged into the running container and
unplugged; the host end of each veth goes away with the container; bad nic keys are refused with
the device and the key named; `lxm list` shows the container's address.

Traffic goes only to the bridge this test creates (10.X.Y.0/24, chosen to collide with no route
of the host); the bridge is removed at the end even when a test fails."""

import ipaddress
import os
import random
import re
import subprocess

import pytest

from lxmtest import assert_async, made_fixture, patch, sh, unique, wait_for
from nettest import free_link_name, free_subnet, host_links, ip, ping

BUSYBOX = "/bin/busybox"

pytestmark = pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                                reason="busybox-static is not installed")


@pytest.fixture
def bridge():
    """A bridge of this test's own, 10.X.Y.1/24, up; deleted at teardown."""
    name = free_link_name("lxmt")
    net = free_subnet()
    hosts = list(net.hosts())
    ip("link", "add", name, "type", "bridge")
    try:
        ip("addr", "add", "%s/24" % hosts[0], "dev", name)
        ip("link", "set", name, "up")
        yield {"name": name, "gw": str(hosts[0]), "c1": str(hosts[1]), "c2": str(hosts[2])}
    finally:
        ip("link", "del", name, check=False)
    assert name not in host_links()


made = made_fixture()


def instance(d, name):
    r = d.api("GET", "/1.0/instances/" + name)
    assert r.status == 200, r
    return r.json["metadata"]


def veths_of_bridge(bridge):
    out = ip("-br", "link", "show", "master", bridge)
    return sorted(line.split()[0].split("@")[0] for line in out.splitlines() if line.strip())


def nic(bridge, **kw):
    dev = {"type": "nic", "nictype": "bridged", "parent": bridge}
    dev.update(kw)
    return dev


def test_bridged_nic_hotplug_and_cleanup(lxmd, made, bridge):
    d = lxmd
    c = unique("c")
    made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    done = patch(d, c, {"devices": {"eth0": nic(bridge["name"])}})
    assert done["status"] == "Success", done
    d.cli("start", c, timeout=60)

    inst = instance(d, c)
    hw = inst["config"].get("volatile.eth0.hwaddr", "")
    host_end = inst["config"].get("volatile.eth0.host_name", "")
    assert re.fullmatch(r"00:16:3e(:[0-9a-f]{2}){3}", hw), inst["config"]
    assert re.fullmatch(r"veth[0-9a-f]{8}", host_end), inst["config"]
    # The host end is on the test's bridge; the peer is eth0 inside, with the recorded MAC.
    assert veths_of_bridge(bridge["name"]) == [host_end]
    # In hairpin mode, so that the instance reaches itself through a DNAT of its own address.
    with open("/sys/class/net/%s/brport/hairpin_mode" % host_end) as f:
        assert f.read().strip() == "1"
    out = sh(d, c, "cat /sys/class/net/eth0/address").stdout.strip()
    assert out == hw

    # A static address inside; both directions over the bridge.
    sh(d, c, "ip link set eth0 up && ip addr add %s/24 dev eth0" % bridge["c1"])
    p = ping(d, c, bridge["gw"])
    assert p.returncode == 0, p.stdout + p.stderr
    h = subprocess.run([BUSYBOX, "ping", "-c", "1", "-W", "2", bridge["c1"]],
                       capture_output=True, text=True)
    assert h.returncode == 0, h.stdout + h.stderr

    # lxm list shows the address from the live state (and not lo's).
    lst = d.cli("list", "--format", "csv", "-c", "n4").stdout
    row = [line for line in lst.splitlines() if line.startswith(c + ",")]
    assert row and "%s (eth0)" % bridge["c1"] in row[0], lst
    assert "127.0.0.1" not in lst

    # Hot-plug a second nic (custom name and MTU) into the running container, then unplug it.
    done = patch(d, c, {"devices": {"net1": nic(bridge["name"], name="eth1", mtu="1400",
                                                hwaddr="00:16:3e:aa:bb:cc")}})
    assert done["status"] == "Success", done
    inst = instance(d, c)
    host1 = inst["config"].get("volatile.net1.host_name", "")
    assert host1 and host1 != host_end, inst["config"]
    assert veths_of_bridge(bridge["name"]) == sorted([host_end, host1])
    with open("/sys/class/net/%s/brport/hairpin_mode" % host1) as f:
        assert f.read().strip() == "1"
    out = sh(d, c, "cat /sys/class/net/eth1/address /sys/class/net/eth1/mtu").stdout.split()
    assert out == ["00:16:3e:aa:bb:cc", "1400"], out

    devices = dict(inst["devices"])
    del devices["net1"]
    r = d.api("PUT", "/1.0/instances/" + c, {"config": {}, "devices": devices,
                                             "profiles": inst["profiles"]})
    done = d.wait_op(assert_async(r)["id"])
    assert done["status"] == "Success", done
    assert veths_of_bridge(bridge["name"]) == [host_end]
    assert host1 not in host_links()
    p = sh(d, c, "ip link show eth1", check=False)
    assert p.returncode != 0, p.stdout

    # A restart gets the same nic again (the last run's host end may still be going away).
    d.cli("restart", "-f", c, timeout=60)
    assert sh(d, c, "cat /sys/class/net/eth0/address").stdout.strip() == hw
    assert veths_of_bridge(bridge["name"]) == [host_end]

    # The host end goes away with the container's network namespace.
    d.cli("stop", "-f", c, timeout=60)
    wait_for(lambda: host_end not in host_links(), 10, "veth %s to go" % host_end)
    assert veths_of_bridge(bridge["name"]) == []
    # The MAC is kept across starts.
    d.cli("start", c, timeout=60)
    assert instance(d, c)["config"]["volatile.eth0.hwaddr"] == hw
    assert sh(d, c, "cat /sys/class/net/eth0/address").stdout.strip() == hw
    assert veths_of_bridge(bridge["name"]) == [host_end]
    d.cli("delete", "-f", c, timeout=60)
    made.remove(c)
    wait_for(lambda: host_end not in host_links(), 10, "veth %s to go" % host_end)
    assert veths_of_bridge(bridge["name"]) == []


def test_bad_nic_keys_are_refused(lxmd, made, bridge):
    d = lxmd
    c = unique("c")
    made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    cases = [
        ({"type": "nic", "nictype": "bridged", "parent": bridge["name"], "colour": "red"},
         "colour"),
        (nic(bridge["name"], hwaddr="00:16:3e:zz:00:01"), "hwaddr"),
        (nic(bridge["name"], hwaddr="01:00:5e:00:00:01"), "hwaddr"),  # multicast
        (nic(bridge["name"], mtu="12"), "mtu"),
        (nic(bridge["name"], mtu="big"), "mtu"),
        ({"type": "nic", "nictype": "bridged"}, "parent"),
        ({"type": "nic"}, "network"),
        ({"type": "nic", "nictype": "macvlan", "parent": bridge["name"]}, "nictype"),
        (nic(bridge["name"], name="a/b"), "name"),
        (nic(bridge["name"], **{"ipv4.address": "10.0.0.5"}), "ipv4.address"),
    ]
    for dev, key in cases:
        r = d.api("PATCH", "/1.0/instances/" + c, {"devices": {"n0": dev}})
        assert r.status == 400, (dev, r)
        msg = r.json["error"]
        assert "'n0'" in msg and key in msg, (dev, msg)
    # Nothing was recorded.
    assert "n0" not in instance(d, c)["devices"]
    # A profile is checked the same way.
    r = d.api("POST", "/1.0/profiles", {"name": unique("p"), "devices": {
        "eth0": nic(bridge["name"], mtu="70000")}})
    assert r.status == 400 and "mtu" in r.json["error"], r


def test_missing_parent_fails_the_start_cleanly(lxmd, made, bridge):
    d = lxmd
    c = unique("c")
    made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    gone = bridge["name"] + "x"
    done = patch(d, c, {"devices": {"eth0": nic(gone)}})
    assert done["status"] == "Success", done
    p = d.cli("start", c, check=False, timeout=60)
    assert p.returncode != 0
    assert "eth0" in p.stderr and gone in p.stderr, p.stderr
    assert instance(d, c)["status"] == "Stopped"

    # The parent exists but the inner name collides with another nic's: refused at start.
    done = patch(d, c, {"devices": {"eth0": nic(bridge["name"]),
                                    "eth1": nic(bridge["name"], name="eth0")}})
    assert done["status"] == "Success", done
    p = d.cli("start", c, check=False, timeout=60)
    assert p.returncode != 0 and "both name" in p.stderr, p.stderr
    assert instance(d, c)["status"] == "Stopped"
    assert veths_of_bridge(bridge["name"]) == []


@pytest.fixture
def managed(lxmd):
    """A managed network of this test (no NAT: nothing leaves the bridge); deleted at teardown."""
    name = "lxmt%08x" % random.randrange(1 << 32)
    lxmd.cli("network", "create", name, "ipv4.nat=false", "ipv6.address=none")
    yield name
    lxmd.cli("network", "delete", name, check=False)
    assert name not in host_links()


def test_managed_network_nic_gets_its_static_lease(lxmd, made, managed):
    d = lxmd
    r = d.api("GET", "/1.0/networks/" + managed)
    assert r.status == 200, r
    gw = ipaddress.ip_interface(r.json["metadata"]["config"]["ipv4.address"])
    fixed = str(gw.network.network_address + 77)
    c = unique("c")
    made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    done = patch(d, c, {"devices": {"eth0": {"type": "nic", "network": managed,
                                             "ipv4.address": fixed}}})
    assert done["status"] == "Success", done
    d.cli("start", c, timeout=60)
    inst = instance(d, c)
    hw = inst["config"]["volatile.eth0.hwaddr"]
    host_end = inst["config"]["volatile.eth0.host_name"]
    assert veths_of_bridge(managed) == [host_end]
    # The image's rcS brings up eth0 and runs udhcpc: dnsmasq hands out the static lease.

    def leased():
        out = sh(d, c, "ip -4 -o addr show dev eth0", check=False).stdout
        return ("inet %s/%d" % (fixed, gw.network.prefixlen)) in out

    wait_for(leased, 20, "the static lease %s on eth0" % fixed)
    assert sh(d, c, "cat /sys/class/net/eth0/address").stdout.strip() == hw
    lst = d.cli("list", "--format", "csv", "-c", "n4").stdout
    assert "%s (eth0)" % fixed in lst, lst
    d.cli("delete", "-f", c, timeout=60)
    made.remove(c)
    wait_for(lambda: host_end not in host_links(), 10, "veth %s to go" % host_end)


def test_eth0_is_there_when_init_starts(lxmd, made, managed):
    """lxm-monitor creates the veths before init runs: the first sysinit step of the container
    sees eth0, the host end is on the bridge when `lxm start` returns, and the image's rcS gets a
    lease without waiting for eth0."""
    d = lxmd
    c = unique("c")
    made.append(c)
    d.cli("init", "busybox", c, timeout=120)
    done = patch(d, c, {"devices": {"eth0": {"type": "nic", "network": managed}}})
    assert done["status"] == "Success", done
    # A sysinit step before rcS records what init finds.
    inittab = os.path.join(d.root, "containers", c, "rootfs", "etc", "inittab")
    with open(inittab) as f:
        text = f.read()
    with open(inittab, "w") as f:
        f.write("::sysinit:/bin/sh -c 'ip -o link show eth0 >/eth0-at-boot 2>&1; "
                "echo rc=$? >>/eth0-at-boot'\n" + text)
    d.cli("start", c, timeout=60)
    inst = instance(d, c)
    host_end = inst["config"]["volatile.eth0.host_name"]
    hw = inst["config"]["volatile.eth0.hwaddr"]
    assert veths_of_bridge(managed) == [host_end]
    wait_for(lambda: "rc=" in sh(d, c, "cat /eth0-at-boot", check=False).stdout, 10,
             "the first sysinit step to run")
    seen = sh(d, c, "cat /eth0-at-boot").stdout
    assert "rc=0" in seen and hw in seen, seen

    def leased():
        out = sh(d, c, "ip -4 -o addr show dev eth0", check=False).stdout
        return " inet " in out

    wait_for(leased, 10, "a DHCP lease on eth0")
    d.cli("delete", "-f", c, timeout=60)
    made.remove(c)
    wait_for(lambda: host_end not in host_links(), 10, "veth %s to go" % host_end)


def test_nic_failure_in_the_monitor_leaves_nothing(lxmd, made, bridge):
    """A veth that cannot be created (its host end's name is taken by another link) fails the
    start before init runs: the message names the device, and no veth, process or cgroup is left
    when `lxm start` returns."""
    from lxmtest import cgroup_dirs, pids_mentioning

    d = lxmd
    c = unique("c")
    made.append(c)
    taken = free_link_name("lxmt")
    ip("link", "add", taken, "type", "bridge")
    try:
        d.cli("init", "busybox", c, timeout=120)
        done = patch(d, c, {"devices": {"a0": nic(bridge["name"]),
                                        "z9": nic(bridge["name"], name="eth1",
                                                  host_name=taken)}})
        assert done["status"] == "Success", done
        p = d.cli("start", c, check=False, timeout=60)
        assert p.returncode != 0
        assert "'z9'" in p.stderr and taken in p.stderr, p.stderr
        # Nothing is left, at once: not a0's veth, not the container.
        assert veths_of_bridge(bridge["name"]) == []
        a0 = instance(d, c)["config"]["volatile.a0.host_name"]
        assert a0 not in host_links()
        assert instance(d, c)["status"] == "Stopped"
        assert pids_mentioning(os.path.join(c, "spec.json")) == []
        assert cgroup_dirs(c) == []
        # The link of that name is untouched.
        assert taken in host_links()
    finally:
        ip("link", "del", taken, check=False)
