"""Exec and files in virtual machines through the lxm agent (issue 9), without a real VM.

A host-side `lxm-agent --listen <rundir>/<vm>/agent.sock` stands in for the guest: lxmd connects
to that socket as it would to QEMU's virtio-serial chardev. The VM instance is created through
the API but never started; lxmd is run with LXMD_TEST_VM_AGENT_STOPPED=1 (tests only) so that
exec and file requests reach the agent of a VM it did not start, and LXMD_VM_AGENT_TIMEOUT_MS
short, for the "waiting for the VM agent" timeout. Commands therefore run on the host, as root,
and files are the host's: every path the tests touch is under their tmp_path.
"""

import json
import os
import select
import signal
import stat
import subprocess
import time
import urllib.parse

import pytest

import lxmtest
from lxmtest import assert_async, assert_sync, unique, wait_for

AGENT_TIMEOUT_MS = 2000


def agent_binary():
    return os.path.join(lxmtest.build_dir(), "lxmd", "vm", "agent", "lxm-agent")


def create_vm(lxmd, name):
    """Creates VM instance name (not started) through the API; skips while lxmd cannot."""
    r = lxmd.api("POST", "/1.0/instances", {
        "name": name, "type": "virtual-machine",
        "source": {"type": "image", "alias": "busybox/vm"}})
    body = r.json or {}
    if r.status == 400 and "virtual-machine" in (body.get("error") or ""):
        pytest.skip("lxmd cannot create virtual-machine instances yet: %s" % body.get("error"))
    op = assert_async(r)
    done = lxmd.wait_op(op["id"], timeout=300)
    assert done["status"] == "Success", done


@pytest.fixture
def vmd(lxmd_factory, monkeypatch):
    """A running lxmd whose exec/file requests reach stopped VMs' agent sockets."""
    monkeypatch.setenv("LXMD_TEST_VM_AGENT_STOPPED", "1")
    monkeypatch.setenv("LXMD_VM_AGENT_TIMEOUT_MS", str(AGENT_TIMEOUT_MS))
    d = lxmd_factory()
    d.start()
    return d


@pytest.fixture
def agents():
    """Starts host-side agents on sockets; kills them at the end."""
    procs = []

    def start(sock):
        os.makedirs(os.path.dirname(sock), exist_ok=True)
        p = subprocess.Popen([agent_binary(), "--listen", sock], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(p)
        wait_for(lambda: os.path.exists(sock) or p.poll() is not None, what="agent socket")
        assert p.poll() is None, p.stderr.read()
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def vm(vmd, agents):
    """A VM instance with a stand-in agent; deleted at the end."""
    name = unique("v")
    create_vm(vmd, name)
    agents(os.path.join(vmd.root, "run", name, "agent.sock"))
    yield name
    vmd.cli("delete", "-f", name, check=False)


def files_url(name, path):
    return "/1.0/instances/%s/files?path=%s" % (name, urllib.parse.quote(path, safe=""))


# ---------------------------------------------------------------- exec

def test_exec_streams_and_exit_code(vmd, vm):
    p = vmd.cli("exec", vm, "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert p.returncode == 3, p
    assert p.stdout == "out\n"
    assert p.stderr == "err\n"


def test_exec_environment_cwd_and_user(vmd, vm, tmp_path):
    p = vmd.cli("exec", vm, "--cwd", str(tmp_path), "--env", "GREETING=hi", "--", "sh", "-c",
                'echo "$GREETING $(pwd) $(id -u) $HOME"')
    assert p.stdout == "hi %s 0 /root\n" % tmp_path
    p = vmd.cli("exec", vm, "--user", "1234", "--group", "1235", "--", "sh", "-c",
                "echo $(id -u) $(id -g)")
    assert p.stdout == "1234 1235\n"


def test_exec_stdin_through_cat(vmd, vm):
    # More than the agent's window (256 KiB) each way: flow control in both directions.
    data = os.urandom(3 * 1024 * 1024).hex().encode()[:3 * 1024 * 1024]
    p = subprocess.run([vmd.lxm_bin, "exec", vm, "--", "cat"], input=data, capture_output=True,
                       env=vmd.cli_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == data


def test_exec_slow_reader_backpressure(vmd, vm):
    """Output waits in the agent, not in lxmd, while the client does not read: lxmd holds back
    the agent's credit while the websocket is full."""
    lxmtest.check_slow_reader_backpressure(vmd, vm, timeout=120)


def test_exec_missing_command(vmd, vm):
    p = vmd.cli("exec", vm, "--", "/nonexistent/lxm-cmd", check=False)
    assert p.returncode == 127, p
    assert "/nonexistent/lxm-cmd" in p.stderr and "No such file or directory" in p.stderr, p
    # As for containers: the operation fails with LXD's words and metadata.return is 127.
    op = assert_async(vmd.api("POST", "/1.0/instances/%s/exec" % vm, {
        "command": ["/nonexistent/lxm-cmd"], "wait-for-websocket": False}))
    done = vmd.wait_op(op["id"])
    assert done["status"] == "Failure", done
    assert done["err"] == "Command not found", done
    assert done["metadata"]["return"] == 127, done


def test_exec_signal(vmd, vm, tmp_path):
    marker = tmp_path / "started"
    p = vmd.cli_popen("exec", vm, "--", "sh", "-c",
                      "trap 'echo got TERM; exit 7' TERM; touch %s; while :; do sleep 0.1; done"
                      % marker)
    with lxmtest.reaped(p):
        wait_for(marker.exists, what="the command to start")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 7, (out, err)
    assert "got TERM" in (out.decode() if isinstance(out, bytes) else out)


def test_exec_signal_through_api(vmd, vm):
    """The control websocket's signal reaches the command; metadata.return says how it ended."""
    r = vmd.api("POST", "/1.0/instances/%s/exec" % vm, {
        "command": ["sleep", "60"], "wait-for-websocket": True, "interactive": False})
    op = assert_async(r)
    fds = op["metadata"]["fds"]
    socks = {k: lxmtest.ws_connect(vmd, op["id"], fds[k]) for k in ("0", "1", "2", "control")}
    try:
        time.sleep(0.5)
        socks["control"].send(json.dumps({"command": "signal", "signal": 9}))
        done = vmd.wait_op(op["id"], timeout=30)
    finally:
        for ws in socks.values():
            lxmtest.ws_close(ws)
    assert done["metadata"]["return"] == 128 + 9, done


def test_exec_pty_and_resize(vmd, vm):
    def resize(fd):
        import fcntl
        import struct
        import termios
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        time.sleep(0.5)
        os.write(fd, b"stty size; echo S2 done\r")

    steps = [
        ("READY", b"stty size; echo S1 done\r"),
        ("S1 done", resize),
        ("S2 done", b"exit 5\r"),
    ]
    argv = [vmd.lxm_bin, "exec", "-t", vm, "--", "sh", "-c", "echo READY; exec sh"]
    status, out = lxmtest.run_under_pty(argv, steps, vmd.cli_env({"TERM": "dumb"}), rows=33,
                                        cols=101)
    text = out if isinstance(out, str) else out.decode(errors="replace")
    assert "33 101" in text, text
    assert "40 120" in text, text
    assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 5, text


# ---------------------------------------------------------------- files

def test_file_push_pull_round_trip(vmd, vm, tmp_path):
    src = tmp_path / "src.bin"
    data = os.urandom(1024 * 1024 + 17)
    src.write_bytes(data)
    dest = tmp_path / "in-guest" / "f.bin"
    dest.parent.mkdir()
    vmd.cli("file", "push", "--mode", "0640", "--uid", "1234", "--gid", "1235", src,
            "%s%s" % (vm, dest))
    st = os.lstat(dest)
    assert dest.read_bytes() == data
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1234, 1235)

    back = tmp_path / "back.bin"
    vmd.cli("file", "pull", "%s%s" % (vm, dest), back)
    assert back.read_bytes() == data

    r = vmd.api("GET", files_url(vm, str(dest)))
    assert r.status == 200
    assert r.headers["X-LXD-type"] == "file"
    assert r.headers["X-LXD-mode"] == "0640"
    assert (r.headers["X-LXD-uid"], r.headers["X-LXD-gid"]) == ("1234", "1235")


def test_file_directory_symlink_and_listing(vmd, vm, tmp_path):
    d = tmp_path / "dir"
    r = vmd.api("POST", files_url(vm, str(d)), b"", {"X-LXD-type": "directory",
                                                     "X-LXD-mode": "0711"})
    assert_sync(r)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o711
    r = vmd.api("POST", files_url(vm, str(d / "link")), b"target-x",
                {"X-LXD-type": "symlink"})
    assert_sync(r)
    assert os.readlink(d / "link") == "target-x"
    (d / "a").write_text("a")

    r = vmd.api("GET", files_url(vm, str(d)))
    assert r.status == 200 and r.headers["X-LXD-type"] == "directory"
    assert sorted(r.json["metadata"]) == ["a", "link"]
    r = vmd.api("GET", files_url(vm, str(d / "link")))
    assert r.status == 200 and r.headers["X-LXD-type"] == "symlink"
    assert r.raw == b"target-x"

    # Append writes in place.
    r = vmd.api("POST", files_url(vm, str(d / "a")), b"bc", {"X-LXD-write": "append"})
    assert_sync(r)
    assert (d / "a").read_text() == "abc"

    # Delete: a non-empty directory stays, a symlink goes (not its target), then the file and
    # the directory; a missing path is a 404.
    r = vmd.api("DELETE", files_url(vm, str(d)))
    assert r.status == 400 and str(d) in r.json["error"], r.json
    assert d.is_dir()
    assert_sync(vmd.api("DELETE", files_url(vm, str(d / "link"))))
    assert not os.path.lexists(d / "link")
    vmd.cli("file", "delete", "%s%s" % (vm, d / "a"))
    assert not (d / "a").exists()
    assert_sync(vmd.api("DELETE", files_url(vm, str(d))))
    assert not d.exists()
    r = vmd.api("DELETE", files_url(vm, str(d)))
    assert r.status == 404 and str(d) in r.json["error"], r.json


def test_file_missing_path(vmd, vm, tmp_path):
    missing = tmp_path / "no" / "such"
    r = vmd.api("GET", files_url(vm, str(missing)))
    assert r.status == 404
    err = r.json["error"]
    assert vm in err and str(missing) in err, err

    p = vmd.cli("file", "pull", "%s%s" % (vm, missing), tmp_path / "x", check=False)
    assert p.returncode != 0
    assert str(missing) in p.stderr, p.stderr

    r = vmd.api("POST", files_url(vm, str(missing)), b"x")
    assert r.status == 404, r.json
    assert str(missing) in r.json["error"]


# ---------------------------------------------------------------- no agent

def test_waiting_for_the_agent_times_out(vmd):
    name = unique("v")
    create_vm(vmd, name)
    try:
        # While lxmd waits, the operation says so.
        r = vmd.api("POST", "/1.0/instances/%s/exec" % name, {
            "command": ["true"], "wait-for-websocket": False})
        op = assert_async(r)
        md = assert_sync(vmd.api("GET", "/1.0/operations/%s" % op["id"]))["metadata"]
        assert md.get("status") == "waiting for the VM agent", md

        t0 = time.monotonic()
        p = vmd.cli("exec", name, "--", "true", check=False)
        took = time.monotonic() - t0
        assert p.returncode != 0
        assert "did not answer within" in p.stderr, p.stderr
        assert "is lxm-agent running in the guest?" in p.stderr, p.stderr
        # Meanwhile the CLI said what it waited for.
        assert ("Instance '%s': waiting for the VM agent (the guest is still booting)" % name
                in p.stderr), p.stderr
        assert AGENT_TIMEOUT_MS / 1000 - 0.5 <= took < AGENT_TIMEOUT_MS / 1000 + 10, took

        r = vmd.api("GET", files_url(name, "/etc/hostname"))
        assert r.status == 503
        assert "did not answer within" in r.json["error"]
    finally:
        vmd.cli("delete", "-f", name, check=False)


def test_exec_waits_for_a_late_agent(lxmd_factory, monkeypatch, agents):
    """The guest's agent comes up while lxm exec waits: the CLI says it waits, then the command
    runs and its output and status come through unchanged."""
    monkeypatch.setenv("LXMD_TEST_VM_AGENT_STOPPED", "1")
    monkeypatch.setenv("LXMD_VM_AGENT_TIMEOUT_MS", "60000")
    d = lxmd_factory()
    d.start()
    name = unique("v")
    create_vm(d, name)
    try:
        p = d.cli_popen("exec", name, "--", "sh", "-c", "echo late; exit 4")
        with lxmtest.reaped(p):
            ready, _, _ = select.select([p.stderr], [], [], 30)
            assert ready, "lxm exec said nothing while it waited"
            line = p.stderr.readline()
            assert line == ("Instance '%s': waiting for the VM agent (the guest is still "
                            "booting)\n" % name), line
            assert p.poll() is None
            agents(os.path.join(d.root, "run", name, "agent.sock"))
            out, err = p.communicate(timeout=30)
        assert p.returncode == 4, (out, err)
        assert out == "late\n"
        assert err == "", err
    finally:
        d.cli("delete", "-f", name, check=False)


def test_stopped_vm_is_refused(lxmd, monkeypatch):
    """Without the test knob, a VM lxmd did not start has no agent to ask."""
    monkeypatch.delenv("LXMD_TEST_VM_AGENT_STOPPED", raising=False)
    name = unique("v")
    create_vm(lxmd, name)
    try:
        p = lxmd.cli("exec", name, "--", "true", check=False)
        assert p.returncode != 0
        assert "is not running" in p.stderr, p.stderr
        r = lxmd.api("GET", files_url(name, "/etc/hostname"))
        assert r.status == 400 and "is not running" in r.json["error"], r.json
    finally:
        lxmd.cli("delete", "-f", name, check=False)
