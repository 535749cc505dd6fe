"""The Debian image from the user's side: `lxm launch debian NAME` on a private lxmd, then what a
user checks inside (systemd up with no failed unit, PID 1, hostname, root shell, apt, locale,
timezone, networkd), a clean systemd shutdown on `lxm stop`, the aliases, reuse of the stored image,
publish and export/import.

One build per test run: the image is built by lxmd (templates/debian/build, debootstrap from the
system's Debian mirror) on the first `lxm launch debian`, and that takes a minute, so the whole
module shares ONE private daemon (the module-scoped `deb` fixture) and one long-lived instance
(`d1`) launched by that first launch. A module daemon was chosen over building once and importing
an export into each test's daemon because two of the checks are about that daemon's store itself
(a second launch reuses the built image without rebuilding; the three aliases name it) and
because importing and unpacking the ~55 MB image for every test would cost more than the tests.
Tests do not depend on their order: `d1` is brought back to a booted state before each test that
uses it, and every other instance or image a test makes is deleted by that test. The
export/import test starts a second private daemon of its own. When the Debian mirror does not
answer, the build cannot happen and the tests are skipped with the mirror's error; any other
build failure is a test error.
"""

import json
import os
import re
import time

import pytest

import lxmtest
from lxmtest import assert_sync, unique
from test_template_debian import MIRROR, mirror_reachable

BUILD_LINE = "image 'debian/bookworm': building it with"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# A failed unit is only excused when the host kernel plainly lacks what the unit needs: these
# units mount or read a kernel interface, and the check says whether the host has it at all. A
# container cannot get a filesystem type its kernel was built without, so such a failure is the
# host's and not lxm's; anything else failing (a missing device node, a read-only path lxm should
# have made writable, a denied syscall, a cgroup not delegated) is lxm's to fix, and fails the test.


def _host_lacks_fs(fstype):
    with open("/proc/filesystems") as f:
        return fstype not in {line.split()[-1] for line in f if line.strip()}


HOST_FAULT = {
    "sys-kernel-config.mount": (lambda: _host_lacks_fs("configfs"),
                                "the host kernel has no configfs"),
    "sys-fs-fuse-connections.mount": (lambda: _host_lacks_fs("fusectl"),
                                      "the host kernel has no fusectl"),
    "proc-sys-fs-binfmt_misc.mount": (lambda: _host_lacks_fs("binfmt_misc"),
                                      "the host kernel has no binfmt_misc"),
    "systemd-journald-audit.socket": (lambda: not os.path.exists("/proc/self/loginuid"),
                                      "the host kernel has no audit support"),
}


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def deb():
    """A private lxmd for the whole module; stopped and checked like conftest's `lxmd`."""
    ok, why = mirror_reachable()
    if not ok:
        pytest.skip("the Debian mirror is unreachable, so the debian image cannot be built: " + why)
    d = lxmtest.Lxmd()
    d.start()
    d.made = []  # instances to delete at the end, whatever the tests did
    yield d
    errors = []
    for name in d.made:
        d.cli("delete", "-f", name, check=False, timeout=120)
        left = lxmtest.cgroup_dirs(name)
        if left:
            errors.append("cgroups of %s left behind: %r" % (name, left))
    rc = d.stop(10)
    if rc != 0:
        errors.append("lxmd (%s) exited with %r after SIGTERM, expected 0 within 10 s:\n%s"
                      % (d.base, rc, d.stderr_text()[-6000:]))
    left = d.cleanup()
    if left:
        errors.append("processes left behind under %s: %r" % (d.base, left))
    if os.path.exists(d.base):
        errors.append("%s not removed" % d.base)
    assert not errors, "\n".join(errors)


@pytest.fixture(autouse=True)
def _report_daemons(request):
    """Lets conftest attach the daemons' logs to a failed test's report."""
    request.node._lxm_daemons = []
    if "deb" in request.fixturenames:
        request.node._lxm_daemons.append(request.getfixturevalue("deb"))
    return request.node._lxm_daemons


def lxm(d, *args, timeout=120):
    return d.cli(*args, timeout=timeout)


def exec_out(d, name, *cmd):
    return d.cli("exec", name, "--", *cmd, timeout=60).stdout


def system_state(d, name, timeout=120):
    """`systemctl is-system-running --wait` in name, retried while systemd's bus is not up yet
    (right after a start the exec can come before dbus or even before systemd's own socket).
    Returns (state, seconds waited)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    last = None
    while True:
        p = d.cli("exec", name, "--", "systemctl", "is-system-running", "--wait", check=False,
                  timeout=timeout)
        state = p.stdout.strip()
        last = p
        # With --wait it only returns "starting"/"initializing" when the bus went away under it.
        if state not in ("", "offline", "unknown", "starting", "initializing"):
            return state, time.monotonic() - t0
        if time.monotonic() >= deadline:
            raise AssertionError("systemd in %s did not settle within %ss; last answer: rc %d, "
                                 "stdout %r, stderr %r" % (name, timeout, last.returncode,
                                                           last.stdout, last.stderr))
        time.sleep(0.1)


def failed_units(d, name):
    out = exec_out(d, name, "systemctl", "--failed", "--plain", "--no-legend", "--no-pager")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def unit_report(d, name, units):
    """systemctl status of each unit (with its last journal lines), for an assertion message."""
    parts = []
    for u in units:
        p = d.cli("exec", name, "--", "systemctl", "status", "--no-pager", "--lines=15", u,
                  check=False, timeout=60)
        parts.append(p.stdout + p.stderr)
    return "\n".join(parts)


def assert_booted(d, name):
    """systemd reached "running"; a degraded system names its failed units, and only units the
    host plainly cannot support (HOST_FAULT) are excused."""
    state, waited = system_state(d, name)
    assert state in ("running", "degraded"), \
        "systemd in %s is %r after %.1f s, expected running or degraded" % (name, state, waited)
    failed = failed_units(d, name)
    excused = {u: HOST_FAULT[u][1] for u in failed if u in HOST_FAULT and HOST_FAULT[u][0]()}
    blamed = [u for u in failed if u not in excused]
    assert not blamed, "systemd in %s is %s with failed units %s (excused as the host's: %r):\n%s" \
        % (name, state, blamed, excused, unit_report(d, name, blamed))
    if state == "degraded":
        assert excused, "systemd in %s is degraded but `systemctl --failed` lists nothing" % name
    return state, waited


def builds(d):
    return d.log_text().count(BUILD_LINE)


def image_fingerprint(d, ref):
    out = lxm(d, "image", "info", ref).stdout
    m = re.search(r"^Fingerprint: ([0-9a-f]{64})$", out, re.M)
    assert m, "no fingerprint in `lxm image info %s`:\n%s" % (ref, out)
    return m.group(1)


def image_fingerprints(d):
    return sorted(u.rsplit("/", 1)[1] for u in assert_sync(d.api("GET", "/1.0/images")))


def status(d, name):
    return assert_sync(d.api("GET", "/1.0/instances/" + name))["status"]


@pytest.fixture(scope="module")
def first_launch(deb):
    """`lxm launch debian d1` on the fresh daemon: this builds the image. (name, seconds)."""
    assert image_fingerprints(deb) == []
    name = unique("d1")
    deb.made.append(name)
    t0 = time.monotonic()
    p = lxm(deb, "launch", "debian", name, timeout=1800)
    took = time.monotonic() - t0
    print("first `lxm launch debian` (builds the image from %s): %.1f s" % (MIRROR, took))
    assert builds(deb) == 1, "the first launch did not build the image:\n" + p.stdout + p.stderr
    return name, took


@pytest.fixture
def d1(deb, first_launch):
    """The first instance, running and booted whatever an earlier test left it in."""
    name = first_launch[0]
    if status(deb, name) != "Running":
        lxm(deb, "start", name)
    system_state(deb, name)
    return name


# ---------------------------------------------------------------- inside the instance

def test_systemd_reaches_running(deb, d1):
    state, _ = assert_booted(deb, d1)
    print("systemd in %s: %s" % (d1, state))


def test_pid1_is_systemd(deb, d1):
    assert exec_out(deb, d1, "cat", "/proc/1/comm") == "systemd\n"
    exe = exec_out(deb, d1, "readlink", "/proc/1/exe").strip()
    assert exe.endswith("/systemd/systemd"), exe
    # systemd knows it is in a container (that is what makes it skip hardware units).
    p = deb.cli("exec", d1, "--", "systemd-detect-virt", "--container", check=False)
    assert p.returncode == 0 and p.stdout.strip() not in ("", "none"), (p.stdout, p.stderr)


def test_hostname_is_the_instance_name(deb, d1):
    assert exec_out(deb, d1, "hostname") == d1 + "\n"
    assert exec_out(deb, d1, "cat", "/etc/hostname") == d1 + "\n"
    hosts = exec_out(deb, d1, "cat", "/etc/hosts")
    assert re.search(r"^127\.0\.1\.1\s+%s$" % re.escape(d1), hosts, re.M), hosts
    assert re.search(r"^127\.0\.0\.1\s+localhost$", hosts, re.M), hosts
    # What the name resolves to inside, through the hosts file.
    assert exec_out(deb, d1, "getent", "hosts", d1).split() == ["127.0.1.1", d1]


def test_exec_is_root_with_its_home(deb, d1):
    assert exec_out(deb, d1, "id", "-u") == "0\n"
    assert exec_out(deb, d1, "id", "-un") == "root\n"
    assert exec_out(deb, d1, "sh", "-c", "echo $HOME") == "/root\n"
    assert exec_out(deb, d1, "pwd") == "/root\n"
    # A command that does not exist is the shell's 127, with the reason on stderr.
    p = deb.cli("exec", d1, "--", "no-such-command", check=False)
    assert p.returncode == 127, (p.returncode, p.stdout, p.stderr)
    assert "no-such-command" in p.stderr


def test_apt_sources(deb, d1):
    text = exec_out(deb, d1, "cat", "/etc/apt/sources.list.d/debian.sources")
    stanzas = [dict(line.split(": ", 1) for line in s.splitlines() if line)
               for s in text.strip().split("\n\n")]
    suites = sorted(x for s in stanzas for x in s["Suites"].split())
    assert suites == ["bookworm", "bookworm-security", "bookworm-updates"], text
    assert stanzas[0]["URIs"] == MIRROR, text
    # apt itself reads them: its configuration names the keyring they are signed with.
    for s in stanzas:
        assert exec_out(deb, d1, "test", "-s", s["Signed-By"]) == ""
    out = exec_out(deb, d1, "apt-get", "--print-uris", "-q", "-o",
                   "Debug::NoLocking=1", "update")
    assert "%s/dists/bookworm/InRelease" % MIRROR in out, out


def test_locale_and_timezone(deb, d1):
    assert "LANG=C.UTF-8" in exec_out(deb, d1, "localectl", "status")
    assert exec_out(deb, d1, "timedatectl", "show", "-p", "Timezone", "--value") == "Etc/UTC\n"
    assert exec_out(deb, d1, "date", "+%Z") == "UTC\n"
    assert "C.utf8" in exec_out(deb, d1, "locale", "-a").split()
    # A UTF-8 locale really is in effect for a login-style shell.
    assert exec_out(deb, d1, "sh", "-c", ". /etc/default/locale; export LANG; locale charmap") \
        == "UTF-8\n"


def test_networkd_is_running_with_the_eth0_config(deb, d1):
    # No nic yet, so no address to check: the service runs and would configure eth0 by DHCP.
    assert exec_out(deb, d1, "systemctl", "is-active", "systemd-networkd") == "active\n"
    assert exec_out(deb, d1, "systemctl", "is-active", "systemd-resolved") == "active\n"
    cfg = exec_out(deb, d1, "cat", "/etc/systemd/network/eth0.network")
    assert re.search(r"^Name=eth0$", cfg, re.M), cfg
    assert re.search(r"^DHCP=yes$", cfg, re.M), cfg
    links = exec_out(deb, d1, "networkctl", "list", "--no-legend", "--no-pager")
    assert re.search(r"^\s*1 lo\s", links, re.M), links


# ---------------------------------------------------------------- life cycle

def test_stop_is_a_clean_systemd_halt_and_start_boots_again(deb, d1):
    pid_before = assert_sync(deb.api("GET", "/1.0/instances/%s/state" % d1))["pid"]
    t0 = time.monotonic()
    # With a 30 s timeout lxmd would kill an init that does not halt: a stop well below it
    # finished by itself.
    lxm(deb, "stop", "--timeout", "30", d1)
    took = time.monotonic() - t0
    print("clean stop of %s: %.2f s" % (d1, took))
    assert status(deb, d1) == "Stopped"
    assert took < 10, "stop took %.1f s (systemd halts in well under that)" % took
    console = ANSI.sub("", lxm(deb, "console", d1, "--show-log").stdout)
    tail = [line.strip() for line in console.splitlines() if line.strip()][-30:]
    assert any("System Shutdown" in line for line in tail), "\n".join(tail)
    assert re.search(r"^(Halting system|Powering off)\.?$", tail[-1]), \
        "systemd's shutdown did not finish; console ends with:\n" + "\n".join(tail)
    # lxmd's record of the end: init died of the kernel's halt signal, not of SIGKILL.
    ends = [json.loads(m.group(1)) for m in
            re.finditer(r"instance '%s' stopped: (\{.*\})$" % re.escape(d1), deb.log_text(), re.M)]
    assert ends, "lxmd logged no end for %s" % d1
    assert ends[-1].get("signal") != 9, ends[-1]

    t0 = time.monotonic()
    lxm(deb, "start", d1)
    state, waited = assert_booted(deb, d1)
    print("start of %s to systemd %s: %.2f s" % (d1, state, time.monotonic() - t0))
    pid_after = assert_sync(deb.api("GET", "/1.0/instances/%s/state" % d1))["pid"]
    assert pid_after > 0 and pid_after != pid_before
    assert exec_out(deb, d1, "hostname") == d1 + "\n"


def test_copy_renders_hostname_again_and_boots(deb, d1):
    """`lxm copy` of a running Debian instance: the copy's hostname files are its own (the
    image's "copy" templates), it boots on its own, and the source keeps running."""
    name = unique("dc")
    deb.made.append(name)
    lxm(deb, "copy", d1, name)
    assert status(deb, d1) == "Running"
    lxm(deb, "start", name)
    assert_booted(deb, name)
    assert exec_out(deb, name, "cat", "/etc/hostname") == name + "\n"
    assert exec_out(deb, name, "hostname") == name + "\n"
    assert name in exec_out(deb, name, "cat", "/etc/hosts")
    assert exec_out(deb, d1, "hostname") == d1 + "\n"
    lxm(deb, "delete", "-f", name)


# ---------------------------------------------------------------- the image in the store

def test_aliases_name_one_image(deb, first_launch):
    fps = {a: image_fingerprint(deb, a) for a in ("debian", "debian/12", "debian/bookworm")}
    assert len(set(fps.values())) == 1, fps
    fp = fps["debian"]
    config = assert_sync(deb.api("GET", "/1.0/instances/" + first_launch[0]))["config"]
    assert config["volatile.base_image"] == fp
    info = lxm(deb, "image", "info", "debian").stdout
    assert re.search(r"^\s*os: Debian$", info, re.M | re.I), info
    assert re.search(r"^\s*release: bookworm$", info, re.M), info


def test_second_launch_reuses_the_image(deb, first_launch):
    fp = image_fingerprint(deb, "debian")
    n = builds(deb)
    name = unique("d2")
    deb.made.append(name)
    t0 = time.monotonic()
    lxm(deb, "launch", "debian", name)
    took = time.monotonic() - t0
    print("second `lxm launch debian` (image in the store): %.2f s (the first: %.1f s)"
          % (took, first_launch[1]))
    assert builds(deb) == n, "the second launch built the image again"
    assert fp in image_fingerprints(deb)
    assert assert_sync(deb.api("GET", "/1.0/instances/" + name))["config"][
        "volatile.base_image"] == fp
    assert took < 5, "a launch from the stored image took %.1f s" % took
    assert_booted(deb, name)
    assert exec_out(deb, name, "hostname") == name + "\n"
    lxm(deb, "delete", "-f", name)
    deb.made.remove(name)


def test_publish_then_launch_keeps_the_files(deb, d1):
    exec_out(deb, d1, "sh", "-c", "echo 'published by lxm-it' > /root/marker")
    lxm(deb, "stop", "--timeout", "30", d1)
    alias = unique("pub")
    out = lxm(deb, "publish", d1, "--alias", alias, timeout=600).stdout
    m = re.search(r"\b([0-9a-f]{64})\b", out)
    assert m, "publish printed no fingerprint: %r" % out
    fp = m.group(1)
    try:
        assert image_fingerprint(deb, alias) == fp
        assert fp != image_fingerprint(deb, "debian")
        copy = unique("p")
        deb.made.append(copy)
        lxm(deb, "launch", alias, copy)
        assert_booted(deb, copy)
        assert exec_out(deb, copy, "cat", "/root/marker") == "published by lxm-it\n"
        # The image's templates still apply to instances made from the published image.
        assert exec_out(deb, copy, "hostname") == copy + "\n"
        lxm(deb, "delete", "-f", copy)
        deb.made.remove(copy)
    finally:
        deb.cli("image", "delete", fp, check=False)
    assert fp not in image_fingerprints(deb)


def test_export_import_into_another_daemon_keeps_the_fingerprint(deb, first_launch, tmp_path,
                                                                  _report_daemons):
    fp = image_fingerprint(deb, "debian")
    lxm(deb, "image", "export", "debian", str(tmp_path))
    files = os.listdir(tmp_path)
    assert len(files) == 1, files
    path = os.path.join(tmp_path, files[0])

    other = lxmtest.Lxmd()
    _report_daemons.append(other)
    try:
        other.start()
        out = lxm(other, "image", "import", path, "--alias", "debian", timeout=600).stdout
        assert fp in out, out
        assert image_fingerprints(other) == [fp]
        assert image_fingerprint(other, "debian") == fp
        # The alias names the imported image there: launching it does not build anything.
        name = unique("imp")
        lxm(other, "launch", "debian", name)
        try:
            assert other.log_text().count(BUILD_LINE) == 0
            assert_booted(other, name)
            assert 'VERSION_CODENAME=bookworm' in exec_out(other, name, "cat", "/etc/os-release")
        finally:
            other.cli("delete", "-f", name, check=False)
        assert lxmtest.cgroup_dirs(name) == []
        other.stop_checked()
    finally:
        left = other.cleanup()
    assert not left, "processes left behind under %s: %r" % (other.base, left)
    assert not os.path.exists(other.base)
