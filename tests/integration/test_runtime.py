"""The container runtime through lxmd: launch the busybox image, state, stop, restart, freeze,
re-attach after lxmd dies, limits, and no residue after delete."""

import hashlib
import os
import signal
import subprocess
import time


from lxmtest import assert_sync, cgroup_dirs, pid_alive, unique


def state(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % name))


def ns_of(pid, ns):
    return os.readlink("/proc/%d/ns/%s" % (pid, ns))


def test_launch_busybox_runs_init(lxmd, launched):
    name = launched()
    st = state(lxmd, name)
    assert st["status"] == "Running" and st["status_code"] == 103, st
    pid = st["pid"]
    assert pid > 0 and pid_alive(pid)
    # busybox init renames itself "init"; it is PID 1 of its own pid namespace.
    with open("/proc/%d/comm" % pid) as f:
        assert f.read().strip() == "init", "PID 1 is not the image's init"
    with open("/proc/%d/status" % pid) as f:
        assert [l for l in f if l.startswith("NSpid:")][0].split()[-1] == "1"
    # In its own namespaces, all of them.
    for ns in ("mnt", "pid", "uts", "ipc", "net", "user", "cgroup"):
        assert ns_of(pid, ns) != ns_of(os.getpid(), ns), "%s namespace shared with the host" % ns
    # Unprivileged: root inside is a high uid outside, through a 65536-id map.
    with open("/proc/%d/uid_map" % pid) as f:
        fields = f.read().split()
    assert fields[0] == "0" and int(fields[1]) >= 65536 and fields[2] == "65536", fields
    with open("/proc/%d/status" % pid) as f:
        uids = [l for l in f if l.startswith("Uid:")][0].split()[1:]
    assert all(int(u) == int(fields[1]) for u in uids), "init does not run as the mapped root"
    # Its hostname is its name.
    out = subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == name
    # The instance lists as RUNNING.
    inst = assert_sync(lxmd.api("GET", "/1.0/instances/" + name))
    assert inst["status"] == "Running"
    listed = lxmd.cli("list", "--format", "csv", "-c", "ns").stdout
    assert "%s,RUNNING" % name in listed


def test_container_sees_no_host_processes_or_interfaces(lxmd, launched):
    name = launched()
    pid = state(lxmd, name)["pid"]
    # Interfaces of its network namespace: only lo.
    net = state(lxmd, name)["network"]
    assert set(net) == {"lo"}, net
    # Processes visible in its pid namespace: a handful of its own, never lxmd.
    with open("/proc/%d/status" % pid) as f:
        nspid = [l for l in f if l.startswith("NSpid:")][0].split()
    assert nspid[-1] == "1", "init is not PID 1 in its namespace: %r" % nspid


def test_stop_graceful_then_start_again(lxmd, launched):
    name = launched()
    pid = state(lxmd, name)["pid"]
    t = time.monotonic()
    lxmd.cli("stop", name)
    took = time.monotonic() - t
    assert not pid_alive(pid)
    st = state(lxmd, name)
    assert st["status"] == "Stopped" and st["pid"] == 0
    assert took < 10, "clean stop took %.1fs (busybox init halts on SIGUSR2 at once)" % took
    assert cgroup_dirs(name) == [], "cgroups left after stop"
    lxmd.cli("start", name)
    pid2 = state(lxmd, name)["pid"]
    assert pid2 > 0 and pid2 != pid and pid_alive(pid2)


def test_stop_force_and_restart(lxmd, launched):
    name = launched()
    pid = state(lxmd, name)["pid"]
    lxmd.cli("restart", name)
    pid2 = state(lxmd, name)["pid"]
    assert pid2 != pid and pid_alive(pid2) and not pid_alive(pid)
    lxmd.cli("stop", "--force", name)
    assert not pid_alive(pid2)
    assert state(lxmd, name)["status"] == "Stopped"


def test_stop_force_overtakes_a_stop_the_init_ignores(lxmd, launched):
    # busybox init reloads its inittab on SIGHUP instead of halting: a clean stop waits.
    name = launched(config={"boot.stop.signal": "SIGHUP"})
    pid = state(lxmd, name)["pid"]
    slow = lxmd.cli_popen("stop", name)
    try:
        time.sleep(1)
        assert slow.poll() is None, "the stop ended though init ignores its signal"
        assert pid_alive(pid)
        again = lxmd.cli("stop", name, check=False)
        assert again.returncode != 0 and "another state change is under way" in again.stderr
        t = time.monotonic()
        lxmd.cli("stop", "--force", name)
        assert time.monotonic() - t < 5
        assert not pid_alive(pid)
        # The waiting stop ends too, successfully: the instance is stopped.
        assert slow.wait(timeout=10) == 0, slow.stderr.read()
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    assert state(lxmd, name)["status"] == "Stopped"
    assert cgroup_dirs(name) == []


def ppid_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_stop_request_never_blocks_lxmd(lxmd, launched):
    """lxmd asks the monitor to stop without waiting on its loop: with the monitor stopped
    (SIGSTOP: it accepts nothing), other requests are still answered at once, and the stop fails
    after the request's timeout naming the monitor; once the monitor runs again, stop works."""
    name = launched()
    pid = state(lxmd, name)["pid"]
    monitor = ppid_of(pid)
    os.kill(monitor, signal.SIGSTOP)
    try:
        r = lxmd.api("PUT", "/1.0/instances/%s/state" % name, {"action": "stop", "timeout": 5})
        assert r.status == 202, r
        op = r.json["metadata"]["id"]
        slowest = 0
        for _ in range(10):
            t = time.monotonic()
            assert_sync(lxmd.api("GET", "/1.0", timeout=5))
            slowest = max(slowest, time.monotonic() - t)
            time.sleep(0.05)
        assert slowest < 0.5, "GET /1.0 took %.2fs while a stop waited for the monitor" % slowest
        done = lxmd.wait_op(op)
        assert done["status"] == "Failure", done
        assert "stop '%s': ask its monitor" % name in done["err"], done["err"]
        assert "no reply in time" in done["err"], done["err"]
    finally:
        os.kill(monitor, signal.SIGCONT)
    assert state(lxmd, name)["status"] == "Running"
    lxmd.cli("stop", name)
    assert not pid_alive(pid) and state(lxmd, name)["status"] == "Stopped"


def test_freeze_and_unfreeze(lxmd, launched):
    name = launched()
    lxmd.cli("pause", name)
    assert state(lxmd, name)["status"] == "Frozen"
    lxmd.cli("start", name)
    assert state(lxmd, name)["status"] == "Running"


def test_start_errors(lxmd, launched):
    name = launched()
    r = lxmd.cli("start", name, check=False)
    assert r.returncode == 1 and "already running" in r.stderr, r.stderr
    r = lxmd.cli("delete", name, check=False)
    assert r.returncode == 1 and "running" in r.stderr.lower(), r.stderr
    empty = unique("empty")
    lxmd.cli("init", "--empty", empty)
    r = lxmd.cli("start", empty, check=False)
    assert r.returncode == 1 and "no /sbin/init" in r.stderr, r.stderr
    lxmd.cli("delete", empty)
    r = lxmd.cli("launch", "no-such-image", unique("x"), check=False)
    assert r.returncode == 1 and "image 'no-such-image' not found" in r.stderr, r.stderr


def test_lxmd_killed_containers_keep_running(lxmd, launched):
    name = launched()
    pid = state(lxmd, name)["pid"]
    lxmd.kill9()
    assert pid_alive(pid), "the container died with lxmd"
    lxmd.start()
    st = state(lxmd, name)
    assert st["status"] == "Running" and st["pid"] == pid, st
    # Still manageable after re-attaching.
    lxmd.cli("stop", "--force", name)
    assert not pid_alive(pid)
    assert state(lxmd, name)["status"] == "Stopped"


def test_lxmd_clean_restart_keeps_containers(lxmd, launched):
    name = launched()
    pid = state(lxmd, name)["pid"]
    lxmd.restart()
    assert pid_alive(pid)
    assert state(lxmd, name)["status"] == "Running"


def test_memory_and_process_limits_applied(lxmd, launched):
    name = launched(config={"limits.memory": "64MiB", "limits.processes": "50"})
    dirs = cgroup_dirs(name)
    mem = [d for d in dirs if "/memory/" in d or d.endswith("lxm.payload." + name)]
    assert mem, dirs
    found_mem = found_pids = False
    for d in dirs:
        for f, want in (("memory.limit_in_bytes", str(64 << 20)), ("memory.max", str(64 << 20)),
                        ("pids.max", "50")):
            p = os.path.join(d, f)
            if os.path.exists(p):
                with open(p) as fh:
                    assert fh.read().strip() == want, p
                found_mem |= f.startswith("memory")
                found_pids |= f == "pids.max"
    assert found_mem and found_pids, dirs
    st = state(lxmd, name)
    assert st["memory"]["usage"] > 0 and st["processes"] >= 1, st


def test_bad_limit_refused_with_key_named(lxmd):
    name = unique("bad")
    r = lxmd.cli("launch", "busybox", name, "-c", "limits.memory=lots", check=False)
    assert r.returncode == 1 and "limits.memory" in r.stderr, r.stderr
    lxmd.cli("delete", name, check=False)
    assert cgroup_dirs(name) == []


def test_delete_leaves_no_residue(lxmd, launched):
    name = launched()
    pid = state(lxmd, name)["pid"]
    lxmd.cli("delete", "-f", name)
    assert not pid_alive(pid)
    assert cgroup_dirs(name) == []
    assert not os.path.exists(os.path.join(lxmd.root, "containers", name))
    assert not os.path.exists(os.path.join(lxmd.root, "run", name, "monitor.sock"))
    r = lxmd.api("GET", "/1.0/instances/" + name)
    assert r.status == 404
    assert not os.path.exists(os.path.join(lxmd.root, "logs", name))


def test_loopback_up_whatever_init_does(lxmd):
    """lo is up because the runtime brings it up, not because the image's rcS does."""
    name = unique("lo")
    lxmd.cli("init", "busybox", name)
    try:
        rcs = os.path.join(lxmd.root, "containers", name, "rootfs", "etc", "init.d", "rcS")
        with open(rcs, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        lxmd.cli("start", name)
        pid = state(lxmd, name)["pid"]
        out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link", "show", "lo"],
                             capture_output=True, text=True, check=True).stdout
        assert ",UP" in out or "<LOOPBACK,UP" in out, out
    finally:
        lxmd.cli("delete", "-f", name, check=False)
    assert cgroup_dirs(name) == []


def test_v2_device_filter_denies_what_v1_would_allow(lxmd, launched):
    """The BPF device program on the v2 cgroup enforces the allow-list by itself: with the v1
    devices cgroup opened to everything, a privileged container still cannot open /dev/kmsg or a
    block device, while /dev/null and ptys work."""
    name = launched(config={"security.privileged": "true"})
    v1 = [d for d in cgroup_dirs(name) if "/devices/" in d]
    if os.path.isdir("/sys/fs/cgroup/devices"):
        assert len(v1) == 1, cgroup_dirs(name)
    for d in v1:
        with open(os.path.join(d, "devices.allow"), "w") as f:
            f.write("a")
    out = lxmd.cli("exec", name, "--", "sh", "-c",
                   "mknod /tmp/k c 1 11 && echo mknod-ok; "
                   "head -c1 /tmp/k >/dev/null 2>&1 && echo kmsg-opened || echo kmsg-denied; "
                   "mknod /tmp/l b 7 0; head -c1 /tmp/l >/dev/null 2>&1 && echo blk-opened "
                   "|| echo blk-denied; echo x >/dev/null && echo null-ok").stdout.split()
    assert out == ["mknod-ok", "kmsg-denied", "blk-denied", "null-ok"], out


def root_tag(root):
    return hashlib.sha256(root.rstrip("/").encode()).hexdigest()[:8]


def test_two_roots_run_the_same_instance_name(lxmd_factory):
    """cgroup names are per root: two lxmd with different roots each run an instance called the
    same, each in cgroups tagged with its own root, and deleting one leaves the other alone,
    even across a restart of the survivor's lxmd."""
    a, b = lxmd_factory().start(), lxmd_factory().start()
    name = unique("twin")
    a.cli("launch", "busybox", name, timeout=120)
    b.cli("launch", "busybox", name, timeout=120)
    pa, pb = state(a, name)["pid"], state(b, name)["pid"]
    assert pa != pb and pid_alive(pa) and pid_alive(pb)
    ta, tb = root_tag(a.root), root_tag(b.root)
    dirs = cgroup_dirs(name)
    assert any(("lxm.payload.%s" % ta) in d for d in dirs), dirs
    assert any(("lxm.payload.%s" % tb) in d for d in dirs), dirs
    with open("/proc/%d/cgroup" % pa) as f, open("/proc/%d/cgroup" % pb) as g:
        ca, cb = f.read(), g.read()
    assert ca != cb and ta in ca and tb in cb and tb not in ca, (ca, cb)

    a.cli("delete", "-f", name)
    assert not pid_alive(pa) and pid_alive(pb)
    assert not any(ta in d for d in cgroup_dirs(name)), cgroup_dirs(name)
    assert state(b, name)["status"] == "Running"
    assert b.cli("exec", name, "--", "true").returncode == 0

    # A restarted lxmd on the same root finds the container and its cgroups again.
    b.kill9()
    b.start()
    st = state(b, name)
    assert st["status"] == "Running" and st["pid"] == pb, st
    assert st["memory"]["usage"] > 0 and st["processes"] > 0, st
    b.cli("delete", "-f", name)
    assert not pid_alive(pb) and cgroup_dirs(name) == []
    # A private root's parent dirs go with its last instance.
    for root_dir in ("/sys/fs/cgroup/%s" % c for c in os.listdir("/sys/fs/cgroup")):
        for t in (ta, tb):
            assert not os.path.exists(os.path.join(root_dir, "lxm.payload." + t)), root_dir


def test_start_templates_follow_the_config(lxmd, launched):
    # An image may ask for files rendered at every start (LXD's "start" trigger). The busybox
    # image has create templates only, so give this instance's copy of its metadata a start one.
    name = launched()
    lxmd.cli("stop", "--force", name)
    instdir = os.path.join(lxmd.root, "containers", name)
    with open(os.path.join(instdir, "metadata.yaml")) as f:
        meta = f.read()
    assert "templates:" in meta, meta
    meta = meta.replace("templates:\n", "templates:\n  /etc/motd:\n    when:\n      - start\n"
                        "    template: motd.tpl\n", 1)
    with open(os.path.join(instdir, "metadata.yaml"), "w") as f:
        f.write(meta)
    with open(os.path.join(instdir, "templates", "motd.tpl"), "w") as f:
        f.write('{{ instance.name }} says {{ config_get("user.greeting", "hello") }}\n')

    def motd():
        return lxmd.cli("exec", name, "--", "cat", "/etc/motd").stdout

    lxmd.cli("start", name)
    assert motd() == "%s says hello\n" % name
    lxmd.cli("config", "set", name, "user.greeting=bonjour")
    assert motd() == "%s says hello\n" % name, "rendered at start only"
    lxmd.cli("restart", "--force", name)
    assert motd() == "%s says bonjour\n" % name
    # A template that cannot render stops the start with a message naming it.
    with open(os.path.join(instdir, "templates", "motd.tpl"), "w") as f:
        f.write("{% if %}\n")
    lxmd.cli("stop", "--force", name)
    r = lxmd.cli("start", name, check=False)
    assert r.returncode != 0 and "start templates" in r.stderr and "line 1" in r.stderr, r.stderr
    assert state(lxmd, name)["status"] == "Stopped"
    assert cgroup_dirs(name) == []
