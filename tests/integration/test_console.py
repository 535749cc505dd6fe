"""console: the monitor's console ops, LXD's console API (POST .../console and its websockets,
GET/DELETE of the console log) and `lxm console`, against busybox containers.

The monitor tests run lxm-monitor by hand (test_monitor's make_container: a shell as init, reading
the console); the others launch the busybox image in a private lxmd, whose inittab runs a shell on
the console. Every test removes what it made (containers force-deleted, cgroups checked).
"""

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

import lxmtest
from lxmtest import assert_async, assert_error_envelope, assert_sync, wait_for, ws_close, ws_connect
from test_monitor import make_container  # noqa: F401 (a fixture)

# The shell on the console computes the marker, so that the echo of the typed line (which has
# "$((6*7))" in it) never counts as the answer.
HELLO = "echo hello-console-$((6*7))\n"
HELLO_OUT = "hello-console-42"


# ---------------------------------------------------------------- the monitor's ops

SHELL_INIT = ["/bin/busybox", "sh"]


def attach_monitor(c):
    """A console client on the monitor's control socket, past its {"ok":true} line."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(c.socket)
    s.sendall(b'{"op":"console"}\n')
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, "the monitor closed the console connection: %r" % buf
        buf += chunk
    line, rest = buf.split(b"\n", 1)
    assert json.loads(line) == {"ok": True}, line
    return s, rest


def read_until(s, text, buf=b"", timeout=15):
    deadline = time.monotonic() + timeout
    while text.encode() not in buf:
        left = deadline - time.monotonic()
        assert left > 0, "%r not seen within %ss; got %r" % (text, timeout, buf[-2000:])
        s.settimeout(left)
        chunk = s.recv(65536)
        assert chunk, "connection closed before %r; got %r" % (text, buf[-2000:])
        buf += chunk
    return buf


def kill_and_wait(c):
    assert c.request({"op": "kill"}) == {"ok": True}
    c.wait_monitor_exit()


def test_monitor_console_attach_type_and_detach(make_container):
    c = make_container(init=SHELL_INIT)
    c.start()
    s, rest = attach_monitor(c)
    try:
        s.sendall(HELLO.encode())
        read_until(s, HELLO_OUT, rest)
        # One client at a time; the first one is untouched by the refusal.
        assert c.request({"op": "console"}) == {"error": "console already attached"}
        s.sendall(b"echo still-$((1+1))\n")
        read_until(s, "still-2")
    finally:
        s.close()
    # Output also went to the log, as always.
    c.wait_console(HELLO_OUT)
    # Detached on close: the next client gets the console (once the monitor saw the close).
    s2 = wait_for(lambda: _try_attach(c), what="the console to be free again")
    s2.close()
    assert "console attached" in c.monitor_log() and "console detached" in c.monitor_log()
    kill_and_wait(c)


def _try_attach(c):
    try:
        s, _ = attach_monitor(c)
        return s
    except AssertionError:
        return None


def test_monitor_console_resize(make_container):
    c = make_container(init=SHELL_INIT)
    c.start()
    assert c.request({"op": "console-resize", "width": 111, "height": 37}) == {"ok": True}
    for bad in ({"width": 0, "height": 10}, {"width": 70000, "height": 10}, {"width": "80"},
                {}):
        r = c.request(dict(op="console-resize", **bad))
        assert "'width' and 'height'" in r.get("error", ""), (bad, r)
    s, rest = attach_monitor(c)
    try:
        s.sendall(b"stty size\n")
        read_until(s, "37 111", rest)
    finally:
        s.close()
    kill_and_wait(c)


def test_monitor_slow_console_client_is_dropped(make_container):
    """A client that reads nothing must not stall the monitor: it is dropped past 1 MiB."""
    c = make_container(init=SHELL_INIT, console_log_max=4 << 20)
    c.start()
    s, _ = attach_monitor(c)
    try:
        line = "x" * 100
        s.sendall(("i=0; while [ $i -lt 30000 ]; do echo %s; i=$((i+1)); done; "
                   "echo flood-$((2*3))-done\n" % line).encode())
        # The container's output keeps flowing into the log although the client never reads.
        c.wait_console("flood-6-done", timeout=60)
        assert "reads too slowly" in c.monitor_log(), c.monitor_log()[-2000:]
        # The loop never waited for the client: the control socket answers at once.
        t0 = time.monotonic()
        assert c.request({"op": "status"})["status"] == "Running"
        assert time.monotonic() - t0 < 1
        # What the client gets ends with EOF: it was dropped.
        s.settimeout(10)
        got = 0
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        assert 0 < got < 3_000_000, got
    finally:
        s.close()
    s2 = wait_for(lambda: _try_attach(c), what="the console to be free again")
    s2.close()
    kill_and_wait(c)


def test_monitor_console_log_clear(make_container):
    c = make_container(init=SHELL_INIT)
    c.start()
    s, rest = attach_monitor(c)
    try:
        s.sendall(b"echo before-$((1+2))\n")
        read_until(s, "before-3", rest)
        c.wait_console("before-3")
        assert c.request({"op": "console-log-clear"}) == {"ok": True}
        assert os.path.getsize(c.spec["console_log"]) == 0
        s.sendall(b"echo after-$((2+2))\n")
        read_until(s, "after-4")
        c.wait_console("after-4")
        with open(c.spec["console_log"], "rb") as f:
            data = f.read()
        # Written from the start again: no hole of NULs where the old output was.
        assert b"\0" not in data and b"before-3" not in data, data[:200]
    finally:
        s.close()
    kill_and_wait(c)


# ---------------------------------------------------------------- the API

def ws_read_until(ws, text, buf=b"", timeout=20):
    """BINARY console output until text appears."""
    import websocket

    deadline = time.monotonic() + timeout
    while text.encode() not in buf:
        left = deadline - time.monotonic()
        assert left > 0, "%r not on the console within %ss; got %r" % (text, timeout,
                                                                       buf[-2000:])
        ws.settimeout(left)
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise AssertionError("console closed before %r; got %r" % (text, buf[-2000:]))
        assert opcode == websocket.ABNF.OPCODE_BINARY, (opcode, data)
        buf += data
    return buf


def shell_ready(data):
    """Waits for the console shell's prompt. A fresh container may still be booting: what is
    typed before its shell runs can be lost, so Enter asks for a prompt (a shell that is up
    prints a new one; one that is not yet prints it when it starts)."""
    data.send_binary(b"\n")
    return ws_read_until(data, "# ", timeout=30)


def post_console(lxmd, name, **body):
    req = {"width": 80, "height": 24, "type": "console"}
    req.update(body)
    return lxmd.api("POST", "/1.0/instances/%s/console" % name, req)


def open_console(lxmd, name, **body):
    """POST console, then the websockets in lxc's order: control, then 0."""
    op = assert_async(post_console(lxmd, name, **body))
    assert op["class"] == "websocket", op
    fds = op["metadata"]["fds"]
    assert set(fds) == {"0", "control"}, fds
    control = ws_connect(lxmd, op["id"], fds["control"])
    data = ws_connect(lxmd, op["id"], fds["0"])
    return op, data, control


def console_log(lxmd, name):
    r = lxmd.api("GET", "/1.0/instances/%s/console" % name)
    assert r.status == 200, r
    assert r.headers.get("Content-Type", "").startswith("text/plain"), dict(r.headers)
    return r.raw.decode(errors="replace")


def test_console_api_round_trip_resize_and_log(lxmd, launched):
    name = launched()
    op, data, control = open_console(lxmd, name)
    try:
        shell_ready(data)
        data.send_binary(HELLO.encode())
        ws_read_until(data, HELLO_OUT)
        control.send(json.dumps({"command": "window-resize",
                                 "args": {"width": "132", "height": "50"}}) + "\n")
        # The resize goes through the thread pool: ask until the shell sees it.
        deadline = time.monotonic() + 10
        while True:
            data.send_binary(b"stty size\n")
            try:
                ws_read_until(data, "50 132", timeout=1)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "the window size never changed"
        # The operation runs while the client is attached.
        st = assert_sync(lxmd.api("GET", "/1.0/operations/" + op["id"]))
        assert st["status"] == "Running", st
    finally:
        ws_close(data)
        ws_close(control)
    # Disconnecting ends the operation, successfully.
    done = lxmd.wait_op(op["id"])
    assert done["status"] == "Success", done
    # The output is in the log, for the API and for lxm console --show-log.
    assert HELLO_OUT in console_log(lxmd, name)
    p = lxmd.cli("console", name, "--show-log")
    assert HELLO_OUT in p.stdout, p.stdout
    # A websocket of a finished session cannot be connected any more.
    import websocket
    with pytest.raises(websocket.WebSocketBadStatusException):
        ws_connect(lxmd, op["id"], op["metadata"]["fds"]["0"])


def test_console_is_exclusive_and_freed_on_disconnect(lxmd, launched):
    name = launched()
    op, data, control = open_console(lxmd, name)
    try:
        msg = assert_error_envelope(post_console(lxmd, name), 400)
        assert "console already attached" in msg, msg
    finally:
        ws_close(data)
        ws_close(control)
    lxmd.wait_op(op["id"])
    # Free again: a new session works.
    op2, data2, control2 = open_console(lxmd, name)
    try:
        shell_ready(data2)
        data2.send_binary(b"echo again-$((3*3))\n")
        ws_read_until(data2, "again-9")
    finally:
        ws_close(data2)
        ws_close(control2)
    assert lxmd.wait_op(op2["id"])["status"] == "Success"


def test_console_unused_session_times_out_and_cancel(lxmd, launched):
    name = launched()
    op = assert_async(post_console(lxmd, name))
    done = lxmd.wait_op(op["id"], timeout=20)
    assert done["status"] == "Failure" and "Timed out" in done["err"], done
    # The monitor's console was given back.
    op = assert_async(post_console(lxmd, name))
    assert_sync(lxmd.api("DELETE", "/1.0/operations/" + op["id"]))
    done = lxmd.wait_op(op["id"])
    assert done["status"] == "Cancelled", done
    op, data, control = open_console(lxmd, name)
    ws_close(data)
    ws_close(control)
    lxmd.wait_op(op["id"])


def test_console_errors(lxmd, launched):
    name = launched()
    for body, field in (({"width": -1}, "width"), ({"height": "24"}, "height"),
                        ({"type": "vga"}, "type")):
        msg = assert_error_envelope(post_console(lxmd, name, **body), 400)
        assert field in msg, (body, msg)
    assert_error_envelope(post_console(lxmd, "no-such-instance"), 404)
    assert_error_envelope(lxmd.api("GET", "/1.0/instances/no-such-instance/console"), 404)
    assert_error_envelope(lxmd.api("DELETE", "/1.0/instances/no-such-instance/console"), 404)
    # A stopped instance has no console to attach to.
    lxmd.cli("stop", "--force", name)
    msg = assert_error_envelope(post_console(lxmd, name), 400)
    assert msg == "console of '%s': instance is not running" % name, msg
    p = lxmd.cli("console", name, check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == "Error: console of '%s': instance is not running" % name, p.stderr
    p = lxmd.cli("console", check=False)
    assert p.returncode != 0 and "NAME" in p.stderr, p.stderr


def test_console_log_survives_stop_and_can_be_cleared(lxmd, launched):
    name = launched()
    op, data, control = open_console(lxmd, name)
    try:
        shell_ready(data)
        data.send_binary(HELLO.encode())
        ws_read_until(data, HELLO_OUT)
        # The instance stopping ends the session from the server's side.
        lxmd.cli("stop", "--force", name)
        import websocket
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline, "the console stayed open after the stop"
            data.settimeout(deadline - time.monotonic())
            try:
                opcode, _ = data.recv_data()
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
    finally:
        ws_close(data)
        ws_close(control)
    assert lxmd.wait_op(op["id"])["status"] == "Success"
    assert HELLO_OUT in console_log(lxmd, name)
    assert HELLO_OUT in lxmd.cli("console", name, "--show-log").stdout
    # DELETE empties it, stopped...
    assert_sync(lxmd.api("DELETE", "/1.0/instances/%s/console" % name))
    assert console_log(lxmd, name) == ""
    # ...and running, through the monitor (the log keeps growing from the start, no hole).
    lxmd.cli("start", name)
    wait_for(lambda: console_log(lxmd, name), what="boot output in the console log")
    assert_sync(lxmd.api("DELETE", "/1.0/instances/%s/console" % name))
    op, data, control = open_console(lxmd, name)
    try:
        shell_ready(data)
        data.send_binary(b"echo fresh-$((5*5))\n")
        ws_read_until(data, "fresh-25")
    finally:
        ws_close(data)
        ws_close(control)
    lxmd.wait_op(op["id"])
    log = wait_for(lambda: "fresh-25" in console_log(lxmd, name) and console_log(lxmd, name),
                   what="fresh-25 in the log")
    assert "\0" not in log and HELLO_OUT not in log, log[:300]


def run_cli_under_pty(lxmd, args, steps, timeout=30, argv0=None, env=None, retry_enter=False):
    """Runs lxm (or argv0) under a pty of 101x33 (lxmtest.run_under_pty); steps is a list of
    (text to wait for, bytes to type then)."""
    env = dict(env or lxmd.cli_env(), TERM="xterm")
    return lxmtest.run_under_pty([argv0 or lxmd.lxm_bin] + list(args), steps, env,
                                 timeout=timeout, retry_enter=retry_enter)


def test_cli_attach_type_and_detach(lxmd, launched):
    name = launched()
    # Enter first: the prompt it brings back says the shell is there to read (see shell_ready).
    status, text = run_cli_under_pty(lxmd, ["console", name], [
        ("To detach from the console, press: <ctrl>+a q", b"\r"),
        ("# ", b"echo hello-cli-$((6*7))\r"),
        ("hello-cli-42", b"stty size\r"),
        ("33 101", b"\x01q"),
    ])
    assert status is not None, "lxm console did not detach:\n" + text
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, text)
    assert "hello-cli-42" in text and "33 101" in text, text
    # Detaching gave the console back.
    op, data, control = open_console(lxmd, name)
    ws_close(data)
    ws_close(control)
    lxmd.wait_op(op["id"])


def test_cli_escape_key_and_stdin_end(lxmd, launched):
    name = launched()
    # Ctrl+a twice sends one Ctrl+a; Ctrl+a and another key send both. cat (in the cooked
    # terminal, where Ctrl+a means nothing) records what arrived.
    status, text = run_cli_under_pty(lxmd, ["console", name], [
        ("press: <ctrl>+a q", b"\r"),
        ("# ", b"echo ready-$((1+6)); cat > /tmp/esc\r"),
        ("ready-7", b"a\x01\x01b\x01c\r\x04echo written-$((2+6))\r"),
        ("written-8", b"\x01q"),
    ])
    assert status is not None, "lxm console did not detach:\n" + text
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, text)
    p = lxmd.cli("exec", name, "--", "cat", "/tmp/esc")
    assert p.stdout == "a\x01b\x01c\n", repr(p.stdout)
    # Without a terminal, the end of stdin detaches.
    p = lxmd.cli("console", name, input="echo piped-$((4*4))\n", timeout=30)
    assert p.returncode == 0, p
    wait_for(lambda: "piped-16" in console_log(lxmd, name), what="the piped command's output")


@pytest.mark.skipif(not shutil.which("lxc"), reason="needs LXD's client (apt-get install lxd-client)")
def test_lxc_client_console(lxmd, launched):
    """LXD's own client against lxmd: it needs the "console" API extension, attaches, types,
    detaches with Ctrl+a q, and shows the log."""
    assert "console" in assert_sync(lxmd.api("GET", "/1.0"))["api_extensions"]
    name = launched()
    env = dict(lxmd.cli_env(), LXD_DIR=lxmd.root, HOME=lxmd.base)
    status, text = run_cli_under_pty(lxmd, ["console", name], [
        ("press: <ctrl>+a q", b"\r"),
        ("# ", b"echo hello-lxc-$((6*7))\r"),
        ("hello-lxc-42", b"\x01"),
        ("hello-lxc-42", b"q"),
    ], argv0="lxc", env=env, retry_enter=True)
    assert status is not None, "lxc console did not detach:\n" + text
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, text)
    p = subprocess.run(["lxc", "console", name, "--show-log"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and "hello-lxc-42" in p.stdout, p
