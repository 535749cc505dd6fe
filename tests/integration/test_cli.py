"""The lxm command line, as a user runs it."""

import csv
import io
import json
import os
import re
import socket
import subprocess
import tempfile
import shutil

import pytest
import yaml

from lxmtest import (PREFIX, FakeHTTPPeer, assert_error_envelope, assert_sync, copy_for_nobody,
                     lxm_binary, run_as_nobody, unique)


def run_lxm(args, env_extra, timeout=30):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LXM_", "LXD_"))}
    env.update(env_extra)
    return subprocess.run([lxm_binary()] + list(args), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tmpdir_it():
    d = tempfile.mkdtemp(prefix=PREFIX, dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def assert_cli_error(p, *needles):
    assert p.returncode == 1, "expected exit 1, got %d\nstdout: %s\nstderr: %s" % (
        p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith("Error: "), p.stderr
    for n in needles:
        assert n.lower() in p.stderr.lower(), "stderr does not mention %r: %r" % (n, p.stderr)


def test_version(lxmd):
    p = lxmd.cli("version")
    assert re.search(r"\d+\.\d+", p.stdout), p.stdout
    assert p.stderr == ""


def test_info_is_yaml_server_document(lxmd):
    info = yaml.safe_load(lxmd.cli("info").stdout)
    assert info["api_version"] == "1.0", info
    assert info["environment"]["server"] == "lxmd", info
    assert info["environment"]["server_pid"] == lxmd.pid


def test_list_empty(lxmd):
    out = lxmd.cli("list").stdout
    assert "NAME" in out and "STATE" in out, out
    assert PREFIX not in out
    assert json.loads(lxmd.cli("list", "--format", "json").stdout) == []
    assert yaml.safe_load(lxmd.cli("list", "--format", "yaml").stdout) in ([], None)
    assert lxmd.cli("list", "--format", "csv").stdout.strip() == ""


def test_init_empty_and_list(lxmd):
    name = unique("c")
    lxmd.cli("init", "--empty", name)
    inst = assert_sync(lxmd.api("GET", "/1.0/instances/" + name))
    assert inst["status"] == "Stopped" and inst["profiles"] == ["default"], inst

    table = lxmd.cli("list").stdout
    line = [l for l in table.splitlines() if name in l]
    assert len(line) == 1 and "STOPPED" in line[0], table

    objs = json.loads(lxmd.cli("list", "--format", "json").stdout)
    assert [(o["name"], o["status"]) for o in objs] == [(name, "Stopped")], objs
    objs = yaml.safe_load(lxmd.cli("list", "--format", "yaml").stdout)
    assert [(o["name"], o["status"]) for o in objs] == [(name, "Stopped")], objs
    rows = list(csv.reader(io.StringIO(lxmd.cli("list", "--format", "csv").stdout)))
    assert len(rows) == 1 and rows[0][0] == name and "STOPPED" in rows[0], rows


def test_init_with_profiles(lxmd):
    p, name = unique("p"), unique("c")
    lxmd.cli("profile", "create", p)
    lxmd.cli("init", "--empty", name, "-p", "default", "-p", p)
    assert assert_sync(lxmd.api("GET", "/1.0/instances/" + name))["profiles"] == ["default", p]


def test_init_errors(lxmd):
    name = unique("c")
    lxmd.cli("init", "--empty", name)
    assert_cli_error(lxmd.cli("init", "--empty", name, check=False))  # exists
    assert_cli_error(lxmd.cli("init", "--empty", "1-bad-name", check=False), "name")
    assert_cli_error(lxmd.cli("init", "--empty", unique("c"), "-p", "lxm-it-no-such", check=False),
                     "lxm-it-no-such")
    assert lxmd.instance_names() == [name]


def test_delete(lxmd):
    name = unique("c")
    lxmd.cli("init", "--empty", name)
    lxmd.cli("delete", name)
    assert_error_envelope(lxmd.api("GET", "/1.0/instances/" + name), 404)
    assert json.loads(lxmd.cli("list", "--format", "json").stdout) == []
    assert_cli_error(lxmd.cli("delete", name, check=False))


def test_operation_list_and_show(lxmd):
    name = unique("c")
    lxmd.cli("init", "--empty", name)
    ops = assert_sync(lxmd.api("GET", "/1.0/operations")).get("success", [])
    assert len(ops) == 1, ops
    op_id = ops[0].rsplit("/", 1)[1]
    assert op_id in lxmd.cli("operation", "list").stdout
    shown = yaml.safe_load(lxmd.cli("operation", "show", op_id).stdout)
    assert shown["id"] == op_id and shown["status"] == "Success", shown
    assert_cli_error(lxmd.cli("operation", "show", "00000000-0000-0000-0000-000000000000", check=False))


def test_profile_show_default(lxmd):
    p = yaml.safe_load(lxmd.cli("profile", "show", "default").stdout)
    assert p["name"] == "default"
    assert isinstance(p["description"], str) and p["description"], p
    assert "default" in lxmd.cli("profile", "list").stdout


HELP_COMMANDS = [(), ("version",), ("info",), ("list",), ("init",), ("delete",), ("operation",),
                 ("operation", "list"), ("operation", "show"), ("profile",)] + [
    ("profile", s) for s in ("list", "show", "create", "delete", "set", "unset", "get", "rename",
                             "edit")]


@pytest.mark.parametrize("cmd", HELP_COMMANDS, ids=lambda c: " ".join(c) or "lxm")
def test_help(tmpdir_it, cmd):
    # Help never needs the daemon.
    p = run_lxm(list(cmd) + ["--help"], {"LXM_DIR": tmpdir_it})
    assert p.returncode == 0, p
    assert p.stdout.strip(), "no help text on stdout"
    assert "usage" in p.stdout.lower(), p.stdout


def test_unknown_command(lxmd):
    assert_cli_error(lxmd.cli("lxm-it-bogus", check=False))
    assert_cli_error(lxmd.cli("profile", "lxm-it-bogus", check=False))
    assert_cli_error(lxmd.cli("list", "--lxm-it-bogus", check=False))
    assert_cli_error(lxmd.cli("list", "--format", "lxm-it-bogus", check=False))


def test_daemon_not_running(tmpdir_it):
    for args in (["list"], ["info"], ["profile", "list"]):
        p = run_lxm(args, {"LXM_DIR": tmpdir_it})
        assert_cli_error(p, "not running")
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_daemon_not_running_stale_socket(tmpdir_it):
    # A socket file nobody listens on (lxmd was killed): ECONNREFUSED.
    path = os.path.join(tmpdir_it, "unix.socket")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    p = run_lxm(["list"], {"LXM_DIR": tmpdir_it})
    assert_cli_error(p, "not running")
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_lxm_socket_overrides_lxm_dir(lxmd, tmpdir_it):
    p = run_lxm(["list", "--format", "json"], {"LXM_DIR": tmpdir_it, "LXM_SOCKET": lxmd.socket})
    assert p.returncode == 0, p
    assert json.loads(p.stdout) == []


def test_permission_denied(lxmd):
    st = os.stat(lxmd.socket)
    assert st.st_uid == 0 and (st.st_mode & 0o777) == 0o660, oct(st.st_mode)
    # Let nobody reach the socket, so that the socket's own mode is what refuses it.
    os.chmod(lxmd.base, 0o755)
    os.chmod(lxmd.root, 0o755)
    lxm = copy_for_nobody(lxmd.lxm_bin, lxmd.base)
    p = run_as_nobody([lxm, "list"], env={"LXM_DIR": lxmd.root, "PATH": "/usr/bin:/bin"})
    assert_cli_error(p, "permission denied")
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_not_an_lxd_peer(tmpdir_it):
    path = os.path.join(tmpdir_it, "fake.socket")
    peer = FakeHTTPPeer(path)
    try:
        for args in (["list"], ["info"], ["profile", "list"]):
            p = run_lxm(args, {"LXM_SOCKET": path})
            assert_cli_error(p, "not an lxmd/LXD API endpoint")
    finally:
        peer.close()


def test_info_of_running_instance_shows_resources(lxmd, launched):
    name = launched()
    out = lxmd.cli("info", name).stdout
    assert "Name: %s\n" % name in out and "Status: RUNNING\n" in out
    assert "\nResources:\n" in out
    procs = int(out.split("Processes: ", 1)[1].split("\n", 1)[0])
    assert procs >= 2, out  # init and at least one of its services
    assert "Memory (current): " in out
    # The container's own loopback, from its network namespace.
    assert "\n    lo:\n" in out, out
    lxmd.cli("stop", "--force", name)
    stopped = lxmd.cli("info", name).stdout
    assert "Status: STOPPED\n" in stopped and "Resources:" not in stopped


def test_launch_shows_image_progress_on_a_terminal(lxmd):
    """On a fresh store, launch builds busybox first: on a terminal the operation's progress is
    one line redrawn in place ("Retrieving image: STAGE ...") and erased at the end; through a
    pipe none of it shows."""
    from test_console import run_cli_under_pty
    name, other = unique("prog"), unique("prog")
    try:
        status, out = run_cli_under_pty(lxmd, ["launch", "busybox", name], [], timeout=180)
        assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
        assert re.search(r"\rRetrieving image: [a-z]+[^\r\n]*\x1b\[K", out), repr(out)
        # The line is erased before the next message, which starts a clean line.
        assert "\r\x1b[KStarting %s\r\n" % name in out, repr(out)
        assert out.startswith("Creating %s\r\n" % name), repr(out)
        # Not on a terminal: only the messages.
        p = lxmd.cli("launch", "busybox", other)
        assert p.stdout == "Creating %s\nStarting %s\n" % (other, other), repr(p.stdout)
    finally:
        for n in (name, other):
            lxmd.cli("delete", "--force", n, check=False)
