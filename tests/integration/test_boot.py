"""The boot.* keys: lxmd starts the instances that should autostart when it starts (in
boot.autostart.priority order, waiting boot.autostart.delay after each), and on SIGPWR (the host
shuts down) stops every running instance in boot.stop.priority order, killing those that outlast
boot.host_shutdown_timeout, then exits; the next lxmd start brings back what was running."""

import os
import re
import signal
import shutil
import sqlite3
import time
from datetime import datetime

from lxmtest import assert_sync, cgroup_dirs, descendants, pid_alive, unique, wait_for


def state(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % name))


def status(lxmd, name):
    return state(lxmd, name)["status"]


def config(lxmd, name):
    return assert_sync(lxmd.api("GET", "/1.0/instances/" + name))["config"]


def ppid_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def log_times(lxmd, pattern):
    """The timestamps (datetime) of the lxmd.log lines matching pattern, in order."""
    out = []
    for line in lxmd.log_text().splitlines():
        if re.search(pattern, line):
            out.append(datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ"))
    return out


def log_index(lxmd, text):
    """The line number of the first lxmd.log line containing text (fails when none does)."""
    for i, line in enumerate(lxmd.log_text().splitlines()):
        if text in line:
            return i
    raise AssertionError("no log line contains %r:\n%s" % (text, lxmd.log_text()[-4000:]))


def simulate_reboot(lxmd, names):
    """What a host reboot does to lxmd's containers: lxmd stops (SIGTERM: they keep running),
    then every process of theirs dies, and their cgroups and runtime files are gone."""
    pids = {n: state(lxmd, n)["pid"] for n in names if status(lxmd, n) == "Running"}
    lxmd.stop_checked()
    for name, pid in pids.items():
        assert pid_alive(pid), "%s died with lxmd's SIGTERM" % name
        monitor = ppid_of(pid)
        for p in [monitor] + descendants(monitor):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not pid_alive(pid) and not pid_alive(monitor), 10,
                 "the processes of %s to die" % name)
    for name in names:
        for d in cgroup_dirs(name):
            for sub, _, _ in sorted(os.walk(d), key=lambda w: -w[0].count("/")):
                wait_for(lambda: rmdir(sub), 10, "rmdir " + sub)
        shutil.rmtree(os.path.join(lxmd.root, "run", name), ignore_errors=True)


def rmdir(path):
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def wait_exit(lxmd, timeout):
    """Waits for lxmd to exit on its own; returns its exit code and how long it took."""
    t = time.monotonic()
    rc = lxmd.proc.wait(timeout)
    took = time.monotonic() - t
    lxmd.proc = None
    lxmd._stderr.close()
    return rc, took


def test_autostart_after_host_reboot(lxmd, launched):
    always = launched(unique("always"), {"boot.autostart": "true"})
    never = launched(unique("never"), {"boot.autostart": "false"})
    was_running = launched(unique("running"))
    was_stopped = launched(unique("stopped"))
    lxmd.cli("stop", was_stopped)
    # The last state is recorded as the user sees it.
    assert config(lxmd, was_running)["volatile.last_state.power"] == "RUNNING"
    assert config(lxmd, was_stopped)["volatile.last_state.power"] == "STOPPED"
    # always is stopped by the user too: boot.autostart=true starts it all the same.
    lxmd.cli("stop", always)
    names = [always, never, was_running, was_stopped]
    simulate_reboot(lxmd, names)
    lxmd.start()
    wait_for(lambda: status(lxmd, always) == "Running" and status(lxmd, was_running) == "Running",
             30, "the autostart instances to run")
    assert status(lxmd, never) == "Stopped"
    assert status(lxmd, was_stopped) == "Stopped"
    # What the log tells an operator.
    log = lxmd.log_text()
    assert "autostart: '%s' started" % always in log, log[-3000:]
    assert "autostart: '%s' started" % was_running in log, log[-3000:]
    assert "autostart: starting '%s'" % never not in log
    assert "autostart: starting '%s'" % was_stopped not in log


def test_autostart_order_and_delay(lxmd, launched):
    # Names chosen so that name order and priority order differ.
    first = launched(unique("z-first"), {"boot.autostart": "true",
                                         "boot.autostart.priority": "10",
                                         "boot.autostart.delay": "2"})
    second = launched(unique("m-second"), {"boot.autostart": "true",
                                           "boot.autostart.priority": "5"})
    third = launched(unique("a-third"), {"boot.autostart": "true"})
    for n in (first, second, third):
        lxmd.cli("stop", n)
    # Containers survive lxmd restarts; stopped ones with boot.autostart=true start at each start.
    lxmd.restart()
    wait_for(lambda: all(status(lxmd, n) == "Running" for n in (first, second, third)), 30,
             "the three instances to run")
    t1, t2, t3 = (log_times(lxmd, r"autostart: '%s' started" % n) for n in (first, second, third))
    assert t1 and t2 and t3, lxmd.log_text()[-3000:]
    assert t1[-1] < t2[-1] < t3[-1], (t1, t2, t3)
    gap = (t2[-1] - t1[-1]).total_seconds()
    assert gap >= 1.9, "only %.2f s between the first start and the next (delay 2 s)" % gap
    assert (t3[-1] - t2[-1]).total_seconds() < 1.9, "a delay after an instance that has none"
    # The API answered during the delay: the sequence runs on the loop.
    assert log_index(lxmd, "autostart: waiting 2 s") < log_index(lxmd, "autostart: '%s' started"
                                                                % second)


def test_bad_boot_values(lxmd, launched):
    """A bad value is refused when set, naming the key; one that reached the database anyway (an
    older lxmd, a hand edit) keeps only its instance from starting, with the cause in the log."""
    bad = launched(unique("bad"), {"boot.autostart": "true"})
    good = launched(unique("good"), {"boot.autostart": "true"})
    # One that cannot start at all (no init): its failure is logged, the others start.
    empty = unique("empty")
    lxmd.cli("init", "--empty", empty, "-c", "boot.autostart=true", "-c",
             "boot.autostart.priority=100")
    for key, value in (("boot.autostart", "yes"), ("boot.autostart.delay", "-1"),
                       ("boot.host_shutdown_timeout", "soon"), ("boot.stop.priority", "1.5")):
        r = lxmd.cli("config", "set", bad, "%s=%s" % (key, value), check=False)
        assert r.returncode != 0 and key in r.stderr, (key, r.stderr)
    for n in (bad, good):
        lxmd.cli("stop", n)
    lxmd.stop_checked()
    db = sqlite3.connect(os.path.join(lxmd.root, "lxm.db"))
    with db:
        db.execute("INSERT INTO instances_config (instance_id, key, value) SELECT id, ?, ? "
                   "FROM instances WHERE name = ?", ("boot.autostart.priority", "high", bad))
    db.close()
    lxmd.start()
    wait_for(lambda: status(lxmd, good) == "Running", 30, "the good instance to run")
    assert status(lxmd, bad) == "Stopped"
    log = lxmd.log_text()
    assert re.search(r"autostart: not starting '%s': .*boot\.autostart\.priority.*high"
                     % re.escape(bad), log), log[-3000:]
    assert re.search(r"autostart: start '%s': .*no /sbin/init" % re.escape(empty), log), \
        log[-3000:]
    assert log_index(lxmd, "autostart: start '%s'" % empty) < \
        log_index(lxmd, "autostart: '%s' started" % good)
    lxmd.cli("delete", empty)


def test_sigpwr_stops_in_order_kills_stragglers_and_comes_back(lxmd, launched):
    high = launched(unique("high"), {"boot.stop.priority": "10"})
    # busybox init reloads its inittab on SIGHUP instead of halting: only the kill stops it.
    stubborn = launched(unique("stubborn"), {"boot.stop.priority": "5",
                                            "boot.stop.signal": "SIGHUP",
                                            "boot.host_shutdown_timeout": "3"})
    low = launched(unique("low"))
    never = launched(unique("never"), {"boot.autostart": "false"})
    stopped = launched(unique("stopped"))
    lxmd.cli("stop", stopped)
    running = [high, stubborn, low, never]
    pids = {n: state(lxmd, n)["pid"] for n in running}

    lxmd.proc.send_signal(signal.SIGPWR)
    rc, took = wait_exit(lxmd, 60)
    assert rc == 0, lxmd.stderr_text()[-4000:]
    for n, pid in pids.items():
        assert not pid_alive(pid), "%s still runs after the host shutdown" % n
        assert cgroup_dirs(n) == [], "cgroups of %s left behind" % n
    # The stubborn one was given its timeout, then killed.
    assert took >= 3, "lxmd exited %.1f s after SIGPWR; the stubborn instance had 3 s" % took
    assert took < 30, "lxmd took %.1f s: the 3 s timeout was not applied" % took
    with open(os.path.join(lxmd.root, "logs", stubborn, "monitor.log")) as f:
        assert "SIGKILL" in f.read()
    # Groups in boot.stop.priority order, each after the previous one ended.
    i_high = log_index(lxmd, "host shutdown: '%s' stopped" % high)
    i_stub_begin = log_index(lxmd, "host shutdown: stopping '%s'" % stubborn)
    i_stub = log_index(lxmd, "host shutdown: '%s' stopped" % stubborn)
    i_low_begin = log_index(lxmd, "host shutdown: stopping '%s'" % low)
    assert i_high < i_stub_begin < i_stub < i_low_begin
    assert "host shutdown: stopping '%s'" % stopped not in lxmd.log_text()
    assert "every instance is stopped; lxmd exits" in lxmd.log_text()

    # After the "boot": what ran comes back, unless boot.autostart=false.
    lxmd.start()
    wait_for(lambda: all(status(lxmd, n) == "Running" for n in (high, stubborn, low)), 30,
             "the instances that ran to run again")
    assert status(lxmd, never) == "Stopped"
    assert status(lxmd, stopped) == "Stopped"
    # The container with the stubborn init still stops on a user's forced stop.
    lxmd.cli("stop", "--force", stubborn)


def test_sigterm_keeps_containers_running(lxmd, launched):
    name = launched(unique("c"))
    pid = state(lxmd, name)["pid"]
    lxmd.restart()
    assert pid_alive(pid)
    assert status(lxmd, name) == "Running"
    assert "host shutdown" not in lxmd.log_text()
