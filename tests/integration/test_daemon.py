"""lxmd as a process: start-up checks, the lock, signals, persistence, crash recovery, logging."""

import os
import signal
import sqlite3
import stat
import subprocess
import time

from lxmtest import (assert_error_envelope, assert_sync, copy_for_nobody, lxmd_binary,
                     pid_alive, pids_mentioning, run_as_nobody, unique)


def test_second_daemon_on_same_root_refused(lxmd):
    p = subprocess.run(lxmd.argv(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 1, p
    msg = p.stdout + p.stderr
    assert str(lxmd.pid) in msg or lxmd.root in msg, \
        "the refusal names neither the running daemon's pid nor the root: %r" % msg
    # The first daemon still serves on its socket (the second one did not take it over).
    assert assert_sync(lxmd.api("GET", "/1.0"))["environment"]["server_pid"] == lxmd.pid
    assert os.path.exists(lxmd.socket)


def test_second_daemon_other_socket_same_root_refused(lxmd):
    other = os.path.join(lxmd.base, "other.socket")
    argv = lxmd.argv()
    argv[argv.index("--socket") + 1] = other
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    assert p.returncode == 1, p
    assert not os.path.exists(other)
    assert_sync(lxmd.api("GET", "/1.0"))


def test_non_root_refused(lxmd_factory):
    d = lxmd_factory()
    lxmd = copy_for_nobody(d.lxmd_bin, d.base)
    os.chmod(d.root, 0o777)  # so that only the uid check can refuse
    p = run_as_nobody([lxmd, "--root", d.root, "--socket", d.socket, "--foreground"],
                      env={"PATH": "/usr/bin:/bin"}, timeout=10)
    assert p.returncode == 1, p
    assert "root" in p.stderr.lower(), p.stderr
    assert not os.path.exists(d.socket)
    assert not os.path.exists(os.path.join(d.root, "lxm.db"))


def test_sigterm_exits_zero_and_removes_socket(lxmd):
    pid = lxmd.pid
    # A client connected at that moment must not keep the daemon alive.
    with lxmd.conn() as idle, lxmd.events():
        lxmd.stop_checked()
        assert idle.is_closed()
    assert not os.path.exists(lxmd.socket), "socket left behind after SIGTERM"
    assert not pid_alive(pid)
    assert pids_mentioning(lxmd.base) == []


def check_db(lxmd):
    """lxm.db is a sound sqlite database in WAL mode (read-only look while lxmd runs)."""
    db = os.path.join(lxmd.root, "lxm.db")
    assert os.path.isfile(db)
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def test_database_created_in_wal_mode(lxmd):
    check_db(lxmd)


def test_socket_mode(lxmd):
    st = os.stat(lxmd.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)


def test_restart_keeps_database(lxmd):
    p, inst = unique("p"), unique("c")
    r = lxmd.api("POST", "/1.0/profiles", {"name": p, "description": "survives",
                                           "config": {"user.lxm-it": "1"}})
    assert r.status in (200, 201), r
    lxmd.create_instance(inst, profiles=["default", p])
    old_pid = lxmd.pid
    lxmd.restart()
    assert lxmd.pid != old_pid
    got = assert_sync(lxmd.api("GET", "/1.0/profiles/" + p))
    assert (got["description"], got["config"]) == ("survives", {"user.lxm-it": "1"})
    assert got["used_by"] == ["/1.0/instances/" + inst]
    assert lxmd.instance_names() == [inst]
    i = assert_sync(lxmd.api("GET", "/1.0/instances/" + inst))
    assert i["status"] == "Stopped" and i["profiles"] == ["default", p], i
    # The default profile was not recreated or duplicated.
    assert sorted(assert_sync(lxmd.api("GET", "/1.0/profiles"))) == sorted(
        ["/1.0/profiles/default", "/1.0/profiles/" + p])


def test_kill9_mid_operation_then_restart(lxmd):
    names = [unique("k%d" % i) for i in range(20)]
    with lxmd.conn(timeout=30) as c:
        # Fire all the creations on one connection without waiting, then kill the daemon.
        bodies = [('{"name":"%s","source":{"type":"none"}}' % n).encode() for n in names]
        c.send(b"".join(
            b"POST /1.0/instances HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies))
        c.read_response()  # at least the first one was accepted
        lxmd.kill9()
    assert os.path.exists(lxmd.socket)  # stale: the restart must cope with it
    lxmd.start()
    check_db(lxmd)

    listed = lxmd.instance_names()
    assert set(listed) <= set(names), listed
    assert len(listed) == len(set(listed))
    objs = assert_sync(lxmd.api("GET", "/1.0/instances?recursion=1"))
    assert sorted(o["name"] for o in objs) == listed
    for n in names:
        r = lxmd.api("GET", "/1.0/instances/" + n)
        if n in listed:
            assert r.status == 200 and r.json["metadata"]["status"] == "Stopped", r
        else:
            assert_error_envelope(r, 404)
    # Every listed instance can be deleted and every other name created: no half-made rows.
    for n in names:
        if n in listed:
            lxmd.delete_instance(n)
        else:
            lxmd.create_instance(n)
    assert lxmd.instance_names() == sorted(set(names) - set(listed))
    # Operations of the dead daemon are not reported as running.
    ops = assert_sync(lxmd.api("GET", "/1.0/operations"))
    assert not ops.get("running"), ops


def test_log_file(lxmd):
    assert_sync(lxmd.api("GET", "/1.0"))
    path = os.path.join(lxmd.root, "lxmd.log")
    assert os.path.isfile(path)
    lines = [l for l in lxmd.log_text().splitlines() if l.strip()]
    assert lines, "lxmd.log is empty"


def test_log_level_error_is_quiet(lxmd_factory):
    d = lxmd_factory(log_level="error")
    d.start()
    assert_sync(d.api("GET", "/1.0"))
    assert_error_envelope(d.api("GET", "/1.0/lxm-it-nothing"), 404)
    d.stop_checked()
    assert d.stderr_text().strip() == "", d.stderr_text()


def test_help():
    p = subprocess.run([lxmd_binary(), "--help"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0, p
    assert "--root" in p.stdout and "--socket" in p.stdout, p.stdout


def test_bad_option(lxmd_factory):
    d = lxmd_factory()
    for args in (["--lxm-it-bogus"], ["--root", d.root, "--log-level", "lxm-it-bogus", "--foreground"]):
        p = subprocess.run([lxmd_binary()] + args, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=10)
        assert p.returncode != 0, p
        assert p.stderr.strip(), "no message for %r" % args
    assert not os.path.exists(d.socket)


def test_default_socket_path(lxmd_factory):
    d = lxmd_factory()
    d._stderr = open(d.stderr_path, "ab")
    d.proc = subprocess.Popen([d.lxmd_bin, "--root", d.root, "--log-level", "info", "--foreground"],
                              stdin=subprocess.DEVNULL, stdout=d._stderr, stderr=d._stderr)
    d.wait_ready()  # on root/unix.socket
    assert d.cli("list", "--format", "json").stdout.strip() == "[]"


def test_daemonize(lxmd_factory):
    d = lxmd_factory()
    argv = d.argv()
    argv.remove("--foreground")
    # Output to a file, not a pipe: the daemon may keep its inherited stderr.
    with open(d.stderr_path, "ab") as out:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=15)
    assert p.returncode == 0, d.stderr_text()
    pid = None
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                r = d.api("GET", "/1.0", timeout=2)
                if r.status == 200:
                    pid = r.json["metadata"]["environment"]["server_pid"]
                    break
            except OSError:
                pass
            time.sleep(0.05)
        assert pid, "the daemonized lxmd did not answer:\n" + d.log_text()
        assert pid_alive(pid)
        assert os.getppid() != pid
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(pid), "the daemonized lxmd ignored SIGTERM"
        assert not os.path.exists(d.socket)
    finally:
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
