"""The busybox image template (templates/busybox/build), without lxmd.

The image is built into a temporary directory, inspected, and then booted for real: its rcS, its
DHCP hook and its init run under `unshare` (private mount, pid, uts, ipc and net namespaces) in a
chroot, so nothing they mount, configure or start outlives the test.
"""

import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import tempfile

import pytest
import yaml

from lxmtest import REPO

BUILD = os.path.join(REPO, "templates", "busybox", "build")
HOST_BUSYBOX = "/bin/busybox"
# Private namespaces for everything the image runs; the pid namespace matters most: busybox init's
# reboot() then only ends that namespace.
UNSHARE = ["unshare", "--mount", "--pid", "--fork", "--uts", "--ipc", "--net", "--kill-child"]

pytestmark = pytest.mark.skipif(
    not os.access(HOST_BUSYBOX, os.X_OK), reason="busybox-static is not installed")


def host_version():
    out = subprocess.run([HOST_BUSYBOX, "--help"], capture_output=True, text=True).stdout
    m = re.match(r"BusyBox v([0-9][0-9.]*[0-9])", out)
    assert m, out[:200]
    return m.group(1)


def build(outdir, *args, env=None, prefix=()):
    return subprocess.run(list(prefix) + [BUILD, outdir] + list(args), capture_output=True,
                          text=True, timeout=120, env=env)


def mounts_under(path):
    """Mount points at or below path in the test's own mount namespace."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                found.append(mp)
    return found


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="lxm-it-busybox-")
    yield d
    leaked = mounts_under(d)
    # Unmount before removing: rmtree would otherwise descend into whatever leaked.
    for mp in sorted(leaked, reverse=True):
        subprocess.run(["umount", "-l", mp])
    shutil.rmtree(d)
    assert not leaked, "mounts left behind: %r" % leaked


@pytest.fixture
def image(workdir):
    out = os.path.join(workdir, "image")
    r = build(out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def run_in_rootfs(rootfs, script, host_setup="", env=None, timeout=60):
    """Runs `script` with the image's busybox sh inside a chroot of rootfs, in new namespaces.
    host_setup runs first with the host's shell and tools, in the same namespaces ($1 = rootfs);
    exit status 9 from it means "the host cannot do this" and skips the test."""
    wrapper = (host_setup or ":") + '\nexec chroot "$1" /bin/busybox sh -c "$2"'
    r = subprocess.run(UNSHARE + ["sh", "-c", wrapper, "sh", rootfs, script],
                       capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode == 9:
        pytest.skip("host cannot set this up: " + r.stderr.strip())
    return r


def mount_points(proc_mounts):
    return [line.split()[1] for line in proc_mounts.splitlines() if len(line.split()) >= 6]


def elf_has_interp(path):
    """True when the ELF file has a PT_INTERP program header (needs a dynamic loader)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF", "%s is not ELF" % path
    cls, order = data[4], {1: "<", 2: ">"}[data[5]]
    if cls == 2:
        phoff, = struct.unpack_from(order + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(order + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x2A)
    assert phnum > 0, "%s has no program headers" % path
    types = [struct.unpack_from(order + "I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return 3 in types  # PT_INTERP


# ---------------------------------------------------------------- the image on disk

def test_metadata(image):
    with open(os.path.join(image, "metadata.yaml")) as f:
        meta = yaml.safe_load(f)
    ver = host_version()
    assert meta["architecture"] == {"amd64": "x86_64"}.get(os.uname().machine, os.uname().machine)
    assert isinstance(meta["creation_date"], int)
    now = int(subprocess.run(["date", "+%s"], capture_output=True, text=True).stdout)
    assert now - 300 <= meta["creation_date"] <= now, meta
    assert meta["properties"] == {
        "os": "busybox",
        "release": ver,
        "description": "BusyBox %s (lxm template)" % ver,
        "variant": "default",
        "init": "busybox",
    }
    # LXD image templates name the instance in /etc/hostname and /etc/hosts when lxm creates one.
    assert meta["templates"] == {
        "/etc/hostname": {"when": ["create", "copy"], "template": "hostname.tpl"},
        "/etc/hosts": {"when": ["create", "copy"], "template": "hosts.tpl"},
    }
    assert sorted(os.listdir(image)) == ["metadata.yaml", "rootfs", "templates"]
    with open(os.path.join(image, "templates", "hostname.tpl")) as f:
        assert f.read() == "{{ instance.name }}\n"
    with open(os.path.join(image, "templates", "hosts.tpl")) as f:
        hosts = f.read()
    assert "127.0.0.1\tlocalhost\n" in hosts and "127.0.1.1\t{{ instance.name }}\n" in hosts


def test_applet_links_stay_inside_rootfs(image):
    rootfs = os.path.join(image, "rootfs")
    real_root = os.path.realpath(rootfs)
    busybox = os.path.join(real_root, "bin", "busybox")
    assert os.path.islink(os.path.join(rootfs, "sbin", "init"))
    assert os.path.realpath(os.path.join(rootfs, "sbin", "init")) == busybox

    applets = subprocess.run([HOST_BUSYBOX, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert len(applets) > 100
    for a in applets:
        if a == "bin/busybox":
            continue
        p = os.path.join(rootfs, a)
        assert os.path.islink(p), "applet %s has no link" % a
        assert os.path.realpath(p) == busybox, a

    links = 0
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                continue
            links += 1
            target = os.readlink(p)
            assert not target.startswith("/"), "%s -> %s is absolute" % (p, target)
            resolved = os.path.realpath(p)
            assert resolved == real_root or resolved.startswith(real_root + "/"), \
                "%s -> %s escapes the rootfs" % (p, target)
            assert os.path.exists(resolved), "%s -> %s dangles" % (p, target)
    assert links >= len(applets) - 1
    assert os.readlink(os.path.join(rootfs, "var", "run")) == "../run"


def test_etc_and_layout(image):
    rootfs = os.path.join(image, "rootfs")

    def read(rel):
        with open(os.path.join(rootfs, rel)) as f:
            return f.read()

    def mode(rel):
        return stat.S_IMODE(os.lstat(os.path.join(rootfs, rel)).st_mode)

    inittab = [line for line in read("etc/inittab").splitlines() if line and line[0] != "#"]
    assert "::sysinit:/etc/init.d/rcS" in inittab
    assert "::respawn:-/bin/sh" in inittab
    assert "::restart:/sbin/init" in inittab
    assert any(line.startswith("::ctrlaltdel:") for line in inittab)
    assert any(line.startswith("::shutdown:") for line in inittab)
    rck = read("etc/init.d/rcK")
    assert "umount -a -r" in rck and "swapoff -a" in rck

    assert read("etc/passwd") == "root:x:0:0:root:/root:/bin/sh\n"
    assert read("etc/group").splitlines() == ["root:x:0:", "tty:x:5:"]
    assert read("etc/shadow").startswith("root:*:")
    assert mode("etc/shadow") == 0o600
    assert "127.0.0.1\tlocalhost" in read("etc/hosts")
    assert read("etc/hostname") == "busybox\n"
    osr = dict(line.split("=", 1) for line in read("etc/os-release").splitlines())
    assert osr["NAME"] == "BusyBox" and osr["ID"] == "busybox"
    assert osr["VERSION_ID"] == host_version()
    profile = read("etc/profile")
    assert "PS1=" in profile and "PATH=" in profile

    assert mode("root") == 0o700
    assert mode("tmp") == 0o1777
    for d in ("proc", "sys", "dev", "run"):
        assert os.path.isdir(os.path.join(rootfs, d)) and not os.listdir(os.path.join(rootfs, d))
    for d in ("usr/bin", "usr/sbin", "var/log", "etc/init.d", "etc/udhcpc"):
        assert os.path.isdir(os.path.join(rootfs, d)), d
    for f in ("etc/init.d/rcS", "etc/init.d/rcK", "etc/udhcpc/default.script", "bin/busybox"):
        assert mode(f) == 0o755, f

    # lxm never chowns a rootfs: it has to belong to uid 0 on disk.
    for dirpath, dirnames, filenames in os.walk(image):
        for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + filenames]:
            st = os.lstat(n)
            assert (st.st_uid, st.st_gid) == (0, 0), n


def test_scripts_parse(image):
    rootfs = os.path.join(image, "rootfs")
    for rel in ("etc/init.d/rcS", "etc/init.d/rcK", "etc/udhcpc/default.script", "etc/profile"):
        r = subprocess.run([os.path.join(rootfs, "bin", "busybox"), "sh", "-n",
                            os.path.join(rootfs, rel)], capture_output=True, text=True)
        assert r.returncode == 0, "%s: %s" % (rel, r.stderr)


def test_busybox_is_static_copy(image):
    copy = os.path.join(image, "rootfs", "bin", "busybox")
    assert not elf_has_interp(copy)
    with open(copy, "rb") as a, open(HOST_BUSYBOX, "rb") as b:
        assert a.read() == b.read()


# ---------------------------------------------------------------- booting it

def test_rcs_boots_a_bare_chroot(image):
    """Nothing mounted beforehand: rcS mounts everything, brings lo up, keeps the hostname."""
    rootfs = os.path.join(image, "rootfs")
    r = run_in_rootfs(rootfs, """
        hostname lxm-it-box
        /etc/init.d/rcS; echo "rcS=$?"
        ip link show lo
        echo "host=$(hostname)"
        test -c /dev/null && echo null-ok
        pidof syslogd >/dev/null && echo syslogd-ok
        echo ---; cat /proc/mounts
    """)
    assert r.returncode == 0, r.stderr
    out, mounts = r.stdout.split("---\n")
    assert "rcS=0" in out, r.stdout + r.stderr
    assert re.search(r"lo: <[^>]*\bUP\b", out), out
    assert "host=lxm-it-box" in out
    assert "null-ok" in out and "syslogd-ok" in out
    mps = mount_points(mounts)
    for mp in ("/proc", "/sys", "/run", "/dev", "/dev/pts", "/dev/shm"):
        assert mps.count(mp) == 1, (mp, mounts)


def test_rcs_keeps_what_the_runtime_mounted(image):
    """As under lxm: /proc, /sys, /dev and /run are there already and must not be mounted again
    (nor /dev refilled)."""
    rootfs = os.path.join(image, "rootfs")
    setup = """
        r=$1
        mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" &&
        mount -t tmpfs tmpfs "$r/run" && mount -t tmpfs tmpfs "$r/dev" &&
        touch "$r/dev/null" && mount --bind /dev/null "$r/dev/null" || exit 1
    """
    r = run_in_rootfs(rootfs, """
        /etc/init.d/rcS; echo "rcS=$?"
        ip link show lo
        ls /dev
        echo ---; cat /proc/mounts
    """, host_setup=setup)
    assert r.returncode == 0, r.stderr
    out, mounts = r.stdout.split("---\n")
    assert "rcS=0" in out, r.stdout + r.stderr
    assert re.search(r"lo: <[^>]*\bUP\b", out), out
    mps = mount_points(mounts)
    for mp in ("/proc", "/sys", "/run", "/dev", "/dev/pts", "/dev/shm"):
        assert mps.count(mp) == 1, (mp, mounts)
    assert "console" not in out.split(), "rcS ran mdev on the runtime's /dev: " + out


def test_rcs_gets_a_dhcp_lease_on_eth0(image):
    """eth0 is one end of a veth; busybox udhcpd serves the other end, so this runs offline."""
    rootfs = os.path.join(image, "rootfs")
    with open(os.path.join(rootfs, "tmp", "udhcpd.conf"), "w") as f:
        f.write("start 10.9.8.100\nend 10.9.8.110\ninterface peer0\n"
                "option subnet 255.255.255.0\noption router 10.9.8.1\n"
                "option dns 10.9.8.53\noption domain lxm.test\n"
                "lease_file /tmp/udhcpd.leases\npidfile /tmp/udhcpd.pid\n")
    setup = "ip link add eth0 type veth peer name peer0 || exit 9"
    r = run_in_rootfs(rootfs, """
        /etc/init.d/rcS; echo "rcS=$?"
        ip addr add 10.9.8.1/24 dev peer0 && ip link set peer0 up
        touch /tmp/udhcpd.leases && udhcpd /tmp/udhcpd.conf
        i=0
        while [ $i -lt 60 ] && ! [ -s /etc/resolv.conf ]; do sleep 0.25; i=$((i + 1)); done
        ip -4 addr show eth0; ip route; cat /etc/resolv.conf
        pidof udhcpc >/dev/null && echo udhcpc-running
    """, host_setup=setup)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "rcS=0" in out, out + r.stderr
    assert re.search(r"eth0.*<[^>]*\bUP\b", out), out
    assert re.search(r"inet 10\.9\.8\.1[01][0-9]/24 ", out), out
    assert "default via 10.9.8.1 dev eth0" in out, out
    assert "nameserver 10.9.8.53" in out and "search lxm.test" in out, out
    # Without -q udhcpc stays to renew the lease.
    assert "udhcpc-running" in out, out


def test_udhcpc_script_events(image):
    rootfs = os.path.join(image, "rootfs")
    setup = "ip link add eth0 type veth peer name peer0 && ip link set peer0 up || exit 9"
    r = run_in_rootfs(rootfs, """
        mount -t proc proc /proc
        s=/etc/udhcpc/default.script
        export interface=eth0 ip=10.9.8.7 mask=24 subnet=255.255.255.0 broadcast=10.9.8.255 \
            router="10.9.8.1 10.9.8.2" dns="192.0.2.53 192.0.2.54" domain=example.org
        $s deconfig && $s bound && $s renew && echo events-ok
        ip -4 addr show eth0; ip route; cat /etc/resolv.conf
        echo ---
        unset mask broadcast
        export ip=10.9.8.8 subnet=255.255.255.128 mtu=1400 \
            staticroutes="10.20.0.0/16 10.9.8.3 0.0.0.0/0 10.9.8.1"
        $s renew
        ip -4 addr show eth0; ip route
        echo ---
        $s deconfig
        ip -4 addr show eth0; ip link show eth0
    """, host_setup=setup)
    assert r.returncode == 0, r.stderr
    first, second, third = r.stdout.split("---\n")
    assert "events-ok" in first, r.stdout + r.stderr
    assert first.count("inet 10.9.8.7/24 brd 10.9.8.255") == 1, first
    assert "default via 10.9.8.1 dev eth0" in first
    assert re.search(r"default via 10\.9\.8\.2 dev eth0 +metric 1", first), first
    assert "search example.org\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n" in first

    # The mask comes from $subnet when $mask is missing; option 121 replaces the router option.
    assert "inet 10.9.8.8/25" in second and "10.9.8.7" not in second, second
    assert "10.20.0.0/16 via 10.9.8.3 dev eth0" in second
    assert "default via 10.9.8.1 dev eth0" in second and "10.9.8.2" not in second, second

    assert "inet " not in third and "mtu 1400" in third and re.search(r"<[^>]*\bUP\b", third)


def test_init_boots_and_halts_on_sigusr2(image, workdir):
    """busybox init as PID 1: sysinit, a shell on the console, then SIGUSR2 (what lxm sends
    for an image with init: busybox) powers off, i.e. ends the pid namespace with SIGINT."""
    rootfs = os.path.join(image, "rootfs")
    log = os.path.join(workdir, "console.log")
    # container=lxc, as lxm sets it: rcK must then leave the mounts and swap alone.
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "container": "lxc", "TERM": "dumb"}
    with open(log, "w+") as out:
        p = subprocess.Popen(UNSHARE + ["chroot", rootfs, "/sbin/init"], stdin=subprocess.PIPE,
                             stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            # The console's stdin is this pipe; the respawned login shell reads it once rcS is done.
            p.stdin.write(b"echo console-shell pwd=$(pwd) hostname=$(hostname)\n"
                          b"ip link show lo\n"
                          b"pidof syslogd >/dev/null && echo syslogd-running\n"
                          b"kill -USR2 1\n")
            p.stdin.flush()
            rc = p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdin.close()
        out.seek(0)
        text = out.read()
    assert "console-shell pwd=/root" in text, text
    assert re.search(r"lo: <[^>]*\bUP\b", text), text
    assert "syslogd-running" in text, text
    assert "poweroff" in text.lower(), text
    assert rc == -signal.SIGINT, "init ended with %r, not a poweroff:\n%s" % (rc, text)


# ---------------------------------------------------------------- the build script

def test_progress_and_offline(workdir):
    """The build never needs the network: it succeeds in an empty network namespace."""
    out = os.path.join(workdir, "image")
    r = build(out, prefix=["unshare", "--net"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "busybox template: copying busybox %s" % host_version() in r.stdout
    assert re.search(r"image size \d+ KiB", r.stdout.splitlines()[-1]), r.stdout
    assert os.path.isfile(os.path.join(out, "rootfs", "bin", "busybox"))


def test_rebuild_needs_force(workdir):
    out = os.path.join(workdir, "image")
    env = dict(os.environ, SOURCE_DATE_EPOCH="1000000000")
    r = build(out, env=env)
    assert r.returncode == 0, r.stderr
    os.unlink(os.path.join(out, "rootfs", "etc", "hostname"))

    r = build(out)
    assert r.returncode != 0
    assert "--force" in r.stderr and "not empty" in r.stderr, r.stderr
    with open(os.path.join(out, "metadata.yaml")) as f:
        assert yaml.safe_load(f)["creation_date"] == 1000000000
    assert not os.path.exists(os.path.join(out, "rootfs", "etc", "hostname"))

    r = build(out, "--force")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "metadata.yaml")) as f:
        assert yaml.safe_load(f)["creation_date"] != 1000000000
    assert os.path.isfile(os.path.join(out, "rootfs", "etc", "hostname"))
    # No staging directory is left behind.
    assert sorted(os.listdir(out)) == ["metadata.yaml", "rootfs", "templates"]

    other = os.path.join(workdir, "other")
    os.mkdir(other)
    open(os.path.join(other, "stray"), "w").close()
    r = build(other)
    assert r.returncode != 0 and "not empty" in r.stderr
    assert os.listdir(other) == ["stray"]


def test_needs_static_busybox(workdir):
    out = os.path.join(workdir, "image")
    r = build(out, env=dict(os.environ, LXM_BUSYBOX=os.path.join(workdir, "no-such-busybox")))
    assert r.returncode != 0
    assert "busybox-static" in r.stderr and "not found" in r.stderr, r.stderr
    assert not os.path.exists(out)

    dynamic = shutil.which("ls")
    assert elf_has_interp(os.path.realpath(dynamic))
    r = build(out, env=dict(os.environ, LXM_BUSYBOX=dynamic))
    assert r.returncode != 0
    assert "not statically linked" in r.stderr and "busybox-static" in r.stderr, r.stderr
    assert not os.path.exists(out)


def test_name_option(workdir):
    out = os.path.join(workdir, "image")
    r = build(out, "--name", "web-1")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "rootfs", "etc", "hostname")) as f:
        assert f.read() == "web-1\n"

    bad = os.path.join(workdir, "bad")
    for name in ("web_1", "-web", "a" * 64, ""):
        r = build(bad, "--name", name)
        assert r.returncode != 0 and "--name" in r.stderr, (name, r.stderr)
        assert not os.path.exists(bad)
