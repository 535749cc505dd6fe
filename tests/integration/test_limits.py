"""Resource limits of busybox containers, enforced and reported: limits.memory (with
limits.memory.swap=false) OOM-kills the process that overruns it and nothing else,
limits.processes stops a fork bomb, limits.cpu and limits.cpu.allowance land in the cpuset and
CFS files (and throttle a busy loop), the state API agrees with what runs inside, and invalid
values are refused with the key named and nothing left behind.

Memory and fork pressure come from a small static helper compiled on the host (gcc -static) and
copied into the container's rootfs, since busybox has nothing that holds memory on purpose.
"""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from lxmtest import assert_sync, cgroup_dirs, pid_alive, static_program, unique, wait_for

MiB = 1 << 20
PROBE = "/lxm-it-limits"

HELPER_SRC = r"""
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Tasks of this pid namespace (the container's): numeric entries of /proc, no fork needed. */
static int count_tasks(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (isdigit((unsigned char)e->d_name[0]))
			n++;
	closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc == 3 && strcmp(argv[1], "alloc") == 0) {
		/* Allocates and touches N MiB, then says so: only a survivor prints "allocated". */
		long mib = atol(argv[2]);
		for (long i = 0; i < mib; i++) {
			char *p = malloc(1 << 20);
			if (!p) {
				printf("malloc failed at %ld MiB\n", i);
				return 3;
			}
			memset(p, 0x5a, 1 << 20);
		}
		printf("allocated %ld MiB\n", mib);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "forkbomb") == 0) {
		/* Tries N forks of children that wait; reports, holds them until stdin closes,
		 * then kills and reaps them. */
		int n = atoi(argv[2]), ok = 0, failed = 0, err = 0;
		pid_t *kids = calloc((size_t)n, sizeof(pid_t));
		char c;

		for (int i = 0; i < n; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				pause();
				_exit(0);
			}
			if (pid < 0) {
				failed++;
				err = errno;
			} else {
				kids[ok++] = pid;
			}
		}
		printf("forked %d failed %d errno %s tasks %d\n", ok, failed,
		       err ? strerrorname_np(err) : "none", count_tasks());
		while (read(0, &c, 1) > 0)
			;
		for (int i = 0; i < ok; i++)
			kill(kids[i], SIGKILL);
		for (int i = 0; i < ok; i++)
			waitpid(kids[i], NULL, 0);
		printf("reaped %d\n", ok);
		return 0;
	}
	fprintf(stderr, "usage: %s alloc MIB | forkbomb N\n", argv[0]);
	return 2;
}
"""


def state(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % name))


def sh(lxmd, name, script, check=True, timeout=60):
    return lxmd.cli("exec", name, "--", "sh", "-c", script, check=check, timeout=timeout)


def cgfile(name, controller, filename):
    """Path of a cgroup v1 file of the instance (None when the hierarchy has no such file)."""
    for d in cgroup_dirs(name):
        # lxm.payload/<name>, or lxm.payload.<tag>/<name> for a private root such as the tests'.
        if re.search(r"/%s/lxm\.payload(\.[0-9a-f]{8})?/" % re.escape(controller), d):
            p = os.path.join(d, filename)
            return p if os.path.exists(p) else None
    return None


def read(path):
    with open(path) as f:
        return f.read().strip()


@pytest.fixture(scope="module")
def helper():
    with static_program("limits", HELPER_SRC) as path:
        yield path


def install(lxmd, name, helper):
    dst = os.path.join(lxmd.root, "containers", name, "rootfs") + PROBE
    shutil.copy(helper, dst)
    os.chmod(dst, 0o755)


# ---------------------------------------------------------------- memory

def test_memory_limit_oom_kills_the_hog_only(lxmd, launched, helper):
    name = launched(config={"limits.memory": "32MiB", "limits.memory.swap": "false"})
    limit = cgfile(name, "memory", "memory.limit_in_bytes")
    assert limit and int(read(limit)) == 32 * MiB, limit and read(limit)
    memsw = cgfile(name, "memory", "memory.memsw.limit_in_bytes")
    if memsw:  # swap accounting on: no swap on top of the limit
        assert int(read(memsw)) == 32 * MiB, read(memsw)
    install(lxmd, name, helper)
    init = state(lxmd, name)["pid"]

    # Control: an allocation well under the limit survives.
    r = lxmd.cli("exec", name, "--", PROBE, "alloc", "8", check=False)
    assert r.returncode == 0 and "allocated 8 MiB" in r.stdout, r

    r = lxmd.cli("exec", name, "--", PROBE, "alloc", "100", check=False, timeout=60)
    assert r.returncode == 128 + signal.SIGKILL, \
        "a 100 MiB allocation under limits.memory=32MiB exited %d (stdout %r, stderr %r)" % (
            r.returncode, r.stdout, r.stderr)
    assert "allocated" not in r.stdout, r.stdout
    oom = cgfile(name, "memory", "memory.oom_control")
    if oom:
        kills = dict(l.split() for l in read(oom).splitlines())
        assert int(kills.get("oom_kill", "1")) >= 1, read(oom)
    peak = cgfile(name, "memory", "memory.max_usage_in_bytes")
    if peak:
        assert int(read(peak)) <= 32 * MiB, read(peak)

    # The container lives on: same init, still running, still usable.
    assert pid_alive(init), "the OOM kill took init down"
    st = state(lxmd, name)
    assert st["status"] == "Running" and st["pid"] == init, st
    assert sh(lxmd, name, "echo alive").stdout == "alive\n"
    assert st["memory"]["usage"] < 32 * MiB, st["memory"]


# ---------------------------------------------------------------- processes

def pids_procs(name):
    p = cgfile(name, "pids", "cgroup.procs")
    return [int(x) for x in read(p).split()] if p else []


def kill_sleeps(name):
    for pid in pids_procs(name):
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "sleep":
                    os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_process_limit_stops_a_fork_bomb(lxmd, launched, helper):
    name = launched(config={"limits.processes": "30"})
    current = cgfile(name, "pids", "pids.current")
    assert current and read(cgfile(name, "pids", "pids.max")) == "30"
    init = state(lxmd, name)["pid"]
    try:
        # The shell's bomb: it stops at the first fork the kernel refuses.
        r = sh(lxmd, name, "for i in $(seq 100); do sleep 30 & done; echo all-forked",
               check=False, timeout=60)
        assert "all-forked" not in r.stdout, "100 background sleeps under limits.processes=30"
        assert "can't fork" in r.stderr, r
        n = int(read(current))
        assert 20 <= n <= 30, "pids.current %d after the bomb (limit 30)" % n
        events = cgfile(name, "pids", "pids.events")
        if events:
            assert int(dict(l.split() for l in read(events).splitlines())["max"]) >= 1
        assert state(lxmd, name)["status"] == "Running" and pid_alive(init)
    finally:
        kill_sleeps(name)
    wait_for(lambda: int(read(current)) < 10, what="the sleeps to go")

    # The helper's bomb counts: most forks fail, with EAGAIN, and the container never holds
    # more than 30 tasks.
    install(lxmd, name, helper)
    p = subprocess.Popen([lxmd.lxm_bin, "exec", name, "--", PROBE, "forkbomb", "100"],
                         env=lxmd.cli_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        held = int(read(current))
        f = line.split()
        assert len(f) == 8 and f[0] == "forked", "helper said %r (stderr %r)" % (
            line, p.stderr.read() if p.poll() is not None else "")
        forked, failed, err, tasks = int(f[1]), int(f[3]), f[5], int(f[7])
        assert failed >= 70 and err == "EAGAIN", line
        assert forked >= 15, "only %d forks succeeded under a limit of 30: %r" % (forked, line)
        assert tasks <= 30, "the container's /proc listed %d tasks: %r" % (tasks, line)
        assert held <= 30, "pids.current %d while the bomb held its children" % held
        out, errout = p.communicate(timeout=30)  # closes stdin: the helper lets go
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and "reaped %d" % forked in out, (p.returncode, out, errout)

    # And the container survived it all.
    assert pid_alive(init)
    assert state(lxmd, name)["status"] == "Running"
    assert sh(lxmd, name, "echo ok").stdout == "ok\n"


# ---------------------------------------------------------------- cpu

def test_cpu_count_and_allowance(lxmd, launched):
    name = launched(config={"limits.cpu": "1", "limits.cpu.allowance": "50%"})
    cpus = cgfile(name, "cpuset", "cpuset.cpus")
    assert cpus and read(cpus) == "0", cpus and read(cpus)
    quota = cgfile(name, "cpu", "cpu.cfs_quota_us")
    period = cgfile(name, "cpu", "cpu.cfs_period_us")
    assert quota and period, cgroup_dirs(name)
    assert (read(quota), read(period)) == ("50000", "100000")
    # Inside, a process may run on CPU 0 only.
    out = sh(lxmd, name, "grep Cpus_allowed_list /proc/self/status; nproc").stdout.split()
    assert out == ["Cpus_allowed_list:", "0", "1"], out
    # A busy loop gets half of a CPU: at most about 1 s of CPU time in 2 s (2 s without the
    # quota; less than 1 s on a loaded host, hence the low floor, which only shows it ran).
    usage = cgfile(name, "cpuacct", "cpuacct.usage")
    before = int(read(usage))
    t = time.monotonic()
    sh(lxmd, name, "timeout 2 sh -c 'while :; do :; done'", check=False, timeout=30)
    wall = time.monotonic() - t
    used = (int(read(usage)) - before) / 1e9
    assert wall >= 1.9, "the busy loop ran %.2f s only" % wall
    assert 0.2 <= used <= 1.35, "%.2f s of CPU in %.2f s under limits.cpu.allowance=50%%" % (
        used, wall)


# ---------------------------------------------------------------- state

def test_state_reports_memory_and_processes(lxmd, launched):
    name = launched()

    def listing():
        return sh(lxmd, name, "ps -o pid,comm").stdout.strip().splitlines()[1:]

    # Let the boot scripts (rcS) finish: the same processes twice in a row, no rcS among them.
    seen = []

    def settled():
        seen.append([l for l in listing() if l.split()[1] != "ps"])
        return len(seen) > 1 and seen[-1] == seen[-2] and \
            not any(l.split()[1] == "rcS" for l in seen[-1])

    wait_for(settled, timeout=15, what="the boot to settle (same ps twice, no rcS)")
    ps = listing()
    assert sum(1 for l in ps if l.split()[1] == "ps") == 1, ps
    st = state(lxmd, name)
    # ps listed itself; it has exited since.
    assert st["processes"] == len(ps) - 1, (st["processes"], ps)
    assert st["memory"]["usage"] > 0, st["memory"]
    usage = cgfile(name, "memory", "memory.usage_in_bytes")
    if usage:
        assert abs(st["memory"]["usage"] - int(read(usage))) < 8 * MiB, (st["memory"], read(usage))
    # One more long-lived process shows up in the count.
    sh(lxmd, name, "sleep 300 >/dev/null 2>&1 &")
    wait_for(lambda: state(lxmd, name)["processes"] == len(ps), what="processes to be %d" % len(ps))
    ps2 = sh(lxmd, name, "ps -o pid,comm").stdout.strip().splitlines()[1:]
    assert len(ps2) == len(ps) + 1 and any(l.split()[1] == "sleep" for l in ps2), ps2


# ---------------------------------------------------------------- invalid values

@pytest.mark.parametrize("key,value", [("limits.memory", "-1"), ("limits.cpu", "99"),
                                       ("limits.processes", "abc")])
def test_invalid_limit_refused_without_residue(lxmd, key, value):
    name = unique("bad")
    try:
        r = lxmd.cli("launch", "busybox", name, "-c", "%s=%s" % (key, value), check=False)
        assert r.returncode != 0, "launch with %s=%s succeeded" % (key, value)
        assert key in r.stderr and value in r.stderr, r.stderr
        # Nothing is left: no instance (as LXD, which validates the config before creating
        # anything), no cgroups, no directory, no running process.
        left = lxmd.api("GET", "/1.0/instances/" + name)
        assert cgroup_dirs(name) == [], "cgroups of a refused instance"
        assert left.status == 404, "launch with %s=%s failed but left instance %s behind (%s)" % (
            key, value, name, left.json and left.json.get("metadata", {}).get("status"))
        assert not os.path.exists(os.path.join(lxmd.root, "containers", name))
    finally:
        lxmd.cli("delete", "-f", name, check=False)
        assert cgroup_dirs(name) == []
