"""REMOTE: for every lxm command that names an instance, a profile, a network, a storage pool, an
image, an operation or the server: a second private lxmd listens on 127.0.0.1 (core.https_address)
and is added as remote r2 with a token; the local lxm drives it through "r2:" names and each
effect is checked on r2's side (r2.cli) and found absent locally. Unknown remotes, arguments on
two remotes and a simplestreams remote used for instances are clear errors. Traffic to 127.0.0.1
only; networks get a free 10.X.Y.0/24 and a unique bridge name."""

import json
import os

import pytest

import lxmtest
import nettest
from lxmtest import cli_failed as failed, unique


@pytest.fixture
def conf(r2_conf):
    return r2_conf


def names(d, *args, env=None):
    """The NAME column of a list command, as JSON."""
    out = d.cli(*args, "--format", "json", env=env).stdout
    return [o["name"] for o in json.loads(out)]


def test_instance_commands(lxmd, r2, conf, tmp_path):
    def lx(*args, check=True, timeout=120, input=None):
        return lxmd.cli(*args, env=conf, check=check, timeout=timeout, input=input)

    def on_r2(*args):
        return r2.cli("exec", name, "--", *args, check=False)

    name = unique("c")
    try:
        lx("launch", "busybox", "r2:" + name, timeout=300)
        assert name in r2.cli("list", "--format", "csv", "-c", "n").stdout
        assert name not in lxmd.cli("list", "--format", "csv", "-c", "n").stdout

        # ---- file push, pull, delete
        src = tmp_path / "hello.txt"
        src.write_text("hello from local\n")
        lx("file", "push", str(src), "r2:%s/root/hello.txt" % name)
        assert on_r2("cat", "/root/hello.txt").stdout == "hello from local\n"
        on_r2("sh", "-c", "echo from r2 > /root/back.txt")
        lx("file", "pull", "r2:%s/root/back.txt" % name, str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "from r2\n"
        lx("file", "delete", "r2:%s/root/back.txt" % name)
        assert on_r2("test", "-e", "/root/back.txt").returncode == 1
        # Two sources on two remotes make no sense.
        failed(lx("file", "pull", "r2:%s/root/hello.txt" % name, "local:%s/etc/hosts" % name,
                  str(tmp_path), check=False), "different remotes")

        # ---- config: the instance's and the server's
        lx("config", "set", "r2:" + name, "user.mark=remote-set")
        assert r2.cli("config", "get", name, "user.mark").stdout == "remote-set\n"
        assert lx("config", "get", "r2:" + name, "user.mark").stdout == "remote-set\n"
        assert "user.mark: remote-set" in lx("config", "show", "r2:" + name).stdout
        lx("config", "unset", "r2:" + name, "user.mark")
        assert r2.cli("config", "get", name, "user.mark").stdout == "\n"
        lx("config", "set", "r2:", "images.auto_update_interval", "13")
        assert r2.cli("config", "get", "images.auto_update_interval").stdout == "13\n"
        assert lxmd.cli("config", "get", "images.auto_update_interval").stdout != "13\n"
        assert lx("config", "get", "r2:", "images.auto_update_interval").stdout == "13\n"
        assert "images.auto_update_interval" in lx("config", "show", "r2:").stdout
        lx("config", "unset", "r2:", "images.auto_update_interval")
        assert r2.cli("config", "get", "images.auto_update_interval").stdout == "\n"
        lx("config", "device", "add", "r2:" + name, "mnt", "disk", "source=/tmp",
           "path=/mnt/hosttmp")
        assert "mnt" in r2.cli("config", "device", "list", name).stdout
        assert lx("config", "device", "get", "r2:" + name, "mnt", "path").stdout == \
            "/mnt/hosttmp\n"
        lx("config", "device", "remove", "r2:" + name, "mnt")
        assert "mnt" not in r2.cli("config", "device", "list", name).stdout

        # ---- snapshot, info, restore, delete of a snapshot
        on_r2("sh", "-c", "echo before > /root/state")
        lx("snapshot", "r2:" + name, "s1")
        assert "s1" in r2.cli("info", name).stdout
        assert "s1" in lx("info", "r2:" + name).stdout
        on_r2("sh", "-c", "echo after > /root/state")
        lx("stop", "-f", "r2:" + name)
        lx("restore", "r2:" + name, "s1")
        lx("start", "r2:" + name)
        assert on_r2("cat", "/root/state").stdout == "before\n"
        lx("delete", "r2:%s/s1" % name)
        assert "s1" not in r2.cli("info", name).stdout

        # ---- lifecycle
        lx("pause", "r2:" + name)
        assert "FROZEN" in r2.cli("list", "--format", "csv", "-c", "ns").stdout
        lx("start", "r2:" + name)
        lx("restart", "-f", "r2:" + name)
        assert name + ",RUNNING" in r2.cli("list", "--format", "csv", "-c", "ns").stdout

        # ---- console log: what the instance wrote to its console, from r2
        mark = unique("console-mark")
        on_r2("sh", "-c", "echo %s > /dev/console" % mark)
        assert mark in r2.cli("console", name, "--show-log").stdout
        assert mark in lx("console", "r2:" + name, "--show-log").stdout
        # Attached: what is typed runs in r2's instance.
        env = dict(lxmd.cli_env(conf), TERM="xterm")
        st, text = lxmtest.run_under_pty([lxmd.lxm_bin, "console", "r2:" + name], [
            ("press: <ctrl>+a q", b"\r"),
            ("# ", b"echo typed-$((6*7)) > /root/typed; echo done-$((2+3))\r"),
            ("done-5", b"\x01q"),
        ], env, timeout=30)
        assert st is not None and os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, (st, text)
        assert on_r2("cat", "/root/typed").stdout == "typed-42\n"

        # ---- errors
        failed(lx("config", "get", "r9:" + name, "user.x", check=False), "r9", "unknown remote")
        failed(lx("file", "push", str(src), "r9:%s/root/" % name, check=False), "r9")
        failed(lx("console", "r9:" + name, "--show-log", check=False), "r9")
        # A simplestreams remote serves images, not instances.
        lx("remote", "add", "ss", "https://127.0.0.1:1", "--protocol", "simplestreams")
        failed(lx("config", "show", "ss:" + name, check=False), "ss", "simplestreams")
        failed(lx("snapshot", "ss:" + name, check=False), "ss", "simplestreams")
        # "local:" and bare names are the local lxmd's: it has no such instance.
        failed(lx("config", "show", "local:" + name, check=False), name)
        failed(lx("config", "show", name, check=False), name)

        lx("delete", "-f", "r2:" + name)
        assert name not in r2.cli("list", "--format", "csv", "-c", "n").stdout
    finally:
        r2.cli("delete", "-f", name, check=False)


def test_profiles_networks_storage(lxmd, r2, conf):
    def lx(*args, check=True, timeout=120, input=None):
        return lxmd.cli(*args, env=conf, check=check, timeout=timeout, input=input)

    prof, net, vol = unique("p"), nettest.free_link_name("lxmr"), unique("v")
    subnet = nettest.free_subnet()
    gw = "%s/24" % (subnet.network_address + 1)
    name = unique("c")
    try:
        # ---- profiles
        lx("profile", "create", "r2:" + prof)
        assert prof in names(r2, "profile", "list")
        assert prof not in names(lxmd, "profile", "list")
        assert prof in names(lxmd, "profile", "list", "r2:", env=conf)
        lx("profile", "set", "r2:" + prof, "user.k=v1")
        assert r2.cli("profile", "get", prof, "user.k").stdout == "v1\n"
        assert "user.k: v1" in lx("profile", "show", "r2:" + prof).stdout
        assert lx("profile", "get", "r2:" + prof, "user.k").stdout == "v1\n"
        lx("profile", "unset", "r2:" + prof, "user.k")
        assert r2.cli("profile", "get", prof, "user.k").stdout == "\n"
        lx("profile", "device", "add", "r2:" + prof, "hosttmp", "disk", "source=/tmp",
           "path=/mnt/hosttmp")
        assert "hosttmp" in r2.cli("profile", "device", "list", prof).stdout
        lx("profile", "edit", "r2:" + prof, input="description: edited remotely\n"
           "config:\n  user.e: \"1\"\ndevices:\n  hosttmp:\n    type: disk\n"
           "    source: /tmp\n    path: /mnt/hosttmp\n")
        assert "edited remotely" in r2.cli("profile", "show", prof).stdout
        # Copied to the local lxmd from r2.
        lx("profile", "copy", "r2:" + prof, "local:" + prof)
        assert prof in names(lxmd, "profile", "list")
        assert "hosttmp" in lxmd.cli("profile", "device", "list", prof).stdout
        lxmd.cli("profile", "delete", prof)
        lx("launch", "busybox", "r2:" + name, timeout=300)
        lx("profile", "add", "r2:" + name, prof)
        assert prof in json.loads(r2.cli("list", "--format", "json").stdout)[0]["profiles"]
        lx("profile", "remove", "r2:" + name, prof)
        assert prof not in json.loads(r2.cli("list", "--format", "json").stdout)[0]["profiles"]
        lx("profile", "assign", "r2:" + name, "default," + prof)
        assert json.loads(r2.cli("list", "--format", "json").stdout)[0]["profiles"] == \
            ["default", prof]
        lx("profile", "assign", "r2:" + name, "default")
        failed(lx("profile", "rename", "r9:" + prof, "x", check=False), "r9")
        lx("profile", "delete", "r2:" + prof)
        assert prof not in names(r2, "profile", "list")

        # ---- networks
        lx("network", "create", "r2:" + net, "ipv4.address=" + gw, "ipv6.address=none")
        assert net in names(r2, "network", "list")
        assert net not in names(lxmd, "network", "list")
        assert net in names(lxmd, "network", "list", "r2:", env=conf)
        assert lx("network", "get", "r2:" + net, "ipv4.address").stdout == gw + "\n"
        lx("network", "set", "r2:" + net, "user.tag=remote")
        assert r2.cli("network", "get", net, "user.tag").stdout == "remote\n"
        assert "user.tag: remote" in lx("network", "show", "r2:" + net).stdout
        lx("network", "info", "r2:" + net)
        assert json.loads(lx("network", "forward", "list", "r2:" + net, "--format",
                             "json").stdout) == []
        lx("network", "delete", "r2:" + net)
        assert net not in names(r2, "network", "list")
        assert not nettest.link_exists(net)

        # ---- storage pools and volumes
        assert "default" in names(lxmd, "storage", "list", "r2:", env=conf)
        assert "name: default" in lx("storage", "show", "r2:default").stdout
        lx("storage", "info", "r2:default")
        lx("storage", "volume", "create", "r2:default", vol)
        assert vol in names(r2, "storage", "volume", "list", "default")
        assert vol not in names(lxmd, "storage", "volume", "list", "default")
        assert vol in names(lxmd, "storage", "volume", "list", "r2:default", env=conf)
        assert "name: " + vol in lx("storage", "volume", "show", "r2:default", vol).stdout
        lx("storage", "volume", "rename", "r2:default", vol, vol + "b")
        assert names(r2, "storage", "volume", "list", "default").count(vol + "b") == 1
        lx("storage", "volume", "delete", "r2:default", vol + "b")
        assert vol + "b" not in names(r2, "storage", "volume", "list", "default")

        # ---- images and operations
        fps = [i["fingerprint"] for i in json.loads(r2.cli("image", "list", "--format",
                                                          "json").stdout)]
        assert [i["fingerprint"] for i in json.loads(
            lx("image", "list", "r2:", "--format", "json").stdout)] == fps
        lx("operation", "list", "r2:")

        # ---- errors
        failed(lx("network", "show", "r9:" + net, check=False), "r9", "unknown remote")
        failed(lx("storage", "list", "r9:", check=False), "r9")
        failed(lx("profile", "list", "r2:x", check=False), "r2:x")
        failed(lx("profile", "show", "r2:", check=False), "r2:")
    finally:
        r2.cli("delete", "-f", name, check=False)
        r2.cli("profile", "delete", prof, check=False)
        lxmd.cli("profile", "delete", prof, check=False)
        r2.cli("network", "delete", net, check=False)
        for v in (vol, vol + "b"):
            r2.cli("storage", "volume", "delete", "default", v, check=False)
    assert not nettest.link_exists(net)

