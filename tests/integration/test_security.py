"""Security defaults of a busybox container, checked from inside it and from the host:
capabilities, the seccomp deny list, namespaces that hide the host, read-only kernel
interfaces, the id map and on-disk ownership, inherited fds, privileged containers.

Syscalls are called by a small static helper compiled on the host (gcc -static) and copied into
the container's rootfs; nothing else from the host is put in a container.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

from lxmtest import assert_sync, cgroup_dirs, descendants, pid_alive, static_program, unique

# Capability numbers (linux/capability.h).
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_MODULE = 16
CAP_SYS_RAWIO = 17
CAP_SYS_ADMIN = 21
CAP_SYS_TIME = 25
CAP_MAC_OVERRIDE = 32
CAP_MAC_ADMIN = 33
DEFAULT_DROPPED = {CAP_SYS_MODULE: "sys_module", CAP_SYS_RAWIO: "sys_rawio",
                   CAP_SYS_TIME: "sys_time", CAP_MAC_OVERRIDE: "mac_override",
                   CAP_MAC_ADMIN: "mac_admin"}

PROBE = "/lxm-it-probe"

# Each call is made with arguments the kernel rejects before doing anything (bogus flags, fd -1,
# a NULL image, a module or mount point that does not exist), so that without the filter it fails
# harmlessly with some other errno (ENOSYS where the kernel lacks kexec/modules) and only
# seccomp answers EPERM. umount2 without MNT_FORCE and getpgid are the unfiltered controls.
PROBE_SRC = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long r)
{
	if (r < 0)
		printf("%s %s\n", name, strerrorname_np(errno));
	else
		printf("%s OK\n", name);
}

int main(int argc, char **argv)
{
	struct {
		unsigned int handle_bytes;
		int handle_type;
		unsigned char f_handle[8];
	} fh = { 8, 1, { 0 } };

	if (argc != 2 || strcmp(argv[1], "syscalls") != 0) {
		fprintf(stderr, "usage: %s syscalls\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	errno = 0;
	report("kexec_load", syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0x100UL));
	errno = 0;
	report("kexec_file_load", syscall(SYS_kexec_file_load, -1, -1, 0UL, NULL, 0x80000000UL));
	errno = 0;
	report("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, &fh, O_RDONLY));
	errno = 0;
	report("init_module", syscall(SYS_init_module, NULL, 0UL, ""));
	errno = 0;
	report("finit_module", syscall(SYS_finit_module, -1, "", 0));
	errno = 0;
	report("delete_module", syscall(SYS_delete_module, "lxm_it_no_such_module", O_NONBLOCK));
	errno = 0;
	report("umount2_force", syscall(SYS_umount2, "/lxm-it-no-such-mount", MNT_FORCE));
	errno = 0;
	report("umount2", syscall(SYS_umount2, "/lxm-it-no-such-mount", 0));
	errno = 0;
	report("getpgid", syscall(SYS_getpgid, 0));
	return 0;
}
"""

DENIED = ["kexec_load", "kexec_file_load", "open_by_handle_at", "init_module", "finit_module",
          "delete_module", "umount2_force"]


def state(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % name))


def rootfs(lxmd, name):
    return os.path.join(lxmd.root, "containers", name, "rootfs")


def sh(lxmd, name, script, check=True, timeout=60):
    return lxmd.cli("exec", name, "--", "sh", "-c", script, check=check, timeout=timeout)


def status_field(text, field):
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no %s: line in\n%s" % (field, text))


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def host_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return f.read()


def caps(hexmask):
    v = int(hexmask, 16)
    return {b for b in range(64) if v >> b & 1}


@pytest.fixture(scope="module")
def probe():
    """The static syscall helper, compiled once into a temp dir that is removed afterwards."""
    with static_program("probe", PROBE_SRC) as path:
        yield path


def install_probe(lxmd, name, probe):
    dst = rootfs(lxmd, name) + PROBE
    shutil.copy(probe, dst)
    os.chmod(dst, 0o755)


def run_probe(lxmd, name):
    p = lxmd.cli("exec", name, "--", PROBE, "syscalls")
    return parse_probe(p.stdout)


def parse_probe(out):
    res = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert set(res) == set(DENIED) | {"umount2", "getpgid"}, out
    return res


# ---------------------------------------------------------------- capabilities

def test_default_bounding_set_drops_dangerous_capabilities(lxmd, launched):
    name = launched()
    status = sh(lxmd, name, "cat /proc/self/status").stdout
    bnd = caps(status_field(status, "CapBnd"))
    eff = caps(status_field(status, "CapEff"))
    for cap, cname in DEFAULT_DROPPED.items():
        assert cap not in bnd, "CapBnd of an exec'd process still holds %s (%d)" % (cname, cap)
        assert cap not in eff, "CapEff of an exec'd process still holds %s (%d)" % (cname, cap)
    # What a system container needs is still there (a mask of zero would pass the above).
    for cap in (0, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN):
        assert cap in bnd and cap in eff, "capability %d missing: %s" % (cap, sorted(bnd))
    # init too, seen from the host.
    init_bnd = caps(status_field(host_status(state(lxmd, name)["pid"]), "CapBnd"))
    assert init_bnd == bnd, "init's bounding set %x differs from exec's %x" % (
        sum(1 << b for b in init_bnd), sum(1 << b for b in bnd))


def test_capabilities_drop_and_add(lxmd, launched):
    name = launched(config={"security.capabilities.drop": "net_raw",
                            "security.capabilities.add": "sys_time"})
    bnd = caps(status_field(sh(lxmd, name, "cat /proc/self/status").stdout, "CapBnd"))
    assert CAP_NET_RAW not in bnd, "security.capabilities.drop=net_raw left cap 13 in CapBnd"
    assert CAP_SYS_TIME in bnd, "security.capabilities.add=sys_time did not restore cap 25"
    # The rest of the defaults are untouched.
    for cap in (CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_MAC_OVERRIDE, CAP_MAC_ADMIN):
        assert cap not in bnd, "cap %d came back" % cap
    assert CAP_NET_ADMIN in bnd and CAP_SYS_ADMIN in bnd


# ---------------------------------------------------------------- seccomp

def test_default_syscall_deny_list(lxmd, launched, probe):
    # The same helper on the host: none of these calls is EPERM there, so EPERM inside is the
    # filter's doing.
    host = parse_probe(subprocess.run([probe, "syscalls"], capture_output=True, text=True,
                                      check=True).stdout)
    for sc in DENIED:
        assert host[sc] != "EPERM", "the helper's %s is EPERM even on the host: %r" % (sc, host)

    name = launched()
    install_probe(lxmd, name, probe)
    res = run_probe(lxmd, name)
    wrong = {sc: res[sc] for sc in DENIED if res[sc] != "EPERM"}
    assert not wrong, "denied syscalls that did not fail with EPERM: %r (all: %r)" % (wrong, res)
    # Only forced unmounts are filtered; a plain umount2 reaches the kernel (ENOENT), getpgid works.
    assert res["umount2"] == "ENOENT", res
    assert res["getpgid"] == "OK", res
    # The filter is on the exec'd process and on init.
    assert status_field(sh(lxmd, name, "cat /proc/self/status").stdout, "Seccomp") == "2"
    assert status_field(host_status(state(lxmd, name)["pid"]), "Seccomp") == "2"

    # Control: with the default list switched off the same calls reach the kernel, which
    # answers something else for these arguments (ENOSYS, EBADF...): EPERM above is the filter's.
    free = launched(config={"security.syscalls.deny_default": "false"})
    install_probe(lxmd, free, probe)
    res = run_probe(lxmd, free)
    still = [sc for sc in DENIED if sc != "umount2_force" and res[sc] == "EPERM"]
    assert not still, "EPERM even without the deny list, so the check above proves nothing " \
        "for %r: %r" % (still, res)


def test_deny_default_false_lifts_forced_umount_filter(lxmd, launched, probe):
    """security.syscalls.deny_default=false switches off the whole default list, forced umount
    included (LXD: reject_force_umount is part of the default policy; lxm's policy compiler sets
    deny_forced_umount = false for it)."""
    name = launched(config={"security.syscalls.deny_default": "false"})
    install_probe(lxmd, name, probe)
    res = run_probe(lxmd, name)
    assert res["umount2"] == "ENOENT", res
    assert res["umount2_force"] == "ENOENT", \
        "security.syscalls.deny_default=false still filters umount2(MNT_FORCE): %r" % res


def test_syscalls_deny_getpgid(lxmd, launched, probe):
    name = launched(config={"security.syscalls.deny": "getpgid"})
    install_probe(lxmd, name, probe)
    res = run_probe(lxmd, name)
    assert res["getpgid"] == "EPERM", "security.syscalls.deny=getpgid: getpgid gave %r" % res
    # The user's list adds to the defaults.
    wrong = {sc: res[sc] for sc in DENIED if res[sc] != "EPERM"}
    assert not wrong, "default deny list lost with security.syscalls.deny set: %r" % wrong
    assert res["umount2"] == "ENOENT", res


# ---------------------------------------------------------------- isolation from the host

def test_no_host_processes_visible(lxmd, launched):
    name = launched()
    # ls may find a short-lived process of the boot script gone between reading /proc and
    # looking at the entry (and then exit 1): what it lists is what counts.
    out = sh(lxmd, name, "ps -o pid,comm; echo; ls /proc 2>/dev/null; true").stdout
    ps_part, ls_part = out.split("\n\n", 1)
    rows = [l.split(None, 1) for l in ps_part.strip().splitlines()[1:]]
    comms = {r[1].strip() for r in rows}
    # Its own few (init, syslogd, the console shell, this exec, maybe boot scripts still
    # running); the host has hundreds.
    assert len(rows) <= 10, "the container sees %d processes:\n%s" % (len(rows), ps_part)
    assert not comms & {"lxmd", "lxm-monitor", "python3", "pytest", "systemd", "kthreadd"}, comms
    assert "1" in {r[0] for r in rows} and "init" in comms, ps_part
    pids = [e for e in ls_part.split() if e.isdigit()]
    assert len(pids) <= 10, "pids in the container's /proc: %r" % pids
    # lxmd's own pid means nothing there (or belongs to a container process, never lxmd).
    if str(lxmd.pid) in pids:
        comm = sh(lxmd, name, "cat /proc/%d/comm" % lxmd.pid).stdout.strip()
        assert comm != "lxmd", "lxmd visible inside the container"


def test_no_host_mounts_visible(lxmd, launched):
    # A mount that exists only on the host, made before the container starts.
    hostonly = os.path.join(lxmd.base, "host-only-mnt")
    os.mkdir(hostonly)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "lxm-it-hostonly", hostonly],
                   check=True)
    try:
        name = launched()
        inside = sh(lxmd, name, "cat /proc/self/mountinfo").stdout
    finally:
        r = subprocess.run(["umount", hostonly], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", hostonly])
    points = [l.split()[4] for l in inside.strip().splitlines()]
    assert "lxm-it-hostonly" not in inside, inside
    assert hostonly not in points
    assert not any(p == "/work" or p.startswith(("/work/", lxmd.base)) for p in points), points
    with open("/proc/self/mountinfo") as f:
        host_points = {l.split()[4] for l in f}
    # The only mount points a container shares with the host by name are the ones every Linux
    # system has, mounted afresh inside; e.g. the host's v1 cgroup hierarchies are not there.
    generic = {"/", "/proc", "/sys", "/dev", "/dev/shm", "/dev/pts", "/run", "/sys/fs/cgroup"}
    shared = set(points) & host_points - generic
    assert not shared, "host mount points visible inside: %r" % sorted(shared)
    assert len(points) < 40, "suspiciously many mounts inside:\n%s" % inside


def test_only_loopback_interface(lxmd, launched):
    name = launched()
    out = sh(lxmd, name, "ip -o link").stdout
    ifaces = [l.split(":")[1].strip().split("@")[0] for l in out.strip().splitlines()]
    assert ifaces == ["lo"], out
    assert sh(lxmd, name, "ls /sys/class/net").stdout.split() == ["lo"]


# ---------------------------------------------------------------- kernel interfaces

def test_kernel_interfaces_read_only(lxmd, launched):
    name = launched()
    # /sys is mounted read-only: creating a file fails with EROFS, not a permission error.
    r = sh(lxmd, name, "touch /sys/lxm-it-x", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r
    mounts = sh(lxmd, name, "cat /proc/mounts").stdout
    sys_opts = [l.split()[3] for l in mounts.splitlines() if l.split()[1] == "/sys"]
    assert sys_opts and all("ro" in o.split(",") for o in sys_opts), mounts
    # /proc/sys likewise (opening for writing writes nothing even if it were allowed).
    r = sh(lxmd, name, ": > /proc/sys/kernel/domainname", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r
    # /proc/sysrq-trigger: not writable (only opened, never written to). Kernels without
    # CONFIG_MAGIC_SYSRQ have no such file at all, and then neither may the container.
    r = sh(lxmd, name, ": > /proc/sysrq-trigger", check=False)
    assert r.returncode != 0, "/proc/sysrq-trigger opened for writing inside the container"
    if not os.path.exists("/proc/sysrq-trigger"):
        assert "nonexistent" in r.stderr or "No such file" in r.stderr, r.stderr


def test_mknod_block_device_refused(lxmd, launched):
    name = launched()
    r = sh(lxmd, name, "mknod /tmp/lxm-it-blk b 8 0", check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    r = sh(lxmd, name, "mknod /tmp/lxm-it-chr c 1 1", check=False)
    assert r.returncode != 0, "mknod of /dev/mem's numbers succeeded"
    assert not os.path.exists(os.path.join(rootfs(lxmd, name), "tmp", "lxm-it-blk"))
    # mknod itself works: a fifo is fine.
    sh(lxmd, name, "mknod /tmp/lxm-it-fifo p && test -p /tmp/lxm-it-fifo")


# ---------------------------------------------------------------- ids

def test_root_inside_is_uid_1000000_outside(lxmd, launched):
    name = launched()
    init = state(lxmd, name)["pid"]
    sh(lxmd, name, "sleep 300 >/dev/null 2>&1 &")
    sleeps = []
    deadline = time.monotonic() + 5
    while not sleeps and time.monotonic() < deadline:
        # The exec'd "sleep 300" only: the image's boot script runs short sleeps of its own.
        sleeps = [p for p in descendants(init) if pid_alive(p)
                  and cmdline(p) == b"sleep\x00300\x00"]
        time.sleep(0.05)
    assert sleeps, "the exec'd sleep is not below init %d" % init
    for pid in [init] + sleeps:
        st = host_status(pid)
        assert status_field(st, "Uid").split() == ["1000000"] * 4, (pid, status_field(st, "Uid"))
        assert status_field(st, "Gid").split() == ["1000000"] * 4, (pid, status_field(st, "Gid"))
    for f in ("uid_map", "gid_map"):
        with open("/proc/%d/%s" % (init, f)) as fh:
            assert fh.read().split() == ["0", "1000000", "65536"], f
    # Inside it is root.
    assert sh(lxmd, name, "id -u; id -g").stdout.split() == ["0", "0"]


def test_files_created_inside_are_container_ids_on_disk(lxmd, launched):
    name = launched()
    sh(lxmd, name, "echo hi > /root/lxm-it-f && touch /tmp/lxm-it-g"
       " && chown 1000:1001 /tmp/lxm-it-g && mkdir /tmp/lxm-it-d")
    rf = rootfs(lxmd, name)
    for path, uid, gid in (("root/lxm-it-f", 0, 0), ("tmp/lxm-it-g", 1000, 1001),
                           ("tmp/lxm-it-d", 0, 0)):
        st = os.lstat(os.path.join(rf, path))
        assert (st.st_uid, st.st_gid) == (uid, gid), \
            "%s is %d:%d on disk, expected %d:%d (idmapped rootfs)" % (
                path, st.st_uid, st.st_gid, uid, gid)
    # The rootfs itself was not chowned into the container's range.
    for path in ("", "bin", "etc/passwd"):
        st = os.lstat(os.path.join(rf, path))
        assert st.st_uid == 0, "%s owned by %d on disk" % (path or "/", st.st_uid)
    # A file the host writes as root is root's inside.
    with open(os.path.join(rf, "tmp", "lxm-it-host"), "w") as f:
        f.write("x")
    out = sh(lxmd, name, "stat -c '%u:%g' /tmp/lxm-it-host").stdout.strip()
    assert out == "0:0", out


# ---------------------------------------------------------------- inherited fds

def test_no_host_fds_leak(lxmd, launched):
    name = launched()
    init = state(lxmd, name)["pid"]
    fds = sorted(os.listdir("/proc/%d/fd" % init), key=int)
    assert fds == ["0", "1", "2"], "init holds fds %r: %r" % (
        fds, {fd: os.readlink("/proc/%d/fd/%s" % (init, fd)) for fd in fds})
    for fd in fds:
        target = os.readlink("/proc/%d/fd/%s" % (init, fd))
        assert target.startswith("/dev/pts/") or target == "/dev/console", (fd, target)
    # The same seen from inside.
    inside = sh(lxmd, name, "ls /proc/1/fd").stdout.split()
    assert sorted(inside, key=int) == ["0", "1", "2"], inside
    # An exec'd shell holds its stdio and nothing else (`; true` keeps sh from exec'ing ls).
    out = sh(lxmd, name, "ls -l /proc/$$/fd; true").stdout
    links = dict(re.findall(r" (\d+) -> (\S+)", out))
    assert sorted(links, key=int) == ["0", "1", "2"], out
    assert all(t.startswith(("pipe:", "/dev/")) for t in links.values()), out
    # Its working directory is inside the container (CVE-2024-21626: no host cwd).
    cwd = sh(lxmd, name, "readlink /proc/$$/cwd; true").stdout.strip()
    assert cwd in ("/root", "/"), cwd
    assert sh(lxmd, name, "readlink /proc/1/cwd").stdout.strip() == "/"


# ---------------------------------------------------------------- privileged

def test_privileged_container_identity_map(lxmd, launched, probe):
    name = launched(config={"security.privileged": "true"})
    init = state(lxmd, name)["pid"]
    for f in ("uid_map", "gid_map"):
        with open("/proc/%d/%s" % (init, f)) as fh:
            assert fh.read().split() == ["0", "0", "4294967295"], f
    assert status_field(host_status(init), "Uid").split() == ["0"] * 4
    out = sh(lxmd, name, "cat /proc/self/uid_map").stdout.split()
    assert out == ["0", "0", "4294967295"], out
    # Still confined: the default capability drops and the syscall deny list apply.
    bnd = caps(status_field(sh(lxmd, name, "cat /proc/self/status").stdout, "CapBnd"))
    for cap, cname in DEFAULT_DROPPED.items():
        assert cap not in bnd, "privileged container keeps %s" % cname
    install_probe(lxmd, name, probe)
    res = run_probe(lxmd, name)
    wrong = {sc: res[sc] for sc in DENIED if res[sc] != "EPERM"}
    assert not wrong, "privileged container: denied syscalls not EPERM: %r" % wrong


def test_privileged_container_device_allow_list(lxmd, launched):
    name = launched(config={"security.privileged": "true"})
    # Devices are deny-all with an allow-list (anchors.md; LXC/LXD's device cgroup): a
    # privileged container may create nodes, but only listed devices open. /dev/null's numbers
    # do; the host's kernel log (/dev/kmsg, 1:11) and a loop device (7:0) must not. Both are
    # only read, at most one record or block.
    sh(lxmd, name, "mknod /dev/lxm-it-null c 1 3 && echo x > /dev/lxm-it-null")
    opened = []
    for label, nums, sysfs in (("kmsg", "c 1 11", "/sys/dev/char/1:11"),
                               ("loop0", "b 7 0", "/sys/dev/block/7:0")):
        if not os.path.exists(sysfs):
            continue  # the host has no such device: nothing to open either way
        node = "/dev/lxm-it-" + label
        r = sh(lxmd, name, "mknod %s %s && dd if=%s of=/dev/null bs=8192 count=1"
               % (node, nums, node), check=False)
        if r.returncode == 0 or "Operation not permitted" not in r.stderr:
            opened.append((label, nums, r.returncode, r.stderr.strip()))
    assert not opened, "a privileged container opened host devices outside the allow-list: %r" \
        % opened


def apparmor_profile_name(name, root):
    """The generated profile's name (profiles/apparmor.c): lxm-<name>_<root spelled out>, or
    lxm-<name>__<fnv1a-64 of the normalised root> for a root with other characters."""
    norm = "/".join(p for p in root.split("/") if p)
    if re.fullmatch(r"[A-Za-z0-9./]+", norm) and 0 < len(norm) <= 64:
        return "lxm-%s_%s" % (name, norm.replace("/", "-"))
    h = 0xcbf29ce484222325
    for c in norm.encode():
        h = ((h ^ c) * 0x100000001b3) & 0xffffffffffffffff
    return "lxm-%s__%016x" % (name, h)


def test_delete_removes_apparmor_profile_and_leaves_nothing(lxmd):
    name = unique("aa")
    lxmd.cli("launch", "busybox", name, timeout=120)
    pid = assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % name))["pid"]
    prof = apparmor_profile_name(name, lxmd.root)
    d = os.path.join(lxmd.root, "security", "apparmor")
    kernel_aa = os.path.exists("/sys/kernel/security/apparmor")
    files = [os.path.join(d, prof), os.path.join(d, "cache", prof),
             os.path.join(d, "cache", "26b63962.0", prof)]
    # Another instance's profile whose name starts alike must stay.
    other = os.path.join(d, apparmor_profile_name(name + "x", lxmd.root))
    if kernel_aa:
        assert os.path.exists(files[0]), os.listdir(d)
        files = files[:1]
    else:
        # This kernel has no AppArmor, so this start generated no profile: put what a start on
        # an AppArmor kernel leaves (the source and its cached compiled forms).
        for f in files:
            os.makedirs(os.path.dirname(f), exist_ok=True)
            with open(f, "w") as out:
                out.write("profile %s flags=(attach_disconnected) {}\n" % prof)
    with open(other, "w") as out:
        out.write("profile other {}\n")
    lxmd.cli("delete", "-f", name)
    deadline = time.monotonic() + 5
    while any(os.path.exists(f) for f in files) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [f for f in files if os.path.exists(f)], os.listdir(d)
    assert os.path.exists(other)
    if not kernel_aa:
        assert "apparmor: kernel has no AppArmor, not unloading profile %s" % prof \
            in lxmd.log_text(), lxmd.log_text()[-3000:]
    # Nothing else is left of the instance either.
    assert not pid_alive(pid)
    assert cgroup_dirs(name) == []
    for p in (os.path.join(lxmd.root, "run", name), os.path.join(lxmd.root, "containers", name),
              os.path.join(lxmd.root, "logs", name)):
        assert not os.path.exists(p), p
    assert lxmd.api("GET", "/1.0/instances/" + name).status == 404
