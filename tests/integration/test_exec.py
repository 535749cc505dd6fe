"""exec: `lxm exec` and LXD's exec websocket protocol against busybox containers.

Each test launches its own busybox container in a private lxmd (nothing is skipped: a launch that
fails fails the test) and deletes it at the end, checking that no cgroup is left behind.
"""

import hashlib
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
import fcntl

import pytest

from lxmtest import (assert_async, assert_error_envelope, assert_sync, cgroup_dirs,
                     check_slow_reader_backpressure, reaped, unique, ws_close, ws_connect)


@pytest.fixture
def c1(lxmd):
    """A running busybox container; force-deleted (and checked for residue) at the end."""
    name = unique("x")
    lxmd.cli("launch", "busybox", name, timeout=120)
    yield name
    lxmd.cli("delete", "-f", name, check=False)
    assert cgroup_dirs(name) == [], "cgroups of %s left behind" % name


def lxm(lxmd, *args, input=b"", timeout=60):
    """The CLI with bytes in and out (lxmd.cli() is text-only)."""
    return subprocess.run([lxmd.lxm_bin] + [str(a) for a in args], env=lxmd.cli_env(),
                          input=input, capture_output=True, timeout=timeout)


# ---------------------------------------------------------------- raw protocol helpers

def ws_read_stream(ws, timeout=15):
    """BINARY payloads until the barrier (an empty TEXT message); returns (data, ended_by)."""
    import websocket

    out = b""
    ws.settimeout(timeout)
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_BINARY:
            out += data
        elif opcode == websocket.ABNF.OPCODE_TEXT:
            assert data == b"", "a TEXT message that is not a barrier: %r" % data
            return out, "barrier"
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            return out, "close"


def post_exec(lxmd, name, command, **kw):
    body = {"command": command, "environment": {}, "wait-for-websocket": True,
            "interactive": False}
    body.update(kw)
    return lxmd.api("POST", "/1.0/instances/%s/exec" % name, body)


def upgrade_request(path):
    return ("GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % path).encode()


# ---------------------------------------------------------------- the CLI

def test_exit_codes(lxmd, c1):
    assert lxm(lxmd, "exec", c1, "--", "true").returncode == 0
    assert lxm(lxmd, "exec", c1, "--", "sh", "-c", "exit 1").returncode == 1
    assert lxm(lxmd, "exec", c1, "--", "sh", "-c", "exit 42").returncode == 42
    p = lxm(lxmd, "exec", c1, "--", "/no/such/command")
    assert p.returncode == 127, p
    assert b"/no/such/command" in p.stderr, p.stderr
    p = lxm(lxmd, "exec", c1, "--", "/etc/passwd")
    assert p.returncode == 126, p
    # Death by a signal is 128 + N.
    p = lxm(lxmd, "exec", c1, "--", "sh", "-c", "kill -9 $$")
    assert p.returncode == 128 + 9, p


def test_stdout_and_stderr_are_separate(lxmd, c1):
    p = lxm(lxmd, "exec", c1, "--", "sh", "-c",
            "echo out1; echo err1 >&2; echo out2; echo err2 >&2")
    assert p.returncode == 0, p
    assert p.stdout == b"out1\nout2\n"
    assert p.stderr == b"err1\nerr2\n"


def test_stdin_round_trip_10mb(lxmd, c1):
    data = os.urandom(10 * 1024 * 1024)
    want = hashlib.sha256(data).hexdigest()
    p = lxm(lxmd, "exec", c1, "--", "cat", input=data, timeout=120)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout) == len(data)
    assert hashlib.sha256(p.stdout).hexdigest() == want
    # The container sees exactly those bytes too.
    p = lxm(lxmd, "exec", c1, "--", "sha256sum", input=data, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0].decode() == want


def test_env_cwd_user(lxmd, c1):
    p = lxm(lxmd, "exec", c1, "--env", "FOO=bar baz", "--env", "LANG=C", "--",
            "sh", "-c", 'echo "$FOO|$HOME|$USER|$LANG|$PATH"; pwd')
    assert p.returncode == 0, p
    lines = p.stdout.decode().splitlines()
    assert lines[0] == "bar baz|/root|root|C|" \
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", lines
    assert lines[1] in ("/root", "/"), lines
    p = lxm(lxmd, "exec", c1, "--cwd", "/tmp", "--", "pwd")
    assert p.stdout == b"/tmp\n", p
    p = lxm(lxmd, "exec", c1, "--user", "1000", "--group", "1001", "--", "id")
    assert p.returncode == 0, p
    assert p.stdout.startswith(b"uid=1000"), p.stdout
    assert b"gid=1001" in p.stdout, p.stdout
    # A working directory that does not exist fails the operation, with its name.
    p = lxm(lxmd, "exec", c1, "--cwd", "/no/such/dir", "--", "pwd")
    assert p.returncode != 0
    assert b"/no/such/dir" in p.stderr, p.stderr


def test_command_runs_inside_the_container(lxmd, c1):
    p = lxm(lxmd, "exec", c1, "--", "hostname")
    assert p.stdout.decode().strip() == c1
    # PID 1 of its pid namespace is the container's init, not a host process.
    p = lxm(lxmd, "exec", c1, "--", "cat", "/proc/1/comm")
    assert p.stdout.strip() == b"init", p
    p = lxm(lxmd, "exec", c1, "--", "sh", "-c", "cat /proc/self/uid_map")
    fields = p.stdout.split()
    assert fields[0] == b"0" and int(fields[1]) >= 65536, p.stdout


def test_interactive_under_a_pty(lxmd, c1):
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.clear()
        os.environ.update(lxmd.cli_env())
        os.environ["TERM"] = "xterm"
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 111, 0, 0))
            os.execv(lxmd.lxm_bin, [lxmd.lxm_bin, "exec", "-t", c1, "--",
                                    "sh", "-c", "tty; stty size; echo TERM=$TERM"])
        finally:
            os._exit(99)
    out = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = out.decode(errors="replace")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, text)
    assert "/dev/pts/" in text, text
    assert "37 111" in text, text
    assert "TERM=xterm" in text, text


def test_session_ends_with_the_command_despite_background_children(lxmd, c1):
    t = time.monotonic()
    p = lxm(lxmd, "exec", c1, "--", "sh", "-c", "sleep 60 & echo hi", timeout=30)
    elapsed = time.monotonic() - t
    assert p.returncode == 0, p
    assert p.stdout == b"hi\n"
    assert elapsed < 2.5, "exec took %.1f s: the background sleep held the session" % elapsed


def test_signals_are_forwarded(lxmd, c1):
    proc = subprocess.Popen([lxmd.lxm_bin, "exec", c1, "--", "sh", "-c",
                             'trap "echo got-term; exit 42" TERM; echo ready; '
                             'while :; do sleep 0.1; done'],
                            env=lxmd.cli_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with reaped(proc):
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 42, (out, err)
    assert b"got-term" in out


def test_exec_in_a_stopped_instance(lxmd):
    name = unique("s")
    lxmd.create_instance(name)
    try:
        r = post_exec(lxmd, name, ["true"])
        msg = assert_error_envelope(r, 400)
        assert "not running" in msg, msg
        p = lxm(lxmd, "exec", name, "--", "true")
        assert p.returncode == 1
        assert p.stderr.decode().strip() == \
            "Error: exec in '%s': instance is not running" % name, p.stderr
    finally:
        lxmd.delete_instance(name)
    r = post_exec(lxmd, "nosuch", ["true"])
    assert_error_envelope(r, 404)


def test_request_validation(lxmd, c1):
    for body, field in (({}, "command"), ({"command": []}, "command"),
                        ({"command": "ls"}, "command"), ({"command": ["ls", 1]}, "command"),
                        ({"command": ["ls"], "environment": {"A": 1}}, "environment"),
                        ({"command": ["ls"], "user": -1}, "user"),
                        ({"command": ["ls"], "cwd": "relative"}, "cwd")):
        r = lxmd.api("POST", "/1.0/instances/%s/exec" % c1, body)
        msg = assert_error_envelope(r, 400)
        assert field in msg, (body, msg)


# ---------------------------------------------------------------- the websocket protocol

def test_raw_protocol_barriers_and_return(lxmd, c1):
    with lxmd.events(types=["operation"]) as events:
        r = post_exec(lxmd, c1, ["sh", "-c", "cat; echo to-stderr >&2; exit 7"])
        op = assert_async(r)
        assert op["class"] == "websocket"
        md = op["metadata"]
        fds = md["fds"]
        assert set(fds) == {"0", "1", "2", "control"}, fds
        for s in fds.values():
            assert len(s) == 64 and all(c in "0123456789abcdef" for c in s), s
        assert md["command"] == ["sh", "-c", "cat; echo to-stderr >&2; exit 7"]
        assert md["interactive"] is False
        control = ws_connect(lxmd, op["id"], fds["control"])
        ws = {k: ws_connect(lxmd, op["id"], fds[k]) for k in ("0", "1", "2")}
        ws["0"].send_binary(b"hello ")
        ws["0"].send_binary(b"world\n")
        ws["0"].send("")  # the stdin barrier
        out, how_out = ws_read_stream(ws["1"])
        err, how_err = ws_read_stream(ws["2"])
        assert (out, how_out) == (b"hello world\n", "barrier")
        assert (err, how_err) == (b"to-stderr\n", "barrier")
        # After the barriers, the operation has its result (LXD's order), in /wait ...
        done = lxmd.wait_op(op["id"])
        assert done["status"] == "Success", done
        assert done["metadata"]["return"] == 7, done
        # ... and in the final event.
        ev = events.wait_for(lambda e: e["metadata"]["id"] == op["id"]
                             and e["metadata"]["status_code"] >= 200)
        assert ev["metadata"]["metadata"]["return"] == 7, ev
        for w in list(ws.values()) + [control]:
            ws_close(w)


def test_raw_protocol_return_before_any_client_reads(lxmd, c1):
    """pylxd's way: connect 0, 1, 2 (no control) and poll the operation for 'return'."""
    op = assert_async(post_exec(lxmd, c1, ["sh", "-c", "echo x; exit 3"]))
    fds = op["metadata"]["fds"]
    ws = {k: ws_connect(lxmd, op["id"], fds[k]) for k in ("0", "1", "2")}
    ws["0"].send("")
    assert ws_read_stream(ws["1"]) == (b"x\n", "barrier")
    deadline = time.monotonic() + 10
    while True:
        cur = assert_sync(lxmd.api("GET", "/1.0/operations/" + op["id"]))
        if "return" in (cur["metadata"] or {}):
            break
        assert time.monotonic() < deadline, cur
        time.sleep(0.1)
    assert cur["metadata"]["return"] == 3
    for w in ws.values():
        ws_close(w)


def test_wrong_secret_and_second_connection(lxmd, c1):
    op = assert_async(post_exec(lxmd, c1, ["true"]))
    fds = op["metadata"]["fds"]
    path = "/1.0/operations/%s/websocket?secret=%s" % (op["id"], "0" * 64)
    with lxmd.conn() as c:
        c.send(upgrade_request(path))
        assert_error_envelope(c.read_response(), 403)
    first = ws_connect(lxmd, op["id"], fds["control"])
    with lxmd.conn() as c:
        c.send(upgrade_request("/1.0/operations/%s/websocket?secret=%s"
                               % (op["id"], fds["control"])))
        assert_error_envelope(c.read_response(), 400)
    with lxmd.conn() as c:
        c.send(upgrade_request("/1.0/operations/%s/websocket?secret=%s"
                               % ("00000000-0000-0000-0000-000000000000", fds["0"])))
        assert_error_envelope(c.read_response(), 404)
    ws_close(first)


def test_closing_control_kills_the_command(lxmd, c1):
    op = assert_async(post_exec(lxmd, c1, ["sleep", "60"]))
    fds = op["metadata"]["fds"]
    control = ws_connect(lxmd, op["id"], fds["control"])
    ws = {k: ws_connect(lxmd, op["id"], fds[k]) for k in ("0", "1", "2")}
    time.sleep(0.3)
    t = time.monotonic()
    ws_close(control)
    done = lxmd.wait_op(op["id"], timeout=10)
    assert time.monotonic() - t < 5
    assert done["metadata"]["return"] == 128 + 9, done
    for w in ws.values():
        ws_close(w)


def test_timeout_waiting_for_websockets(lxmd, c1):
    op = assert_async(post_exec(lxmd, c1, ["true"]))
    t = time.monotonic()
    done = lxmd.wait_op(op["id"], timeout=15)
    assert 4 < time.monotonic() - t < 10
    assert done["status"] == "Failure", done
    assert done["err"] == "Timed out waiting for websockets to connect", done


def test_without_websockets(lxmd, c1):
    r = post_exec(lxmd, c1, ["sh", "-c", "echo discarded; exit 5"], **{"wait-for-websocket": False})
    op = assert_async(r)
    done = lxmd.wait_op(op["id"])
    assert done["status"] == "Success", done
    assert done["metadata"]["return"] == 5, done


def test_command_not_found_operation(lxmd, c1):
    op = assert_async(post_exec(lxmd, c1, ["no-such-command"], **{"wait-for-websocket": False}))
    done = lxmd.wait_op(op["id"])
    assert done["status"] == "Failure", done
    assert done["err"] == "Command not found", done
    assert done["metadata"]["return"] == 127, done


def test_interactive_protocol_and_resize(lxmd, c1):
    r = post_exec(lxmd, c1, ["sh", "-c", "sleep 0.5; stty size; tty"], interactive=True,
                  width=80, height=24, environment={"TERM": "xterm"})
    op = assert_async(r)
    fds = op["metadata"]["fds"]
    assert set(fds) == {"0", "control"}, fds
    ws0 = ws_connect(lxmd, op["id"], fds["0"])
    control = ws_connect(lxmd, op["id"], fds["control"])
    control.send(json.dumps({"command": "window-resize",
                             "args": {"width": "132", "height": "50"}}) + "\n")
    out, how = ws_read_stream(ws0)
    assert how == "barrier"
    text = out.decode(errors="replace")
    assert "50 132" in text, text
    assert "/dev/pts/" in text, text
    done = lxmd.wait_op(op["id"])
    assert done["metadata"]["return"] == 0, done
    ws_close(ws0)
    ws_close(control)


def test_signal_through_control(lxmd, c1):
    op = assert_async(post_exec(lxmd, c1, ["sh", "-c",
                                           'trap "exit 9" USR1; echo ready; '
                                           'while :; do sleep 0.1; done']))
    fds = op["metadata"]["fds"]
    control = ws_connect(lxmd, op["id"], fds["control"])
    ws = {k: ws_connect(lxmd, op["id"], fds[k]) for k in ("0", "1", "2")}
    ws["1"].settimeout(10)
    import websocket
    opcode, data = ws["1"].recv_data()
    assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY, b"ready\n")
    control.send(json.dumps({"command": "signal", "args": None, "signal": 10}) + "\n")
    done = lxmd.wait_op(op["id"], timeout=10)
    assert done["metadata"]["return"] == 9, done
    for w in list(ws.values()) + [control]:
        ws_close(w)


def test_slow_reader_backpressure(lxmd, c1):
    """Output waits in the command's pipe, not in lxmd, while the client does not read."""
    check_slow_reader_backpressure(lxmd, c1, timeout=60)


def test_helper_forwards_signals(lxmd, c1):
    proc = subprocess.Popen([lxmd.lxm_bin, "exec", c1, "--", "sh", "-c",
                             'trap "exit 21" HUP; echo ready; while :; do sleep 0.1; done'],
                            env=lxmd.cli_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        helpers = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read().split(b"\0")
            except (OSError, ValueError):
                continue
            if ppid == lxmd.pid and len(cmd) > 1 and cmd[1] == b"exec":
                helpers.append(int(d))
        assert len(helpers) == 1, helpers
        os.kill(helpers[0], signal.SIGHUP)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 21, (out, err)


def test_cancel_kills_the_command(lxmd, c1):
    op = assert_async(post_exec(lxmd, c1, ["sleep", "60"], **{"wait-for-websocket": False}))
    time.sleep(0.3)
    assert_sync(lxmd.api("DELETE", "/1.0/operations/" + op["id"]))
    done = lxmd.wait_op(op["id"], timeout=10)
    assert done["status"] == "Cancelled", done
    assert done["metadata"]["return"] == 128 + 9, done


def test_lxmd_stop_ends_running_sessions(lxmd, c1):
    proc = subprocess.Popen([lxmd.lxm_bin, "exec", c1, "--", "sh", "-c", "echo ready; sleep 60"],
                            env=lxmd.cli_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        t = time.monotonic()
        lxmd.stop_checked(10)
        assert time.monotonic() - t < 5, "lxmd waited for the exec session to end on its own"
        proc.communicate(timeout=10)
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The container outlives lxmd; the next lxmd finds it and can exec in it again.
    lxmd.start()
    assert lxm(lxmd, "exec", c1, "--", "true").returncode == 0


def test_instance_environment_config(lxmd, c1):
    lxmd.cli("config", "set", c1, "environment.FROM_CONFIG", "cfg")
    lxmd.cli("config", "set", c1, "environment.BOTH", "cfg")
    p = lxm(lxmd, "exec", c1, "--env", "BOTH=request", "--", "sh", "-c",
            'echo "$FROM_CONFIG $BOTH"')
    assert p.returncode == 0, p
    assert p.stdout == b"cfg request\n", p


def test_exec_in_a_frozen_instance(lxmd, c1):
    lxmd.cli("pause", c1)
    try:
        r = post_exec(lxmd, c1, ["true"])
        msg = assert_error_envelope(r, 400)
        assert "frozen" in msg, msg
    finally:
        lxmd.cli("start", c1)
    assert lxm(lxmd, "exec", c1, "--", "true").returncode == 0


def test_stdin_sent_before_the_command_starts(lxmd, c1):
    """lxc sends stdin (and its barrier) on "0" as soon as that socket is up, before "1" and
    "2" are connected and the command runs: none of it may be lost."""
    op = assert_async(post_exec(lxmd, c1, ["cat"]))
    fds = op["metadata"]["fds"]
    control = ws_connect(lxmd, op["id"], fds["control"])
    w0 = ws_connect(lxmd, op["id"], fds["0"])
    w0.send_binary(b"early\n")
    w0.send("")
    time.sleep(0.2)
    w1 = ws_connect(lxmd, op["id"], fds["1"])
    w2 = ws_connect(lxmd, op["id"], fds["2"])
    assert ws_read_stream(w1) == (b"early\n", "barrier")
    assert ws_read_stream(w2) == (b"", "barrier")
    done = lxmd.wait_op(op["id"])
    assert done["metadata"]["return"] == 0, done
    for w in (control, w0, w1, w2):
        ws_close(w)
