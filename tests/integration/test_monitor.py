"""lxm-monitor start, run by hand the way lxmd runs it: a spec.json written here, a busybox rootfs
in a temp dir, cgroups made by the test. Checks the ready line, the namespaces, id maps, cgroups and
time offsets of init, the control socket, stop/kill, exit.json, the console log cap, start errors,
that nothing of the caller's leaks into the monitor or the container, and the monitor's RSS.

Root only (conftest skips otherwise). Every test removes what it made, also when it fails: init and
monitor processes are SIGKILLed, cgroup dirs removed, temp dirs deleted.

The monitor binary is $LXM_MONITOR if set, else <build>/lxmd/lxm-monitor.
"""

import errno
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import lxmtest  # noqa: E402

BUSYBOX = "/bin/busybox"
IDMAP = [{"nsid": 0, "hostid": 1000000, "count": 65536}]
# v1 controllers the test puts a container into (cpuset is left out: it needs cpus/mems set).
V1_CONTROLLERS = ("pids", "memory", "freezer", "devices", "name=systemd")
NAMESPACES = ("mnt", "pid", "uts", "ipc", "net", "cgroup", "time")
# What ASan/UBSan/LSan write to the monitor's stderr (its log) in a sanitizer build.
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

# Prints a marker, then waits; TERM makes it say so and exit 7.
INIT_TRAP = ("trap 'echo got-term; exit 7' TERM; echo init-ready; "
             "while :; do /bin/busybox sleep 0.1; done")


def monitor_binary():
    return os.environ.get("LXM_MONITOR") or os.path.join(lxmtest.build_dir(), "lxmd",
                                                         "lxm-monitor")


def cgroup_mounts():
    """(v2 mount point or None, {v1 controller: mount point})."""
    v2, v1 = None, {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, opts = fields[sep + 1], fields[sep + 3].split(",")
            mnt = fields[4]
            if fstype == "cgroup2" and v2 is None:
                v2 = mnt
            elif fstype == "cgroup":
                for o in opts:
                    if o in V1_CONTROLLERS:
                        v1[o] = mnt
    return v2, v1


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_exit(pid, timeout):
    """Waits for a process that is not our child to exit (a pidfd works for those too)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        r, _, _ = select.select([fd], [], [], timeout)
        return bool(r)
    finally:
        os.close(fd)


def request(path, obj, raw=None, timeout=5):
    """One control request; returns the decoded reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(raw if raw is not None else (json.dumps(obj) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    assert buf.endswith(b"\n"), "reply not one full line: %r" % buf
    assert buf.count(b"\n") == 1
    return json.loads(buf)


class Container:
    """One container for the monitor: rootfs, rundir, cgroups and spec, and everything to undo."""

    def __init__(self, base, name, privileged=True, cgroups=False, **spec):
        self.base = base
        self.name = name
        self.rootfs = os.path.join(base, "rootfs")
        self.rundir = os.path.join(base, "run", name)
        self.spec_path = os.path.join(base, "spec.json")
        self.init_pid = None
        self.monitor_pid = None
        self.cgroup_dirs = []
        self.cgroup_mounts = []  # (mount point, dir)
        self.made_parents = []
        make_rootfs(self.rootfs)
        self.spec = {
            "name": name,
            "hostname": name + "-host",
            "rootfs": self.rootfs,
            "init": ["/bin/busybox", "sh", "-c", INIT_TRAP],
            "env": ["PATH=/bin:/sbin", "container=lxm"],
            "privileged": privileged,
            "uidmap": [] if privileged else IDMAP,
            "gidmap": [] if privileged else IDMAP,
            "halt_signal": signal.SIGTERM,
            "run_size": 16 << 20,
            "rundir": self.rundir,
            "control_socket": os.path.join(self.rundir, "monitor.socket"),
            "console_log": os.path.join(self.rundir, "console.log"),
            "console_log_max": 1 << 20,
        }
        if cgroups:
            self.make_cgroups()
        self.spec.update(spec)

    def make_cgroups(self):
        v2, v1 = cgroup_mounts()
        if v2:
            d = os.path.join(v2, "lxm.payload." + self.name)
            os.mkdir(d)
            self.cgroup_dirs.append(d)
            self.cgroup_mounts.append((v2, d))
            self.spec["cgroup_v2"] = d
            self.spec["cgroup_ns_root"] = d
        dirs = []
        for mnt in sorted(set(v1.values())):
            parent = os.path.join(mnt, "lxm.payload")
            if not os.path.isdir(parent):
                os.mkdir(parent)
                self.made_parents.append(parent)
            d = os.path.join(parent, self.name)
            os.mkdir(d)
            self.cgroup_dirs.append(d)
            self.cgroup_mounts.append((mnt, d))
            dirs.append(d)
        self.spec["cgroup_v1"] = dirs

    def write_spec(self):
        with open(self.spec_path, "w") as f:
            json.dump(self.spec, f)

    def start(self, expect_ok=True, **kw):
        """Runs `lxm-monitor start` to the end of its stdout; returns (rc, parsed line)."""
        self.write_spec()
        p = subprocess.run([monitor_binary(), "start", self.spec_path], capture_output=True,
                           timeout=30, **kw)
        out = p.stdout.decode()
        assert out.endswith("\n") and out.count("\n") == 1, \
            "expected one JSON line on stdout, got %r (stderr %r)" % (out, p.stderr)
        line = json.loads(out)
        if "init_pid" in line:
            self.init_pid, self.monitor_pid = line["init_pid"], line["monitor_pid"]
        if expect_ok:
            assert p.returncode == 0 and line.get("status") == "Running", \
                "start failed: %r\nmonitor.log:\n%s" % (line, self.monitor_log())
        return p.returncode, line

    @property
    def socket(self):
        return self.spec["control_socket"]

    def request(self, obj, **kw):
        return request(self.socket, obj, **kw)

    def monitor_log(self):
        try:
            with open(os.path.join(self.rundir, "monitor.log")) as f:
                return f.read()
        except OSError:
            return ""

    def console(self):
        try:
            with open(self.spec["console_log"], "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_console(self, text, timeout=10):
        deadline = time.monotonic() + timeout
        while text not in self.console():
            assert time.monotonic() < deadline, \
                "%r not on the console within %s s; console: %r" % (text, timeout,
                                                                    self.console()[-2000:])
            time.sleep(0.02)

    def exit_status(self):
        with open(os.path.join(self.rundir, "exit.json")) as f:
            return json.load(f)

    def wait_monitor_exit(self, timeout=10):
        assert wait_exit(self.monitor_pid, timeout), \
            "monitor %d still running after %s s" % (self.monitor_pid, timeout)

    def cleanup(self):
        """Kills what is left, removes cgroups and the temp dir; returns what had to be done
        and the sanitizer reports found in the monitor log."""
        leftovers = []
        for pid in (self.init_pid, self.monitor_pid):
            if pid and alive(pid):
                leftovers.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_exit(pid, 5)
        for d in reversed(self.cgroup_dirs + self.made_parents):
            for _ in range(100):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        break
                    time.sleep(0.02)
        log = self.monitor_log()
        reports = [m for m in SANITIZER_MARKS if m in log]
        shutil.rmtree(self.base, ignore_errors=True)
        return leftovers, (log if reports else "")


def make_rootfs(root):
    """A static busybox with a few applet links; enough for a shell as init."""
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "run", "root"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(root, "bin", "busybox"))
    for applet in ("sh", "sleep", "cat", "echo", "id", "hostname", "ls"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    os.symlink("/bin/busybox", os.path.join(root, "sbin", "init"))
    with open(os.path.join(root, "etc", "hostname"), "w") as f:
        f.write("rootfs\n")


@pytest.fixture
def make_container():
    if not os.path.exists(monitor_binary()):
        pytest.fail("%s not built (make lxmd/lxm-monitor)" % monitor_binary())
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs a static busybox at %s: apt-get install -y busybox-static" % BUSYBOX)
    made = []

    def make(privileged=True, cgroups=False, **spec):
        base = tempfile.mkdtemp(prefix=lxmtest.PREFIX + "mon-")
        # The container's root (host uid 1000000 when unprivileged) must be able to reach its
        # rootfs, as under LXD's 0711 directories.
        os.chmod(base, 0o711)
        c = Container(base, lxmtest.unique("mon"), privileged=privileged, cgroups=cgroups,
                      **spec)
        made.append(c)
        return c

    yield make

    errors = []
    for c in made:
        left, sanitizer_log = c.cleanup()
        if left:
            errors.append("processes left behind by %s: %r" % (c.name, left))
        if sanitizer_log:
            errors.append("sanitizer report in the monitor log of %s:\n%s"
                          % (c.name, sanitizer_log[-6000:]))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


def ns(pid, name):
    return os.readlink("/proc/%d/ns/%s" % (pid, name))


def proc_field(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return None


def nsenter(pid, flags, *cmd):
    return subprocess.run(["nsenter", "-t", str(pid)] + list(flags) + list(cmd),
                          capture_output=True, text=True, timeout=10, check=True).stdout


def stop_and_check(c, sig=signal.SIGTERM, timeout=5):
    # A TERM before the trap is set would be ignored (init has no default action for it).
    if c.spec["init"][-1] == INIT_TRAP:
        c.wait_console("init-ready")
    assert c.request({"op": "stop", "signal": int(sig), "timeout": timeout}) == {"ok": True}
    c.wait_monitor_exit(timeout + 5)
    assert not alive(c.init_pid)
    assert not os.path.exists(c.socket), "control socket left behind"
    for d in c.cgroup_dirs:
        assert not os.path.exists(d), "cgroup %s left behind" % d
    return c.exit_status()


# ---- tests ----

def test_help():
    p = subprocess.run([monitor_binary(), "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "start <spec.json>" in p.stdout
    p = subprocess.run([monitor_binary(), "start", "--help"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0 and "spec.json" in p.stdout
    p = subprocess.run([monitor_binary(), "bogus"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "unknown mode 'bogus'" in p.stderr
    p = subprocess.run([monitor_binary()], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2


def test_bad_spec_path(tmp_path):
    missing = str(tmp_path / "nope" / "spec.json")
    p = subprocess.run([monitor_binary(), "start", missing], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 1
    line = json.loads(p.stdout)
    assert list(line) == ["error"]
    assert line["error"].startswith("start") and missing in line["error"], line


def test_invalid_spec(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text("{not json")
    p = subprocess.run([monitor_binary(), "start", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 1
    assert "error" in json.loads(p.stdout)


def test_privileged_lifecycle(make_container):
    c = make_container(privileged=True, cgroups=True)
    t0 = time.monotonic()
    c.start()
    print("start to ready line: %.1f ms" % ((time.monotonic() - t0) * 1000))

    # The monitor is detached: not our child, in its own session, and init is its child.
    assert c.monitor_pid != os.getpid() and alive(c.monitor_pid)
    assert int(proc_field(c.monitor_pid, "PPid")) != os.getpid()
    assert os.getsid(c.monitor_pid) != os.getsid(0)
    assert int(proc_field(c.init_pid, "PPid")) == c.monitor_pid
    assert proc_field(c.init_pid, "NSpid").split()[-1] == "1"

    for n in NAMESPACES:
        assert ns(c.init_pid, n) != ns(os.getpid(), n), "init shares our %s namespace" % n
    assert ns(c.init_pid, "user") == ns(os.getpid(), "user")  # privileged: no user namespace
    assert nsenter(c.init_pid, ["-u"], "cat", "/proc/sys/kernel/hostname").strip() == \
        c.spec["hostname"]

    # Cgroups: placed in every dir of the spec, and those are the roots of its cgroup namespace
    # on every hierarchy, v1 included.
    with open("/proc/%d/cgroup" % c.init_pid) as f:
        paths = {line.split(":", 2)[2] for line in f.read().splitlines()}
    for mnt, d in c.cgroup_mounts:
        assert "/" + os.path.relpath(d, mnt) in paths, (d, paths)
    inside = nsenter(c.init_pid, ["-C"], "cat", "/proc/%d/cgroup" % c.init_pid)
    assert {line.split(":", 2)[2] for line in inside.splitlines()} == {"/"}, inside

    st = os.stat(c.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(c.rundir).st_mode) == 0o700

    status = c.request({"op": "status"})
    assert status["status"] == "Running"
    assert status["init_pid"] == c.init_pid and status["monitor_pid"] == c.monitor_pid
    assert abs(status["started_at"] / 1e9 - time.time()) < 60

    c.wait_console("init-ready")
    before = time.time_ns()
    ex = stop_and_check(c)
    assert ex["exit_code"] == 7 and "signal" not in ex
    assert before <= ex["stopped_at"] <= time.time_ns()
    assert "got-term" in c.console()
    log = c.monitor_log()
    assert "stop: signal 15" in log and "init exited with status 7" in log


def test_unprivileged_idmap_cgroups_timens(make_container):
    c = make_container(privileged=False, cgroups=True, time_offset_monotonic=86400,
                       time_offset_boottime=3 * 86400)
    c.start()
    for n in NAMESPACES + ("user",):
        assert ns(c.init_pid, n) != ns(os.getpid(), n), "init shares our %s namespace" % n
    for f in ("uid_map", "gid_map"):
        with open("/proc/%d/%s" % (c.init_pid, f)) as fh:
            assert fh.read().split() == ["0", "1000000", "65536"]
    # The rootfs is an idmapped mount: files owned by 0 on disk are 1000000 as the host sees
    # them through the container's root, and 0 inside.
    assert os.stat(c.rootfs + "/bin/busybox").st_uid == 0
    assert os.stat("/proc/%d/root/bin/busybox" % c.init_pid).st_uid == 1000000
    # Time namespace with the spec's offsets (read back from the host).
    with open("/proc/%d/timens_offsets" % c.init_pid) as f:
        offsets = {line.split()[0]: int(line.split()[1]) for line in f}
    assert offsets == {"monotonic": 86400, "boottime": 3 * 86400}
    with open("/proc/uptime") as f:
        host_up = float(f.read().split()[0])
    up = float(nsenter(c.init_pid, ["-T"], "cat", "/proc/uptime").split()[0])
    assert 3 * 86400 - 5 < up - host_up < 3 * 86400 + 5
    # init runs as the container's root, and the console belongs to it.
    assert proc_field(c.init_pid, "Uid").split()[0] == "1000000"
    c.wait_console("init-ready")
    console = os.stat("/proc/%d/fd/0" % c.init_pid)
    assert stat.S_ISCHR(console.st_mode) and (console.st_uid, console.st_gid) == (1000000, 1000000)
    ex = stop_and_check(c)
    assert ex["exit_code"] == 7


def test_nothing_leaks(make_container):
    """Neither the monitor nor init keeps the caller's fds (lxmd's sockets, its pipes)."""
    c = make_container()
    r, w = os.pipe()
    leak_inode = os.fstat(w).st_ino
    try:
        c.start(pass_fds=[w])
    finally:
        os.close(r)
        os.close(w)
    c.wait_console("init-ready")
    for pid, who in ((c.monitor_pid, "monitor"), (c.init_pid, "init")):
        fd_dir = "/proc/%d/fd" % pid
        links = {fd: os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)}
        assert "pipe:[%d]" % leak_inode not in links.values(), "%s keeps %r" % (who, links)
        assert not any("monitor.log" in t for t in links.values() if who == "init"), links
    # stdin is /dev/null, stdout closed after the line (subprocess.run saw EOF).
    assert os.readlink("/proc/%d/fd/0" % c.monitor_pid) == "/dev/null"
    assert os.readlink("/proc/%d/fd/2" % c.monitor_pid).endswith("/monitor.log")
    init_fds = os.listdir("/proc/%d/fd" % c.init_pid)
    assert sorted(int(x) for x in init_fds) == [0, 1, 2], init_fds
    stop_and_check(c)


def test_stop_timeout_kills(make_container):
    c = make_container(init=["/bin/busybox", "sh", "-c",
                             "trap '' TERM; echo init-ready; "
                             "while :; do /bin/busybox sleep 0.1; done"])
    c.start()
    c.wait_console("init-ready")
    t0 = time.monotonic()
    ex = stop_and_check(c, timeout=1)
    took = time.monotonic() - t0
    assert ex.get("signal") == signal.SIGKILL and "exit_code" not in ex
    assert 0.9 < took < 5, took
    assert "timeout reached" in c.monitor_log()


def test_kill(make_container):
    c = make_container()
    c.start()
    assert c.request({"op": "kill"}) == {"ok": True}
    c.wait_monitor_exit()
    assert c.exit_status()["signal"] == signal.SIGKILL
    assert not os.path.exists(c.socket)


def test_init_exits_by_itself(make_container):
    c = make_container(cgroups=True, init=["/bin/busybox", "sh", "-c", "echo bye; exit 5"])
    c.start()
    c.wait_monitor_exit()
    assert c.exit_status()["exit_code"] == 5
    assert "bye" in c.console()
    for d in c.cgroup_dirs:
        assert not os.path.exists(d)


def test_missing_init(make_container):
    c = make_container(cgroups=True, init=["/sbin/no-such-init"])
    rc, line = c.start(expect_ok=False)
    assert rc == 0  # the caller's process always exits 0; the line says what happened
    msg = line["error"]
    assert msg.startswith("start '%s': step 'exec-init': " % c.name), msg
    assert "/sbin/no-such-init" in msg, msg
    # The monitor cleaned up and is gone.
    deadline = time.monotonic() + 5
    while (os.path.exists(c.socket) or any(os.path.exists(d) for d in c.cgroup_dirs)) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(c.socket)
    for d in c.cgroup_dirs:
        assert not os.path.exists(d), d
    assert msg in c.monitor_log()


def test_bad_cgroup_is_a_clear_error(make_container):
    c = make_container(cgroup_v2="/sys/fs/cgroup/no-such-lxm-cgroup")
    rc, line = c.start(expect_ok=False)
    assert "start '%s': open cgroup /sys/fs/cgroup/no-such-lxm-cgroup: No such file" % c.name \
        in line["error"], line
    assert not os.path.exists(c.socket)


def test_bad_requests(make_container):
    c = make_container()
    c.start()
    assert "error" in c.request(None, raw=b"{not json\n")
    assert "error" in c.request(None, raw=b"[1,2]\n")
    r = c.request({"op": "reboot"})
    assert "unknown op 'reboot'" in r["error"]
    assert "'signal'" in c.request({"op": "stop", "signal": "TERM"})["error"]
    assert "'signal'" in c.request({"op": "stop", "signal": 0})["error"]
    assert "'timeout'" in c.request({"op": "stop", "signal": 15, "timeout": "soon"})["error"]
    assert "longer than" in c.request(None, raw=b"x" * 5000)["error"]
    # A request without the newline, then a half-close, still gets its answer.
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(c.socket)
        s.sendall(b'{"op":"status"}')
        s.shutdown(socket.SHUT_WR)
        assert json.loads(s.recv(4096))["status"] == "Running"
    # Connections that say nothing do not block others.
    idle = [socket.socket(socket.AF_UNIX) for _ in range(3)]
    try:
        for s in idle:
            s.connect(c.socket)
        assert c.request({"op": "status"})["init_pid"] == c.init_pid
    finally:
        for s in idle:
            s.close()
    stop_and_check(c)


def test_survives_signals(make_container):
    """lxmd going down (or its process group being signalled) must not take the monitor along."""
    c = make_container()
    c.start()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        os.kill(c.monitor_pid, sig)
    time.sleep(0.2)
    assert alive(c.monitor_pid) and alive(c.init_pid)
    assert c.request({"op": "status"})["status"] == "Running"
    assert "ignoring signal 15" in c.monitor_log()
    stop_and_check(c)


def test_second_monitor_refused(make_container):
    c = make_container(cgroups=True)
    c.start()
    rc, line = c.start(expect_ok=False)
    assert "another monitor is listening" in line["error"], line
    time.sleep(0.2)
    # The first container is untouched.
    assert os.path.exists(c.socket) and all(os.path.exists(d) for d in c.cgroup_dirs)
    st = c.request({"op": "status"})
    c.init_pid, c.monitor_pid = st["init_pid"], st["monitor_pid"]
    stop_and_check(c)


def test_stale_socket_replaced(make_container):
    c = make_container()
    os.makedirs(c.rundir, mode=0o700)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(c.socket)  # bound, never listening, then closed: a dead monitor's leftover
    c.start()
    assert c.request({"op": "status"})["status"] == "Running"
    stop_and_check(c)


def test_console_log_cap(make_container):
    cap = 4096
    script = ("i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo line-$i; done; echo all-done; "
              "trap 'exit 0' TERM; while :; do /bin/busybox sleep 0.1; done")
    c = make_container(init=["/bin/busybox", "sh", "-c", script], console_log_max=cap)
    c.start()
    c.wait_console("all-done")
    size = os.path.getsize(c.spec["console_log"])
    text = c.console()
    assert cap // 2 - 100 < size <= cap, size
    assert "line-2000" in text and "line-1\r\n" not in text
    # Trimmed at a line boundary.
    assert text.startswith("line-"), text[:40]
    stop_and_check(c)


def test_monitor_rss(make_container):
    c = make_container(privileged=False, cgroups=True)
    c.start()
    c.wait_console("init-ready")
    rss = proc_field(c.monitor_pid, "VmRSS")
    kib = int(rss.split()[0])
    print("lxm-monitor VmRSS: %d KiB (RssAnon %s, RssFile %s)" % (
        kib, proc_field(c.monitor_pid, "RssAnon"), proc_field(c.monitor_pid, "RssFile")))
    with open("/proc/%d/maps" % c.monitor_pid) as f:
        sanitized = "libasan" in f.read()
    if not sanitized:
        assert kib < 4096, "monitor RSS %d KiB >= 4 MiB" % kib
    stop_and_check(c)


CLIENT_DRIVER = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <uv.h>
#include "monitor/monitor.h"

struct result {
	int r;
	int calls;
	json_t *reply;
	struct lxm_error *err;
};

static void answered(json_t *reply, struct lxm_error *err, void *ud)
{
	struct result *res = ud;

	res->calls++;
	res->r = err ? -err->errnum : 0;
	res->reply = json_incref(reply);
	res->err = err;
}

/* argv: socket request timeout_ms [async]. Prints r, the reply and the message, one a line. */
int main(int argc, char **argv)
{
	struct result res = { 0 };
	json_t *req = json_loads(argv[2], 0, NULL);
	char *s;

	if (argc > 4 && strcmp(argv[4], "async") == 0) {
		uv_loop_t loop;

		uv_loop_init(&loop);
		res.r = lxm_monitor_request_async(&loop, argv[1], req, atoi(argv[3]), answered,
						  &res, &res.err);
		if (res.r == 0) {
			uv_run(&loop, UV_RUN_DEFAULT);
			/* Exactly one callback, and every handle closed. */
			if (res.calls != 1 || uv_loop_close(&loop) != 0)
				return 3;
		} else if (uv_run(&loop, UV_RUN_DEFAULT), uv_loop_close(&loop) != 0 || res.calls) {
			return 4;
		}
	} else {
		res.r = lxm_monitor_request(argv[1], req, atoi(argv[3]), &res.reply, &res.err);
	}
	s = res.reply ? json_dumps(res.reply, JSON_COMPACT) : NULL;
	printf("%d\n%s\n%s\n", res.r, s ? s : "", res.err ? res.err->msg : "");
	free(s);
	json_decref(res.reply);
	json_decref(req);
	lxm_error_free(res.err);
	return 0;
}
"""


@pytest.fixture(scope="module")
def client_driver(tmp_path_factory):
    """lxm_monitor_request() (client.c) in a small program linked against the build."""
    b = lxmtest.build_dir()
    libs = [os.path.join(b, "lxmd", "liblxmd.a"), os.path.join(b, "lib", "liblxm.a")]
    if not all(os.path.exists(x) for x in libs) or not shutil.which("gcc"):
        pytest.skip("needs gcc and a built lxmd/liblxmd.a")
    d = tmp_path_factory.mktemp("client")
    src, exe = d / "driver.c", d / "driver"
    src.write_text(CLIENT_DRIVER)
    # A sanitizer build's libraries need the sanitizer runtimes at link time: build the driver
    # with the flags the tree was configured with (configure records them in config.log).
    flags = []
    try:
        with open(os.path.join(b, "config.log")) as f:
            if "--enable-sanitizers" in f.read():
                flags = ["-fsanitize=address,undefined"]
    except OSError:
        pass
    r = subprocess.run(["gcc"] + flags + ["-I" + os.path.join(lxmtest.REPO, "lxmd"),
                        "-I" + os.path.join(lxmtest.REPO, "lib"), "-o", str(exe), str(src)] +
                       libs + ["-ljansson", "-luv"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "building the client driver failed:\n" + r.stderr
    yield str(exe)


def run_client(driver, path, req, timeout_ms=2000, mode="sync"):
    out = subprocess.run([driver, path, json.dumps(req), str(timeout_ms), mode],
                         capture_output=True, text=True, timeout=30,
                         check=True).stdout.split("\n")
    return int(out[0]), json.loads(out[1]) if out[1] else None, out[2]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_client_request(make_container, client_driver, tmp_path, mode):
    """Both forms of the client (blocking, and on a libuv loop as lxmd uses it) give the same
    results and messages."""
    missing = str(tmp_path / "none.socket")
    r, _, msg = run_client(client_driver, missing, {"op": "status"}, mode=mode)
    assert r == -errno.ENOENT and missing in msg, (r, msg)
    stale = str(tmp_path / "stale.socket")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(stale)
    r, _, msg = run_client(client_driver, stale, {"op": "status"}, mode=mode)
    assert r == -errno.ECONNREFUSED, (r, msg)
    too_long = "/tmp/" + "x" * 120
    r, _, msg = run_client(client_driver, too_long, {"op": "status"}, mode=mode)
    assert r == -errno.ENAMETOOLONG and "path longer than" in msg, (r, msg)

    # A server that accepts and never answers: the timeout holds.
    silent = str(tmp_path / "silent.socket")
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(silent)
        srv.listen(1)
        t0 = time.monotonic()
        r, _, msg = run_client(client_driver, silent, {"op": "status"}, timeout_ms=300, mode=mode)
        assert r == -errno.ETIMEDOUT and 0.25 < time.monotonic() - t0 < 5, (r, msg)
        assert "no reply in time" in msg, msg

    # One that answers with half a line and closes: what came is parsed.
    for answer, want in ((b'{"ok":true}', 0), (b"", -errno.ECONNRESET), (b"{nope", -errno.EPROTO)):
        path = str(tmp_path / "once.socket")
        with socket.socket(socket.AF_UNIX) as srv:
            srv.bind(path)
            srv.listen(1)
            pid = os.fork()
            if pid == 0:
                try:
                    conn, _ = srv.accept()
                    conn.recv(4096)
                    conn.sendall(answer)
                    conn.close()
                finally:
                    os._exit(0)
            r, reply, msg = run_client(client_driver, path, {"op": "status"}, mode=mode)
            os.waitpid(pid, 0)
        os.unlink(path)
        assert r == want, (answer, r, msg)
        assert (reply == {"ok": True}) if want == 0 else reply is None, (answer, reply)

    c = make_container()
    c.start()
    r, reply, msg = run_client(client_driver, c.socket, {"op": "status"}, mode=mode)
    assert r == 0 and reply["init_pid"] == c.init_pid, (r, msg)
    r, reply, msg = run_client(client_driver, c.socket, {"op": "frobnicate"}, mode=mode)
    assert r == -errno.EIO and reply is None and msg.startswith("unknown op 'frobnicate'"), msg
    r, reply, msg = run_client(client_driver, c.socket, {"op": "kill"}, mode=mode)
    assert r == 0 and reply == {"ok": True}
    c.wait_monitor_exit()
