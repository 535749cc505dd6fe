"""Virtual machines at run time (issue 9), as a user sees them: the busybox VM image (built by
templates/busybox/build --vm, the kernel from the cache test_template_vm keeps) imported as
busybox/vm, `lxm init busybox v1 --vm` with a nic on a managed bridge of the test's own, then
start under TCG, the guest's kernel on the console log, state (Running, QEMU's pid, memory, the
tap's counters), freeze and unfreeze (QMP stop/cont), a graceful stop through the ACPI power
button (the guest powers off), a forced stop, lxmd killed with SIGKILL and restarted while the VM
runs, and delete leaving no tap, no QEMU, no socket and no cgroup."""

import json
import os
import shutil
import socket
import subprocess
import tarfile
import time

import pytest

import nettest
from lxmtest import REPO, build_dir, cgroup_dirs, unique, wait_for

BUSYBOX_BUILD = os.path.join(REPO, "templates", "busybox", "build")
KERNEL_CACHE = "/var/cache/lxm-test/kernel"
QEMU = shutil.which("qemu-system-x86_64")

pytestmark = [
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="the VM images are x86_64 only"),
    pytest.mark.skipif(not QEMU, reason="qemu-system-x86_64 missing: run scripts/install-deps"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="busybox-static is not installed"),
]


@pytest.fixture(scope="module")
def vm_image(tmp_path_factory):
    """The busybox VM image as a unified tarball."""
    agent = os.path.join(REPO, build_dir(), "lxmd", "vm", "agent", "lxm-agent")
    assert os.access(agent, os.X_OK), "%s not built" % agent
    d = tmp_path_factory.mktemp("bbvm")
    out = str(d / "img")
    env = dict(os.environ, LXM_TEMPLATE_CACHE=KERNEL_CACHE)
    r = subprocess.run([BUSYBOX_BUILD, out, "--vm", "--agent", agent], capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    tarball = str(d / "vm.tar")
    with tarfile.open(tarball, "w") as t:
        for name in ("metadata.yaml", "rootfs.img", "boot"):
            t.add(os.path.join(out, name), arcname=name)
    shutil.rmtree(out)
    return tarball


@pytest.fixture
def vmd(lxmd_factory, vm_image):
    d = lxmd_factory()
    d.start()
    d.cli("image", "import", vm_image, "--alias", "busybox/vm", timeout=120)
    d.made = []
    net, _, _ = nettest.create_network(d, "lxmv", "ipv6.address=none")
    d.net = net
    yield d
    for n in d.made:
        d.cli("delete", "-f", n, check=False, timeout=60)
    nettest.delete_network(d, net)


def state(d, name):
    r = d.api("GET", "/1.0/instances/%s/state" % name)
    assert r.status == 200, r.json
    return r.json["metadata"]


def console_log(d, name):
    return d.cli("console", name, "--show-log").stdout


def qemu_pids(name):
    """QEMU processes of VM name (its -name guest=NAME,...)."""
    out = subprocess.run(["pgrep", "-f", "guest=%s," % name], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def make_vm(d, name, **config):
    d.cli("init", "busybox", name, "--vm", timeout=120)
    d.made.append(name)
    for k, v in dict({"limits.memory": "256MiB", "security.vm.accel": "tcg"}, **config).items():
        d.cli("config", "set", name, "%s=%s" % (k, v))
    d.cli("config", "device", "add", name, "eth0", "nic", "network=%s" % d.net)


def start_and_boot(d, name):
    """Starts name and waits for new kernel output and the boot marker on its console log (the
    log keeps earlier boots: only new lines count)."""
    logged = os.path.exists(os.path.join(d.root, "logs", name, "console.log"))
    before = console_log(d, name) if logged else ""
    banners, ready = before.count("Linux version"), before.count("lxm-vm: ready")
    t0 = time.monotonic()
    d.cli("start", name, timeout=60)
    wait_for(lambda: console_log(d, name).count("Linux version") > banners, timeout=60,
             what="the guest kernel's banner on the console log")
    first = time.monotonic() - t0
    wait_for(lambda: console_log(d, name).count("lxm-vm: ready") > ready, timeout=120,
             what="the guest's boot marker on the console log")
    print("VM %s: kernel output after %.1f s, booted after %.1f s"
          % (name, first, time.monotonic() - t0))


def monitor_request(d, name, req):
    """One request to the VM's lxm-monitor, as lxmd sends it."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(os.path.join(d.root, "run", name, "monitor.sock"))
    s.sendall((json.dumps(req) + "\n").encode())
    with s, s.makefile() as f:
        return json.loads(f.readline())


def tap_of(d, name):
    v = d.api("GET", "/1.0/instances/%s" % name).json["metadata"]
    host = v["config"].get("volatile.eth0.host_name")
    assert host, v["config"]
    return host


def test_vm_lifecycle(vmd):
    d = vmd
    v1 = unique("v")
    make_vm(d, v1)
    start_and_boot(d, v1)

    # The info line and the state: QEMU's pid, the cgroup's memory, the tap.
    info = d.cli("info", v1).stdout
    assert "vm acceleration: tcg (security.vm.accel)" in info, info
    st = state(d, v1)
    assert st["status"] == "Running", st
    pids = qemu_pids(v1)
    assert st["pid"] in pids and len(pids) == 1, (st["pid"], pids)
    assert st["memory"]["usage"] > 64 * 1024 * 1024, st["memory"]
    assert st["memory"]["total"] == 256 * 1024 * 1024, st["memory"]  # the guest's RAM, from QMP
    assert st["processes"] == -1
    tap = tap_of(d, v1)
    assert tap.startswith("tap"), tap  # LXD names a VM's host end tap…
    assert "master %s" % d.net in nettest.ip("link", "show", "dev", tap)
    assert st["network"]["eth0"]["host_name"] == tap
    assert st["network"]["eth0"]["counters"]["bytes_sent"] >= 0
    rss = int(open("/proc/%d/status" % st["pid"]).read().split("VmRSS:")[1].split()[0])
    print("QEMU RSS: %d MiB" % (rss // 1024))
    # The guest's UUID is recorded (volatile.uuid) and given to QEMU.
    uuid = d.api("GET", "/1.0/instances/%s" % v1).json["metadata"]["config"]["volatile.uuid"]
    argv = open("/proc/%d/cmdline" % st["pid"], "rb").read().split(b"\0")
    assert argv[argv.index(b"-uuid") + 1].decode() == uuid
    # A VM's RAM cannot change while QEMU runs: a new limits.memory waits for the next start
    # (its cgroup, sized for the running guest, is left alone).
    p = d.cli("config", "set", v1, "limits.memory=128MiB")
    assert ("Instance '%s': limits.memory takes effect at its next start" % v1) in p.stderr, \
        p.stderr
    # Nor are devices hot-plugged into QEMU: a new nic waits for the next start too, and its
    # removal as well; no tap is made meanwhile.
    links = nettest.host_links()
    p = d.cli("config", "device", "add", v1, "eth1", "nic", "network=%s" % d.net)
    assert ("Instance '%s': device eth1 takes effect at its next start" % v1) in p.stderr, \
        p.stderr
    assert nettest.host_links() == links
    p = d.cli("config", "device", "remove", v1, "eth1")
    assert ("Instance '%s': device eth1 takes effect at its next start" % v1) in p.stderr, \
        p.stderr
    time.sleep(1)
    assert state(d, v1)["status"] == "Running" and qemu_pids(v1) == [st["pid"]]

    # Freeze pauses the vCPUs; unfreeze resumes them.
    d.cli("pause", v1)
    assert state(d, v1)["status"] == "Frozen"
    assert monitor_request(d, v1, {"op": "state"})["status"] == "paused"
    d.cli("start", v1)
    assert state(d, v1)["status"] == "Running"

    # A reboot inside the guest ends QEMU (-no-reboot): the monitor starts it again.
    pid = state(d, v1)["pid"]
    ready = console_log(d, v1).count("lxm-vm: ready")
    con = socket.socket(socket.AF_UNIX)
    con.connect(os.path.join(d.root, "run", v1, "monitor.sock"))
    con.sendall(b'{"op":"console"}\n')
    assert con.recv(64).startswith(b'{"ok":true}')
    con.sendall(b"reboot\n")
    wait_for(lambda: console_log(d, v1).count("lxm-vm: ready") > ready, timeout=120,
             what="the guest booted again after its reboot")
    con.close()
    st = state(d, v1)
    assert st["status"] == "Running" and st["pid"] != pid and qemu_pids(v1) == [st["pid"]], st

    # A graceful stop: the guest sees its power button and powers off in time.
    t0 = time.monotonic()
    d.cli("stop", v1, "--timeout", "60", timeout=90)
    took = time.monotonic() - t0
    print("graceful stop: %.1f s" % took)
    assert took < 60
    log = console_log(d, v1)
    assert "reboot: Power down" in log, log[-2000:]
    assert state(d, v1)["status"] == "Stopped"
    assert not qemu_pids(v1)
    assert not nettest.link_exists(tap)

    # A forced stop ends QEMU at once.
    start_and_boot(d, v1)
    d.cli("stop", v1, "--force", timeout=30)
    assert state(d, v1)["status"] == "Stopped"
    assert not qemu_pids(v1)

    # lxmd killed and restarted: the VM keeps running and can still be stopped.
    start_and_boot(d, v1)
    pid = state(d, v1)["pid"]
    d.kill9()
    time.sleep(0.5)
    assert qemu_pids(v1) == [pid]
    d.start()
    st = state(d, v1)
    assert st["status"] == "Running" and st["pid"] == pid, st
    d.cli("stop", v1, "--force", timeout=30)
    assert not qemu_pids(v1)

    # Delete leaves nothing: no tap, no QEMU, no socket under the run dir, no cgroup.
    tap = tap_of(d, v1)
    d.cli("delete", v1, timeout=60)
    d.made.remove(v1)
    assert not nettest.link_exists(tap)
    assert not qemu_pids(v1)
    rundir = os.path.join(d.root, "run", v1)
    assert not os.path.exists(rundir) or not [
        f for f in os.listdir(rundir) if f.endswith(".sock")]
    assert not [c for c in cgroup_dirs(v1) if os.path.exists(c)]


def test_vm_agent_network_snapshot_copy(vmd, tmp_path):
    """The guest agent in a real VM: exec shows the guest's kernel, exit codes and stdin pass
    through, files go both ways; the VM gets a DHCP lease on the managed bridge; a snapshot and a
    copy of the running VM are taken, the snapshot is restored into the running VM and the copy
    boots on its own disk."""
    d = vmd
    v1 = unique("v")
    make_vm(d, v1)
    start_and_boot(d, v1)

    # Exec waits for the agent, then runs in the guest: its kernel is not the host's.
    guest = d.cli("exec", v1, "--", "uname", "-r", timeout=180).stdout.strip()
    assert guest and guest != os.uname().release, (guest, os.uname().release)
    assert "cloud-amd64" in guest, guest
    p = d.cli("exec", v1, "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n"), p
    data = "".join("line %d\n" % i for i in range(2000))
    assert d.cli("exec", v1, "--", "cat", input=data).stdout == data

    # Files both ways, mode kept.
    src = tmp_path / "f.txt"
    src.write_text("from the host\n")
    d.cli("file", "push", str(src), "%s/root/f.txt" % v1, "--mode", "0640")
    assert d.cli("exec", v1, "--", "stat", "-c", "%a", "/root/f.txt").stdout.strip() == "640"
    d.cli("file", "pull", "%s/root/f.txt" % v1, str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "from the host\n"

    # DHCP on the managed bridge: the guest's eth0 has the lease dnsmasq gave it.
    def lease():
        out = d.cli("network", "list-leases", d.net, "--format", "json").stdout
        return [le for le in json.loads(out) if le.get("hostname") == v1]
    wait_for(lambda: lease(), timeout=90, what="a DHCP lease for the VM")
    addr = lease()[0]["address"]
    assert addr in d.cli("exec", v1, "--", "ip", "-4", "addr", "show", "eth0").stdout
    # The VM's state shows the leased address on eth0, and lxm list shows it.
    prefix = d.api("GET", "/1.0/networks/" + d.net).json["metadata"]["config"][
        "ipv4.address"].split("/")[1]
    assert {"family": "inet", "address": addr, "netmask": prefix, "scope": "global"} in \
        state(d, v1)["network"]["eth0"]["addresses"], state(d, v1)["network"]
    row = [ln for ln in d.cli("list").stdout.splitlines() if v1 in ln]
    assert row and addr in row[0], row

    # Snapshot of the running VM: QEMU is paused for the copy (its disk flushed), and the guest
    # runs on after it.
    d.cli("exec", v1, "--", "sh", "-c", "echo snap > /root/g.txt; sync", timeout=180)
    d.cli("snapshot", v1, "s0", timeout=120)
    assert state(d, v1)["status"] == "Running"
    d.cli("exec", v1, "--", "sh", "-c", "echo changed > /root/g.txt; sync", timeout=60)
    # A copy of the running VM has the disk as it is now, on a disk of its own.
    v2 = unique("v")
    d.cli("copy", v1, v2, timeout=120)
    d.made.append(v2)
    assert state(d, v1)["status"] == "Running"
    # Restoring the running VM stops it, puts the snapshot's disk back and starts it again.
    d.cli("restore", v1, "s0", timeout=240)
    assert state(d, v1)["status"] == "Running"
    assert d.cli("exec", v1, "--", "cat", "/root/g.txt", timeout=180).stdout == "snap\n"
    start_and_boot(d, v2)
    assert d.cli("exec", v2, "--", "cat", "/root/g.txt", "/root/f.txt",
                 timeout=180).stdout == "changed\nfrom the host\n"
    d.cli("stop", v2, timeout=120)
    d.cli("delete", v2)
    d.made.remove(v2)
    assert qemu_pids(v2) == []


@pytest.mark.parametrize("driver", ["btrfs", "overlay"])
def test_snapshot_of_running_vm_in_pool(lxmd_factory, vm_image, driver):
    """A running VM's snapshot in a btrfs pool (a subvolume snapshot) and in an overlay pool (a
    copy of its qcow2 overlay, whose metadata QEMU caches): QEMU is paused and its disk flushed
    first, so the snapshot holds what the guest synced, and a copy of it boots."""
    d = lxmd_factory(storage=driver)
    d.start()
    d.cli("image", "import", vm_image, "--alias", "busybox/vm", timeout=120)
    d.made = []
    v1, v2 = unique("v"), unique("v")
    try:
        d.cli("init", "busybox", v1, "--vm", timeout=120)
        d.made.append(v1)
        for kv in ("limits.memory=256MiB", "security.vm.accel=tcg"):
            d.cli("config", "set", v1, kv)
        start_and_boot(d, v1)
        d.cli("exec", v1, "--", "sh", "-c",
              "dd if=/dev/urandom of=/root/blob bs=64k count=64 2>/dev/null; "
              "sha256sum /root/blob > /root/blob.sum; sync", timeout=180)
        d.cli("snapshot", v1, "s0", timeout=120)
        assert state(d, v1)["status"] == "Running"
        d.cli("exec", v1, "--", "sh", "-c", "rm /root/blob; sync", timeout=60)
        if driver == "overlay":
            disk = os.path.join(d.root, "storage-pools", "default", "containers-snapshots", v1,
                                "s0", "root.qcow2")
            r = subprocess.run(["qemu-img", "check", "-U", disk], capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stdout + r.stderr
        d.cli("copy", "%s/s0" % v1, v2, timeout=120)
        d.made.append(v2)
        start_and_boot(d, v2)
        out = d.cli("exec", v2, "--", "sha256sum", "-c", "/root/blob.sum", timeout=180).stdout
        assert out.strip() == "/root/blob: OK", out
    finally:
        for n in d.made:
            d.cli("delete", "-f", n, check=False, timeout=60)
