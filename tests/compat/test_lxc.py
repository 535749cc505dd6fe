"""LXD's command line client (lxd-client 5.0.2, `lxc`), unmodified, against a private lxmd: what a
user of LXD types, with the answers LXD gives.

Every test launches what it needs from the busybox image (alias 'busybox', see conftest.py) and
force-deletes it at the end.
"""

import fcntl
import hashlib
import json
import os
import struct
import termios

import yaml

from conftest import need_lxc
from lxmtest import assert_sync, run_under_pty, wait_for
from nettest import free_port

pytestmark = need_lxc()


def csv_rows(text):
    return [line.split(",") for line in text.splitlines() if line]


def launch(lxc, name):
    p = lxc.run("launch", "busybox", name)
    # LXD's client says what it does, in this order.
    assert "Creating %s" % name in p.stdout and "Starting %s" % name in p.stdout, p.stdout
    return p


def test_launch_and_list(lxc, names):
    c1, c2 = names(), names()
    launch(lxc, c1)
    p = lxc.run("init", "busybox", c2)
    assert "Creating %s" % c2 in p.stdout, p.stdout

    table = lxc.run("list").stdout
    assert "NAME" in table.splitlines()[1] and "STATE" in table.splitlines()[1], table
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in table.splitlines() if line.startswith("| ") and "NAME" not in line}
    assert rows == {c1: "RUNNING", c2: "STOPPED"}, table

    # A filter on a field.
    running = lxc.run("list", "status=running", "--format", "csv", "-c", "n").stdout
    assert csv_rows(running) == [[c1]], running
    stopped = lxc.run("list", "status=stopped", "--format", "csv", "-c", "n").stdout
    assert csv_rows(stopped) == [[c2]], stopped

    # CSV: one line per instance, the default columns (name, state, IPv4, IPv6, type,
    # snapshots); no network here, so no addresses.
    rows = sorted(csv_rows(lxc.run("list", "--format", "csv").stdout))
    assert rows == sorted([[c1, "RUNNING", "", "", "CONTAINER", "0"],
                           [c2, "STOPPED", "", "", "CONTAINER", "0"]]), rows

    # JSON: the full instances, with their state.
    full = {i["name"]: i for i in json.loads(lxc.run("list", "--format", "json").stdout)}
    assert set(full) == {c1, c2}, full.keys()
    assert full[c1]["status"] == "Running" and full[c1]["status_code"] == 103, full[c1]
    assert full[c2]["status"] == "Stopped" and full[c2]["status_code"] == 102, full[c2]
    assert full[c1]["type"] == "container" and full[c1]["profiles"] == ["default"]
    assert full[c1]["state"]["status"] == "Running" and full[c1]["state"]["pid"] > 0, \
        full[c1]["state"]
    assert full[c2]["state"]["pid"] == 0, full[c2]["state"]
    assert full[c1]["config"]["image.os"] == "busybox", full[c1]["config"]

    # The name as a filter (a prefix, as LXD reads a bare word).
    only = lxc.run("list", c1, "--format", "csv", "-c", "ns").stdout
    assert csv_rows(only) == [[c1, "RUNNING"]], only


def test_launch_unknown_image_fails(lxc, names):
    name = names()
    p = lxc.run("launch", "no-such-image", name, check=False)
    assert p.returncode == 1, p
    assert "no-such-image" in p.stderr and p.stderr.startswith("Error: "), p.stderr


def test_exec_exit_code_streams_and_stdin(lxc, names):
    name = names()
    launch(lxc, name)
    p = lxc.run("exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert p.returncode == 3, p
    # Without a terminal, stdout and stderr stay apart.
    assert p.stdout == "out\n" and p.stderr == "err\n", p
    p = lxc.run("exec", name, "--", "cat", input="piped-in\n")
    assert p.stdout == "piped-in\n", p
    p = lxc.run("exec", name, "--env", "GREETING=hi", "--cwd", "/etc", "--",
                "sh", "-c", 'echo "$GREETING $(pwd)"')
    assert p.stdout == "hi /etc\n", p
    p = lxc.run("exec", name, "--", "/no/such/cmd", check=False)
    assert p.returncode == 127, p


def test_exec_interactive_shell_with_resize(lxc, names):
    name = names()
    launch(lxc, name)

    def resize(fd):
        # The terminal changes size: the kernel signals lxc (SIGWINCH), which tells the server.
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))

    # The shell computes each marker, so the echo of a typed line never counts as the answer.
    status, text = run_under_pty(["lxc", "exec", name, "--", "sh"], [
        ("# ", b"echo tty-$(tty | cut -c1-8)-$((6*7))\r"),
        ("tty-/dev/pts-42", b"echo size-$(stty size | tr ' ' x)\r"),
        ("size-33x101", resize),
        ("size-33x101", b"echo size-$(stty size | tr ' ' x)\r"),
        ("size-40x120", b"exit 5\r"),
    ], dict(lxc.env, TERM="xterm"))
    assert status is not None, "lxc exec did not end:\n" + text
    assert "tty-/dev/pts-42" in text and "size-33x101" in text and "size-40x120" in text, text
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 5, (status, text)


def test_file_push_pull(lxc, names, tmp_path):
    name = names()
    launch(lxc, name)
    src = tmp_path / "hello.txt"
    data = b"hello from the host\n" + bytes(range(256)) * 64
    src.write_bytes(data)
    lxc.run("file", "push", "--mode", "0640", str(src), "%s/root/hello.txt" % name)
    p = lxc.run("exec", name, "--", "stat", "-c", "%a %u %s", "/root/hello.txt")
    assert p.stdout.split() == ["640", "0", str(len(data))], p.stdout
    # Pulled to a directory, it keeps its name.
    out = tmp_path / "pulled"
    out.mkdir()
    lxc.run("file", "pull", "%s/root/hello.txt" % name, str(out) + "/")
    assert (out / "hello.txt").read_bytes() == data
    # Pushed into a directory that does not exist yet, with --create-dirs.
    lxc.run("file", "push", "--create-dirs", str(src), "%s/opt/new/dir/f" % name)
    p = lxc.run("exec", name, "--", "md5sum", "/opt/new/dir/f")
    assert p.stdout.split()[0] == hashlib.md5(data).hexdigest(), p.stdout
    # A file that is not there.
    p = lxc.run("file", "pull", "%s/no/such/file" % name, str(out) + "/", check=False)
    assert p.returncode == 1 and p.stderr.startswith("Error: "), p


def test_snapshot_and_restore_stopped(lxc, names):
    name = names()
    launch(lxc, name)
    lxc.run("exec", name, "--", "sh", "-c", "echo before > /root/state")
    lxc.run("snapshot", name, "snap0")
    info = lxc.run("info", name).stdout
    assert "Snapshots:" in info and "snap0" in info, info
    rows = csv_rows(lxc.run("list", name, "--format", "csv", "-c", "nS").stdout)
    assert rows == [[name, "1"]], rows
    lxc.run("exec", name, "--", "sh", "-c", "echo after > /root/state")
    lxc.run("stop", name)
    lxc.run("restore", name, "snap0")
    lxc.run("start", name)
    assert lxc.run("exec", name, "--", "cat", "/root/state").stdout == "before\n"
    # A snapshot name that exists already is refused.
    p = lxc.run("snapshot", name, "snap0", check=False)
    assert p.returncode == 1 and p.stderr.startswith("Error: "), p


def test_restore_running(lxc, names):
    # LXD stops a running container, restores it and starts it again.
    name = names()
    launch(lxc, name)
    lxc.run("exec", name, "--", "sh", "-c", "echo before > /root/state")
    lxc.run("snapshot", name, "snap0")
    lxc.run("exec", name, "--", "sh", "-c", "echo after > /root/state")
    lxc.run("restore", name, "snap0")
    assert lxc.run("exec", name, "--", "cat", "/root/state").stdout == "before\n"
    assert json.loads(lxc.run("list", name, "--format", "json").stdout)[0]["status"] == "Running"


def test_config_set_get_show(lxc, names):
    name = names()
    launch(lxc, name)
    lxc.run("config", "set", name, "user.greeting", "hello world")
    assert lxc.run("config", "get", name, "user.greeting").stdout == "hello world\n"
    # LXD 5.0's client also takes KEY=VALUE.
    lxc.run("config", "set", name, "user.other=1")
    shown = yaml.safe_load(lxc.run("config", "show", name).stdout)
    assert shown["config"]["user.greeting"] == "hello world", shown
    assert shown["config"]["user.other"] == "1", shown
    assert shown["profiles"] == ["default"] and shown["ephemeral"] is False, shown
    expanded = yaml.safe_load(lxc.run("config", "show", name, "--expanded").stdout)
    assert expanded["devices"]["root"] == {"path": "/", "pool": "default", "type": "disk"}, \
        expanded
    lxc.run("config", "unset", name, "user.other")
    assert lxc.run("config", "get", name, "user.other").stdout == "\n"
    # A key lxmd does not know is refused, and nothing changes.
    p = lxc.run("config", "set", name, "no.such.key", "1", check=False)
    assert p.returncode == 1 and "no.such.key" in p.stderr, p
    assert "no.such.key" not in lxc.run("config", "show", name).stdout
    # Server config: get of an unset key is empty.
    assert lxc.run("config", "get", "core.https_address").returncode == 0


def test_info(lxc, names):
    name = names()
    launch(lxc, name)
    info = lxc.run("info", name).stdout
    fields = dict(line.split(": ", 1) for line in info.splitlines()
                  if ": " in line and not line.startswith(" "))
    assert fields["Name"] == name and fields["Status"] == "RUNNING", info
    assert fields["Type"] == "container", info
    assert int(fields["PID"]) > 0, info
    assert "Processes:" in info and "Memory usage:" in info, info
    server = yaml.safe_load(lxc.run("info").stdout)
    assert server["api_version"] == "1.0" and "instances" in server["api_extensions"], server
    assert server["environment"]["kernel"] == os.uname().sysname, server["environment"]


def test_stop_start_restart_delete(lxc, names, lxmd):
    name = names()
    launch(lxc, name)

    def state():
        return csv_rows(lxc.run("list", name, "--format", "csv", "-c", "s").stdout)[0][0]

    def pid():
        return assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % name))["pid"]

    first = pid()
    p = lxc.run("delete", name, check=False)
    assert p.returncode == 1 and "stop it first" in p.stderr, p
    lxc.run("stop", name)
    assert state() == "STOPPED"
    lxc.run("start", name)
    assert state() == "RUNNING"
    second = pid()
    assert second not in (0, first), (first, second)
    lxc.run("restart", name)
    assert state() == "RUNNING"
    wait_for(lambda: pid() not in (0, second), what="a new init after the restart")
    lxc.run("stop", "--force", name)
    assert state() == "STOPPED"
    lxc.run("start", name)
    lxc.run("delete", "-f", name)
    assert csv_rows(lxc.run("list", "--format", "csv").stdout) == []
    p = lxc.run("info", name, check=False)
    assert p.returncode == 1 and p.stderr.startswith("Error: "), p


def test_profiles_storage_networks(lxc, names):
    name = names()
    launch(lxc, name)
    rows = csv_rows(lxc.run("profile", "list", "--format", "csv").stdout)
    assert [r[0] for r in rows] == ["default"] and rows[0][-1] == "1", rows
    prof = yaml.safe_load(lxc.run("profile", "show", "default").stdout)
    assert prof["name"] == "default", prof
    assert prof["devices"]["root"] == {"path": "/", "pool": "default", "type": "disk"}, prof
    assert prof["used_by"] == ["/1.0/instances/%s" % name], prof
    lxc.run("profile", "create", "extra")
    lxc.run("profile", "set", "extra", "user.x", "y")
    assert lxc.run("profile", "get", "extra", "user.x").stdout == "y\n"
    lxc.run("profile", "add", name, "extra")
    assert yaml.safe_load(lxc.run("config", "show", name).stdout)["profiles"] == \
        ["default", "extra"]
    lxc.run("profile", "remove", name, "extra")
    lxc.run("profile", "delete", "extra")

    rows = csv_rows(lxc.run("storage", "list", "--format", "csv").stdout)
    assert [r[:2] for r in rows] == [["default", "dir"]], rows
    pool = yaml.safe_load(lxc.run("storage", "show", "default").stdout)
    assert pool["driver"] == "dir" and pool["name"] == "default", pool

    # lxmd lists its managed networks only (LXD adds the host's interfaces as unmanaged); the
    # daemon was set up without one.
    p = lxc.run("network", "list", "--format", "csv")
    assert p.stdout == "", p


def test_image_list_and_import(lxc, names, busybox_image, tmp_path):
    rows = csv_rows(lxc.run("image", "list", "--format", "csv").stdout)
    assert len(rows) == 1 and rows[0][0] == "busybox", rows
    assert busybox_image.startswith(rows[0][1]) and rows[0][4] == "x86_64", rows
    listed = json.loads(lxc.run("image", "list", "--format", "json").stdout)
    assert [i["fingerprint"] for i in listed] == [busybox_image], listed
    # Export, remove, and import the file again: the same image comes back under a new alias.
    lxc.run("image", "export", "busybox", str(tmp_path / "bb"))
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].startswith("bb."), files
    lxc.run("image", "delete", "busybox")
    assert lxc.run("image", "list", "--format", "csv").stdout == ""
    p = lxc.run("image", "import", str(tmp_path / files[0]), "--alias", "imported")
    assert busybox_image in p.stdout, p.stdout
    rows = csv_rows(lxc.run("image", "list", "--format", "csv").stdout)
    assert [r[0] for r in rows] == ["imported"], rows
    # Importing it again is refused: it is there already.
    p = lxc.run("image", "import", str(tmp_path / files[0]), check=False)
    assert p.returncode == 1 and p.stderr.startswith("Error: "), p
    name = names()
    p = lxc.run("launch", "imported", name)
    assert lxc.run("exec", name, "--", "echo", "from-import").stdout == "from-import\n"


def test_trust_tokens(lxc, lxmd):
    """lxc config trust add --name makes a token that list-tokens shows (from the running
    operations of class token) and revoke-token cancels."""
    port = free_port()
    lxc.run("config", "set", "core.https_address", "127.0.0.1:%d" % port)
    lxc.run("config", "set", "core.remote_token_expiry", "1H")
    out = lxc.run("config", "trust", "add", "--name", "lxc-client").stdout
    token = out.strip().splitlines()[-1]
    listed = lxc.run("config", "trust", "list-tokens", "--format", "csv").stdout
    assert listed.startswith("lxc-client,%s," % token), listed
    ours = json.loads(lxmd.cli("config", "trust", "list-tokens", "-f", "json").stdout)
    assert [(x["name"], x["token"]) for x in ours] == [("lxc-client", token)], ours
    lxc.run("config", "trust", "revoke-token", "lxc-client")
    assert lxc.run("config", "trust", "list-tokens", "--format", "csv").stdout.strip() == ""
    assert lxmd.cli("config", "trust", "list-tokens", "-f", "json").stdout.strip() == "[]"
    p = lxc.run("config", "set", "core.remote_token_expiry", "10x", check=False)
    assert p.returncode != 0 and "core.remote_token_expiry" in p.stderr, p.stderr
    lxc.run("config", "unset", "core.https_address")
