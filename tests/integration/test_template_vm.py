"""The virtual-machine variants of the templates (templates/*/build --vm), without lxmd.

The busybox VM image is built into a temporary directory, its files are checked (the root disk is
read with debugfs, never mounted), and it is booted for real with QEMU under TCG from a copy of its
disk, with no network device: the test waits for the marker the image prints on the serial
console once busybox init has run ("lxm-vm: ready <guest kernel>"), then powers the guest off from
its console and checks that QEMU exits.

The agent installed into the image is lxm-agent from the build directory ($LXM_BUILD_DIR, else
build-V1) when it has been built. When it has not, the test compiles a STAND-IN: a static program
that only sleeps, so that the image can be built and booted; the agent's own tests then live with
the agent. STANDIN_AGENT says which one a run used (printed with -s).

The kernel package (Debian's linux-image-cloud-amd64) is downloaded from the Debian mirror once
and kept in /var/cache/lxm-test/kernel, as test_template_debian keeps its image there. The Debian
VM image is slow to build (debootstrap + the kernel + initramfs-tools): it is cached in
/var/cache/lxm-test/debian-vm-<hash of the script> the same way and rebuilt only when the script
changes; those tests are skipped only when the mirror does not answer.
"""

import glob
import gzip
import hashlib
import os
import re
import select
import shutil
import subprocess
import time

import pytest
import yaml

from lxmtest import REPO

BUSYBOX_BUILD = os.path.join(REPO, "templates", "busybox", "build")
DEBIAN_BUILD = os.path.join(REPO, "templates", "debian", "build")
CACHE_ROOT = "/var/cache/lxm-test"
KERNEL_CACHE = os.path.join(CACHE_ROOT, "kernel")
QEMU = shutil.which("qemu-system-x86_64")

pytestmark = [
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="the VM images are x86_64 only"),
    pytest.mark.skipif(not QEMU, reason="qemu-system-x86_64 missing: run scripts/install-deps"),
]

STANDIN_AGENT = False


def real_agent():
    """The lxm-agent built by this project (lxmd/vm/agent/ of the build directory), or None."""
    for d in (os.environ.get("LXM_BUILD_DIR", ""), "build-V1"):
        if not d:
            continue
        d = os.path.join(REPO, d)
        for rel in ("lxmd/vm/agent/lxm-agent", "lxm-agent"):
            if os.access(os.path.join(d, rel), os.X_OK):
                return os.path.join(d, rel)
    return None


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    global STANDIN_AGENT
    path = real_agent()
    if path:
        return path
    # STAND-IN: the real agent is not built yet. Static, because the image has no libc.
    STANDIN_AGENT = True
    d = tmp_path_factory.mktemp("agent")
    src = d / "standin.c"
    src.write_text("#include <unistd.h>\nint main(void) { for (;;) pause(); }\n")
    out = str(d / "lxm-agent")
    r = subprocess.run(["gcc", "-static", "-O2", "-o", out, str(src)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    print("test_template_vm: lxm-agent is not built; using a STAND-IN agent that only sleeps")
    return out


def build(script, outdir, *args, timeout=300, env=None):
    e = dict(os.environ, LXM_TEMPLATE_CACHE=KERNEL_CACHE)
    e.pop("LXM_AGENT", None)
    e.update(env or {})
    return subprocess.run([script, outdir] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=e)


@pytest.fixture(scope="module")
def bbvm(agent, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bbvm") / "img")
    t0 = time.monotonic()
    r = build(BUSYBOX_BUILD, out, "--vm", "--agent", agent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print("busybox VM image built in %.1f s" % (time.monotonic() - t0))
    yield out
    shutil.rmtree(out, ignore_errors=True)


def debugfs_cat(disk, path):
    r = subprocess.run(["debugfs", "-R", "cat " + path, disk], capture_output=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def debugfs_stat(disk, path):
    r = subprocess.run(["debugfs", "-R", "stat " + path, disk], capture_output=True, text=True)
    return r.stdout


def cpio_names(path):
    """Member names of a gzip'd newc cpio archive."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    names, off = [], 0
    while off + 110 <= len(data):
        hdr = data[off:off + 110]
        assert hdr[:6] == b"070701", "not a newc cpio at offset %d" % off
        size = int(hdr[54:62], 16)
        namesize = int(hdr[94:102], 16)
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off = (off + 110 + namesize + 3) & ~3
        off = (off + size + 3) & ~3
        if name == "TRAILER!!!":
            break
        names.append(name)
    return names


# ---------------------------------------------------------------- busybox: the files


def test_vm_refused_without_agent(tmp_path):
    out = str(tmp_path / "img")
    r = build(BUSYBOX_BUILD, out, "--vm")
    assert r.returncode != 0
    assert "lxm-agent" in r.stderr and "--agent" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(out, "metadata.yaml"))
    r = build(BUSYBOX_BUILD, out, "--vm", "--agent", "/bin/sh")
    assert r.returncode != 0
    assert "not statically linked" in r.stderr, r.stderr


def test_busybox_vm_files(bbvm):
    assert sorted(os.listdir(bbvm)) == ["boot", "metadata.yaml", "rootfs.img"]
    assert sorted(os.listdir(os.path.join(bbvm, "boot"))) == ["initrd.img", "vmlinuz"]
    with open(os.path.join(bbvm, "metadata.yaml")) as f:
        meta = yaml.safe_load(f)
    assert meta["architecture"] == "x86_64"
    assert isinstance(meta["creation_date"], int)
    assert meta["properties"]["os"] == "busybox"
    assert "templates" not in meta
    lxm = meta["lxm"]
    assert lxm["type"] == "virtual-machine"
    assert lxm["kernel"] == "boot/vmlinuz" and lxm["initrd"] == "boot/initrd.img"
    assert "root=/dev/vda" in lxm["cmdline"] and "console=ttyS0" in lxm["cmdline"]
    assert re.match(r"^\d+\.\d+\.\d+-\d+-cloud-amd64$", lxm["kernel_version"]), lxm
    assert lxm["agent"] == "/usr/bin/lxm-agent"
    # The kernel is an x86 bzImage ("HdrS" at 0x202).
    with open(os.path.join(bbvm, "boot", "vmlinuz"), "rb") as f:
        f.seek(0x202)
        assert f.read(4) == b"HdrS"


def test_busybox_vm_initrd(bbvm):
    names = cpio_names(os.path.join(bbvm, "boot", "initrd.img"))
    assert "init" in names and "bin/busybox" in names and "bin/switch_root" in names
    mods = [n for n in names if n.endswith(".ko")]
    # This kernel has the virtio drivers as modules (checked against its config by the build).
    for m in ("virtio_pci.ko", "virtio_blk.ko", "virtio_net.ko", "virtio_console.ko"):
        assert "lib/modules/" + m in mods, mods


def test_busybox_vm_disk(bbvm, agent):
    disk = os.path.join(bbvm, "rootfs.img")
    r = subprocess.run(["dumpe2fs", "-h", disk], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert re.search(r"Filesystem volume name:\s+rootfs", r.stdout)
    inittab = debugfs_cat(disk, "/etc/inittab").decode()
    assert "::respawn:/etc/init.d/lxm-agent" in inittab
    assert "exec /usr/bin/lxm-agent" in debugfs_cat(disk, "/etc/init.d/lxm-agent").decode()
    assert "::sysinit:/etc/init.d/rcS.vm" in inittab
    with open(agent, "rb") as f:
        assert debugfs_cat(disk, "/usr/bin/lxm-agent") == f.read()
    st = debugfs_stat(disk, "/usr/bin/lxm-agent")
    assert re.search(r"User:\s+0\s+Group:\s+0", st), st
    assert "0755" in st, st
    with open(os.path.join(bbvm, "metadata.yaml")) as f:
        kver = yaml.safe_load(f)["lxm"]["kernel_version"]
    dep = debugfs_cat(disk, "/lib/modules/%s/modules.dep" % kver).decode()
    assert "kernel/drivers/block/virtio_blk.ko:" in dep
    # Sized to the content plus a margin, not to a fixed large size.
    assert os.path.getsize(disk) < 256 << 20


# ---------------------------------------------------------------- busybox: the boot


class Serial:
    """QEMU on a serial console on stdio; output collected as it comes."""

    def __init__(self, args):
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        self.out = b""

    def wait_for(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.out)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0 or self.p.poll() is not None and not self._read(0):
                return None
            self._read(min(left, 1.0))

    def _read(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            return False
        chunk = os.read(self.p.stdout.fileno(), 65536)
        self.out += chunk
        return bool(chunk)

    def send(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while self.p.poll() is None and time.monotonic() < deadline:
            self._read(0.5)
        while self._read(0):
            pass
        return self.p.poll()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.p.stdin.close()
        self.p.stdout.close()


def qemu_args(img, disk, cmdline, mem=256):
    return [QEMU, "-accel", "tcg", "-m", str(mem), "-nographic", "-nodefaults",
            "-serial", "stdio", "-kernel", os.path.join(img, "boot", "vmlinuz"),
            "-initrd", os.path.join(img, "boot", "initrd.img"), "-append", cmdline,
            "-drive", "file=%s,if=virtio,format=raw" % disk, "-no-reboot"]


def test_busybox_vm_boots_and_powers_off(bbvm, tmp_path):
    disk = str(tmp_path / "disk.img")
    shutil.copyfile(os.path.join(bbvm, "rootfs.img"), disk)
    with open(os.path.join(bbvm, "metadata.yaml")) as f:
        kver = yaml.safe_load(f)["lxm"]["kernel_version"]
    # The agent's virtio-serial port, as lxmd gives it (no network device: none is needed).
    port = ["-device", "virtio-serial",
            "-chardev", "socket,id=ag,path=%s,server=on,wait=off" % (tmp_path / "agent.sock"),
            "-device", "virtserialport,chardev=ag,name=org.lxm.agent.0"]
    vm = Serial(qemu_args(bbvm, disk, "console=ttyS0 root=/dev/vda rw") + port)
    try:
        t0 = time.monotonic()
        m = vm.wait_for(rb"lxm-vm: ready (\S+)\r?\n", 120)
        took = time.monotonic() - t0
        assert m, "no boot marker within 120 s; console:\n" + vm.out[-4000:].decode(errors="replace")
        print("busybox VM: marker after %.1f s under TCG (agent: %s)" %
              (took, "STAND-IN" if STANDIN_AGENT else "lxm-agent"))
        guest = m.group(1).decode()
        assert guest == kver
        assert guest != os.uname().release
        assert b"lxm-initrd: error" not in vm.out
        # The console shell; the agent's respawn line must not be looping.
        assert vm.wait_for(rb"root@busybox:.*# ", 60), vm.out[-2000:].decode(errors="replace")
        vm.send("echo agent-pid=$(pidof lxm-agent)\n")
        am = vm.wait_for(rb"agent-pid=(\d+)", 30)
        assert am, vm.out[-2000:].decode(errors="replace")
        # rcS.vm made the link udev would make, to the port's device.
        vm.send("echo port=$(readlink /dev/virtio-ports/org.lxm.agent.0)\n")
        pm = vm.wait_for(rb"port=(\S+)\r?\n", 30)
        assert pm and pm.group(1).startswith(b"../vport"), vm.out[-2000:]
        vm.send("poweroff\n")
        rc = vm.wait_exit(90)
        assert rc == 0, "QEMU did not exit after poweroff; console:\n" + \
            vm.out[-3000:].decode(errors="replace")
        assert b"reboot: Power down" in vm.out
    finally:
        vm.kill()


# ---------------------------------------------------------------- through lxmd: the image store


def test_vm_image_in_the_store(lxmd_factory, agent, monkeypatch, tmp_path):
    """lxmd builds the VM variant (template alias busybox/vm; lxm image build busybox --release
    vm), stores it with type virtual-machine, lists it so, exports it in a form a re-import
    takes as the same type, and refuses to make a container of it."""
    from lxmtest import assert_sync
    monkeypatch.setenv("LXM_TEMPLATE_CACHE", KERNEL_CACHE)
    monkeypatch.setenv("LXM_AGENT", agent)
    d = lxmd_factory()
    d.start()
    d.cli("image", "build", "busybox", "--release", "vm", timeout=300)
    img = assert_sync(d.api("GET", "/1.0/images/aliases/busybox/vm"))
    fp = img["target"]
    info = assert_sync(d.api("GET", "/1.0/images/" + fp))
    assert info["type"] == "virtual-machine", info
    assert info["properties"]["os"] == "busybox"
    listed = d.cli("image", "list", "--format", "csv").stdout
    row = [l for l in listed.splitlines() if fp[:12] in l]
    assert row and "VIRTUAL-MACHINE" in row[0], listed
    table = d.cli("image", "list").stdout
    header = [c.strip() for c in table.splitlines()[1].split("|")]
    line = [l for l in table.splitlines() if fp[:12] in l][0]
    cells = [c.strip() for c in line.split("|")]
    assert cells[header.index("TYPE")] == "VIRTUAL-MACHINE", table
    print(table)

    # A container from it is refused, naming the reason.
    p = d.cli("init", "busybox/vm", "c1", check=False)
    assert p.returncode != 0
    assert "virtual-machine image" in p.stderr, p.stderr

    # Export, delete, re-import: the same fingerprint and type.
    out = tmp_path / "export"
    out.mkdir()
    d.cli("image", "export", "busybox/vm", str(out), timeout=120)
    files = sorted(os.listdir(out))
    assert len(files) == 1, files
    tarball = str(out / files[0])
    names = subprocess.run(["tar", "-tf", tarball], capture_output=True, text=True).stdout.split()
    assert "rootfs.img" in names and "boot/vmlinuz" in names and "boot/initrd.img" in names, names
    assert not [n for n in names if n.startswith("rootfs/")], names
    d.cli("image", "delete", fp)
    d.cli("image", "import", tarball, "--alias", "bb-vm-again", timeout=120)
    again = assert_sync(d.api("GET", "/1.0/images/aliases/bb-vm-again"))["target"]
    assert again == fp
    assert assert_sync(d.api("GET", "/1.0/images/" + again))["type"] == "virtual-machine"


# ---------------------------------------------------------------- debian (slow, cached)


def debian_script_hash(agent):
    h = hashlib.sha256()
    for path in (DEBIAN_BUILD, agent):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def debvm(agent):
    """The Debian VM image, cached in CACHE_ROOT until the script or the agent changes."""
    from test_template_debian import mirror_reachable
    out = os.path.join(CACHE_ROOT, "debian-vm-%s" % debian_script_hash(agent))
    if not os.path.exists(os.path.join(out, "metadata.yaml")):
        ok, why = mirror_reachable()
        if not ok:
            pytest.skip("the Debian mirror is unreachable: " + why)
        for old in glob.glob(os.path.join(CACHE_ROOT, "debian-vm-*")):
            shutil.rmtree(old, ignore_errors=True)
        t0 = time.monotonic()
        r = build(DEBIAN_BUILD, out, "--vm", "--agent", agent, timeout=1800)
        if r.returncode != 0:
            shutil.rmtree(out, ignore_errors=True)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        print("debian VM image built in %.0f s" % (time.monotonic() - t0))
    return out


def test_debian_vm_files(debvm, agent):
    assert sorted(os.listdir(debvm)) == ["boot", "metadata.yaml", "rootfs.img"]
    with open(os.path.join(debvm, "metadata.yaml")) as f:
        meta = yaml.safe_load(f)
    assert meta["properties"]["os"] == "Debian" and meta["properties"]["init"] == "systemd"
    assert meta["lxm"]["type"] == "virtual-machine"
    kver = meta["lxm"]["kernel_version"]
    assert kver.endswith("-cloud-amd64")
    disk = os.path.join(debvm, "rootfs.img")
    with open(agent, "rb") as f:
        assert debugfs_cat(disk, "/usr/bin/lxm-agent") == f.read()
    unit = debugfs_cat(disk, "/etc/systemd/system/lxm-agent.service").decode()
    assert "ExecStart=/usr/bin/lxm-agent" in unit
    assert "lxm-agent.service" in debugfs_stat(
        disk, "/etc/systemd/system/multi-user.target.wants/lxm-agent.service") or \
        debugfs_cat(disk, "/etc/systemd/system/multi-user.target.wants/lxm-agent.service")
    net = debugfs_cat(disk, "/etc/systemd/network/80-vm.network").decode()
    assert "DHCP=yes" in net and "en*" in net
    # The distribution's own initramfs (initramfs-tools), with the virtio block driver.
    with open(os.path.join(debvm, "boot", "initrd.img"), "rb") as f:
        assert f.read() == debugfs_cat(disk, "/boot/initrd.img-" + kver)


def test_debian_vm_boots_systemd(debvm, tmp_path):
    """Boots to systemd's multi-user target with the agent started; an ACPI power-down (QEMU's
    system_powerdown) stops it gracefully and QEMU exits."""
    import socket
    disk = str(tmp_path / "disk.img")
    subprocess.run(["cp", "--sparse=always", os.path.join(debvm, "rootfs.img"), disk], check=True)
    mon = str(tmp_path / "mon.sock")
    agent_sock = str(tmp_path / "agent.sock")
    args = qemu_args(debvm, disk, "console=ttyS0 root=/dev/vda rw", mem=512) + [
        "-monitor", "unix:%s,server=on,wait=off" % mon,
        "-device", "virtio-serial",
        "-chardev", "socket,id=ag,path=%s,server=on,wait=off" % agent_sock,
        "-device", "virtserialport,chardev=ag,name=org.lxm.agent.0"]
    vm = Serial(args)
    try:
        t0 = time.monotonic()
        m = vm.wait_for(rb"Reached target .*Multi-User System", 300)
        assert m, "systemd did not reach multi-user; console:\n" + vm.out[-4000:].decode(errors="replace")
        print("debian VM: multi-user after %.1f s under TCG" % (time.monotonic() - t0))
        assert re.search(rb"Started .*lxm-agent\.service", vm.out), vm.out[-4000:]
        assert b"FAILED" not in vm.out, vm.out.decode(errors="replace")
        s = socket.socket(socket.AF_UNIX)
        s.connect(mon)
        s.sendall(b"system_powerdown\n")
        rc = vm.wait_exit(120)
        s.close()
        assert rc == 0, "QEMU did not exit after the power-down; console:\n" + \
            vm.out[-3000:].decode(errors="replace")
        assert b"reboot: Power down" in vm.out
    finally:
        vm.kill()


def test_debian_vm_through_lxm(debvm, lxmd_factory, tmp_path):
    """The Debian VM image run by lxm as a user would: imported as debian/vm, `lxm init debian
    v1 --vm` with a nic on a managed network, started under QEMU; systemd comes up `running`
    (asked through the guest agent), the guest has its DHCP lease, and a graceful stop powers it
    off."""
    import json
    import nettest
    from lxmtest import unique, wait_for

    tarball = str(tmp_path / "debian-vm.tar")
    # GNU tar keeps the disk's holes (-S); lxmd's import keeps them too.
    subprocess.run(["tar", "-S", "-C", debvm, "-cf", tarball, "metadata.yaml", "boot",
                    "rootfs.img"], check=True)
    d = lxmd_factory()
    d.start()
    d.cli("image", "import", tarball, "--alias", "debian/vm", timeout=600)
    os.unlink(tarball)
    net, _, _ = nettest.create_network(d, "lxmd", "ipv6.address=none")
    v1 = unique("v")
    try:
        d.cli("init", "debian", v1, "--vm", "-c", "limits.memory=768MiB", timeout=600)
        d.cli("config", "device", "add", v1, "eth0", "nic", "network=%s" % net)
        t0 = time.monotonic()
        d.cli("start", v1, timeout=120)
        p = d.cli("exec", v1, "--", "systemctl", "is-system-running", "--wait", check=False,
                  timeout=600)
        state = p.stdout.strip()
        if state != "running":
            failed = d.cli("exec", v1, "--", "systemctl", "--failed", "--no-legend",
                           check=False).stdout
            pytest.fail("systemd in the VM is %r, not running; failed units:\n%s"
                        % (state, failed))
        print("debian VM through lxm: systemd running after %.1f s (TCG)"
              % (time.monotonic() - t0))
        assert d.cli("exec", v1, "--", "uname", "-r").stdout.strip().endswith("-cloud-amd64")
        out = d.cli("network", "list-leases", net, "--format", "json").stdout
        assert any(le.get("hostname") for le in json.loads(out)), out
        d.cli("stop", v1, timeout=180)
        log = d.cli("console", v1, "--show-log").stdout
        assert "reboot: Power down" in log, log[-3000:]
        wait_for(lambda: json.loads(d.cli("list", "--format", "json").stdout)[0]["status"]
                 == "Stopped", timeout=30, what="the VM to be Stopped")
    finally:
        d.cli("delete", "-f", v1, check=False, timeout=180)
        nettest.delete_network(d, net)
