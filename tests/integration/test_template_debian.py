"""The Debian image template (templates/debian/build), without lxmd.

The image is built once per test session with debootstrap from the Debian mirror and cached in
/var/cache/lxm-test/debian-<release>-<hash of the script>, so later runs reuse it until the script
changes. The tests are skipped only when the mirror does not answer. Booting the image is
test_images' business; here the files on disk are checked.
"""

import configparser
import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest
import yaml

from lxmtest import REPO

BUILD = os.path.join(REPO, "templates", "debian", "build")
RELEASE = "bookworm"
CACHE_ROOT = "/var/cache/lxm-test"


def system_mirror():
    """The first Debian archive URL of the host's apt sources, as the script picks it."""
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")) + \
        sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    for path in files:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                lines = [l for l in stanza.splitlines() if not l.lstrip().startswith("#")]
                fields = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                          for l in lines if ":" in l and not l.startswith((" ", "\t"))}
                if "deb" not in fields.get("types", "").split():
                    continue
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    if re.match(r"^https?://\S*/debian/?$", uri):
                        return uri.rstrip("/")
        else:
            for line in text.splitlines():
                words = line.split()
                if not words or words[0] != "deb":
                    continue
                rest = words[1:]
                if rest and rest[0].startswith("["):
                    while rest and not rest[0].endswith("]"):
                        rest = rest[1:]
                    rest = rest[1:]
                if rest and re.match(r"^https?://\S*/debian/?$", rest[0]):
                    return rest[0].rstrip("/")
    return "http://deb.debian.org/debian"


MIRROR = system_mirror()


def mirror_reachable():
    url = "%s/dists/%s/InRelease" % (MIRROR, RELEASE)
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status == 200, "%s: HTTP %d" % (url, r.status)
    except Exception as e:  # noqa: BLE001 - any failure means "unreachable"
        return False, "%s: %s" % (url, e)


def script_hash():
    with open(BUILD, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def run(args, timeout=60, env=None):
    return subprocess.run([BUILD] + list(args), capture_output=True, text=True, timeout=timeout,
                          env=env)


def mounts_under(path):
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                found.append(mp)
    return found


@pytest.fixture(scope="module")
def image():
    """(outdir, build stdout) of the cached image, building it first when needed."""
    out = os.path.join(CACHE_ROOT, "debian-%s-%s" % (RELEASE, script_hash()))
    log = out + ".stdout"
    if not (os.path.exists(os.path.join(out, "metadata.yaml")) and os.path.exists(log)):
        ok, why = mirror_reachable()
        if not ok:
            pytest.skip("the Debian mirror is unreachable: " + why)
        # Builds of older versions of the script are of no use any more.
        for old in glob.glob(os.path.join(CACHE_ROOT, "debian-%s-*" % RELEASE)):
            assert not mounts_under(old), "mounts under %s" % old
            if os.path.isdir(old):
                shutil.rmtree(old)
            else:
                os.unlink(old)
        # Seeded with the remains of an earlier build and of a killed one: --force must
        # replace the first and sweep the second (checked in test_force_replaced_old_build).
        os.makedirs(os.path.join(out, "rootfs", "old-build"))
        os.makedirs(os.path.join(out, ".build.killed", "rootfs"))
        with open(os.path.join(out, "metadata.yaml"), "w") as f:
            f.write("architecture: old\n")
        env = dict(os.environ, SOURCE_DATE_EPOCH="1767225600")  # 2026-01-01 00:00:00 UTC
        t0 = time.monotonic()
        r = run([out, "--force", "--release", "12"], timeout=1200, env=env)
        if r.returncode != 0:
            shutil.rmtree(out, ignore_errors=True)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        print("debian image built in %.0f s" % (time.monotonic() - t0))
        with open(log, "w") as f:
            f.write(r.stdout)
    with open(log) as f:
        stdout = f.read()
    return out, stdout


def rootfs_path(image, path):
    return os.path.join(image[0], "rootfs", path.lstrip("/"))


def read(image, path):
    with open(rootfs_path(image, path)) as f:
        return f.read()


# ---------------------------------------------------------------- argument handling (no network)

@pytest.mark.parametrize("args,message", [
    (["--release", "14"], "unsupported release '14'"),
    (["--release", "sid"], "unsupported release 'sid'"),
    (["--bogus"], "unknown option '--bogus'"),
    (["--release"], "option '--release' needs a value"),
    (["--mirror", "ftp://example.org/debian"], "invalid --mirror"),
    (["--arch", "mips"], "cannot build mips images"),
])
def test_argument_errors(args, message):
    d = tempfile.mkdtemp(prefix="lxm-it-debian-")
    try:
        out = os.path.join(d, "image")
        r = run([out] + args)
        assert r.returncode != 0
        assert message in r.stderr, r.stderr
        assert not os.path.exists(out), "a refused build created its output directory"
    finally:
        shutil.rmtree(d)


def test_no_outdir_is_usage_error():
    r = run([])
    assert r.returncode == 2
    assert "usage:" in r.stderr


def test_non_empty_outdir_needs_force():
    d = tempfile.mkdtemp(prefix="lxm-it-debian-")
    try:
        with open(os.path.join(d, "metadata.yaml"), "w") as f:
            f.write("old\n")
        r = run([d])
        assert r.returncode != 0
        assert "pass --force" in r.stderr, r.stderr
        with open(os.path.join(d, "metadata.yaml")) as f:
            assert f.read() == "old\n"
    finally:
        shutil.rmtree(d)


def test_failed_force_rebuild_keeps_old_image():
    """--force with a mirror that refuses connections (loopback port 9): debootstrap fails,
    the old image stays as it was and no staging directory or mount is left."""
    d = tempfile.mkdtemp(prefix="lxm-it-debian-")
    try:
        os.makedirs(os.path.join(d, "rootfs", "etc"))
        with open(os.path.join(d, "metadata.yaml"), "w") as f:
            f.write("architecture: old\n")
        with open(os.path.join(d, "rootfs", "etc", "marker"), "w") as f:
            f.write("old\n")
        r = run([d, "--force", "--mirror", "http://127.0.0.1:9/debian"], timeout=300)
        assert r.returncode != 0
        assert "debootstrap" in r.stderr and "failed" in r.stderr, r.stderr
        assert "stage: bootstrap" in r.stdout
        assert sorted(os.listdir(d)) == ["metadata.yaml", "rootfs"]
        with open(os.path.join(d, "rootfs", "etc", "marker")) as f:
            assert f.read() == "old\n"
        assert not mounts_under(d)
    finally:
        shutil.rmtree(d)


# ---------------------------------------------------------------- the built image

def test_metadata(image):
    with open(os.path.join(image[0], "metadata.yaml")) as f:
        meta = yaml.safe_load(f)
    assert meta["architecture"] == {"x86_64": "x86_64", "aarch64": "aarch64"}[os.uname().machine]
    assert meta["creation_date"] == 1767225600, "SOURCE_DATE_EPOCH is honoured"
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True).stdout.strip()
    assert meta["properties"] == {
        "os": "Debian",
        "release": "bookworm",
        "version": "12",
        "architecture": arch,
        "variant": "default",
        "init": "systemd",
        "description": "Debian bookworm %s (20260101)" % arch,
    }
    assert meta["templates"] == {
        "/etc/hostname": {"when": ["create", "copy"], "template": "hostname.tpl"},
        "/etc/hosts": {"when": ["create", "copy"], "template": "hosts.tpl"},
    }


def test_templates(image):
    tdir = os.path.join(image[0], "templates")
    assert sorted(os.listdir(tdir)) == ["hostname.tpl", "hosts.tpl"]
    with open(os.path.join(tdir, "hostname.tpl")) as f:
        assert f.read() == "{{ instance.name }}\n"
    with open(os.path.join(tdir, "hosts.tpl")) as f:
        hosts = f.read()
    assert re.search(r"^127\.0\.1\.1\s+\{\{ instance\.name \}\}$", hosts, re.M), hosts
    assert re.search(r"^127\.0\.0\.1\s+localhost$", hosts, re.M), hosts
    # The placeholder in the rootfs, not the build host's name.
    assert read(image, "/etc/hostname") == "debian\n"
    assert os.uname().nodename != "debian"


def test_progress_output(image):
    lines = image[1].splitlines()
    stages = [l.split(": ", 1)[1] for l in lines if l.startswith("stage: ")]
    assert stages == ["bootstrap", "install", "configure", "clean"], stages
    # Progress lines: integers, done <= total, never going back within one total, and each
    # sequence (download bytes, then packages) ends complete.
    seqs = {}
    stage = None
    for l in lines:
        if l.startswith("stage: "):
            stage = l.split(": ", 1)[1]
        elif l.startswith("progress: "):
            done, total = (int(x) for x in l.split()[1:])
            assert 0 <= done <= total and total > 0, l
            assert stage in ("bootstrap", "install"), "progress outside debootstrap: " + l
            seqs.setdefault((stage, total), []).append(done)
    assert {s for s, _ in seqs} == {"bootstrap", "install"}, seqs.keys()
    for (stage, total), dones in seqs.items():
        assert dones == sorted(dones), (stage, total)
        assert dones[-1] == total, (stage, total, dones[-5:])
    # The download is counted in bytes: the packages of a minimal system are tens of MB.
    (download_total,) = [t for s, t in seqs if s == "bootstrap"]
    assert download_total > 10 * 1024 * 1024
    assert "from %s" % MIRROR in image[1], "the default mirror is the system's"


def test_force_replaced_old_build(image):
    assert sorted(os.listdir(image[0])) == ["metadata.yaml", "rootfs", "templates"], \
        "a killed build's staging directory was not swept"
    assert not os.path.exists(rootfs_path(image, "old-build")), "old rootfs not replaced"


def test_init_is_systemd(image):
    init = rootfs_path(image, "/sbin/init")
    assert os.path.islink(init)
    target = os.readlink(init)
    assert target.endswith("/systemd/systemd"), target
    assert os.access(rootfs_path(image, target), os.X_OK)


def test_networkd(image):
    wants = rootfs_path(image, "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
    assert os.path.islink(wants), "systemd-networkd is not enabled"
    assert os.readlink(wants).endswith("/systemd-networkd.service")
    assert os.path.exists(rootfs_path(image, os.readlink(wants)))
    cfg = configparser.ConfigParser()
    cfg.optionxform = str
    cfg.read_string(read(image, "/etc/systemd/network/eth0.network"))
    assert cfg["Match"]["Name"] == "eth0"
    assert cfg["Network"]["DHCP"] == "yes"
    # DNS from the lease reaches programs through resolved's stub.
    assert os.readlink(rootfs_path(image, "/etc/resolv.conf")) == \
        "../run/systemd/resolve/stub-resolv.conf"
    assert os.path.islink(rootfs_path(
        image, "/etc/systemd/system/sysinit.target.wants/systemd-resolved.service"))
    assert os.path.exists(rootfs_path(image, "/sbin/ip")) or \
        os.path.exists(rootfs_path(image, "/bin/ip"))


def test_masked_units(image):
    for unit in ("e2scrub_reap.service", "e2scrub_all.timer"):
        p = rootfs_path(image, "/etc/systemd/system/" + unit)
        assert os.path.islink(p) and os.readlink(p) == "/dev/null", unit
    assert not os.path.lexists(rootfs_path(
        image, "/etc/systemd/system/multi-user.target.wants/e2scrub_reap.service"))


def test_root_account(image):
    root = [l for l in read(image, "/etc/passwd").splitlines() if l.startswith("root:")]
    assert root == ["root:x:0:0:root:/root:/bin/bash"]
    shadow = [l for l in read(image, "/etc/shadow").splitlines() if l.startswith("root:")]
    assert len(shadow) == 1 and shadow[0].split(":")[1] == "*", "root's password is not locked"
    assert os.access(rootfs_path(image, "/bin/bash"), os.X_OK)


def test_apt_sources(image):
    assert not os.path.exists(rootfs_path(image, "/etc/apt/sources.list"))
    text = read(image, "/etc/apt/sources.list.d/debian.sources")
    stanzas = [dict(l.split(": ", 1) for l in s.splitlines() if l)
               for s in text.strip().split("\n\n")]
    assert len(stanzas) == 2, text
    main, security = stanzas
    assert main["URIs"] == MIRROR
    assert main["Suites"].split() == ["bookworm", "bookworm-updates"]
    assert security["URIs"].endswith("/debian-security")
    assert security["Suites"] == "bookworm-security"
    for s in stanzas:
        assert s["Types"] == "deb" and s["Components"] == "main"
        assert os.path.exists(rootfs_path(image, s["Signed-By"]))


def test_locale_and_timezone(image):
    assert read(image, "/etc/default/locale") == "LANG=C.UTF-8\n"
    assert os.path.isdir(rootfs_path(image, "/usr/lib/locale/C.utf8"))
    assert os.readlink(rootfs_path(image, "/etc/localtime")) == "/usr/share/zoneinfo/Etc/UTC"
    assert os.path.exists(rootfs_path(image, "/usr/share/zoneinfo/Etc/UTC"))
    assert read(image, "/etc/timezone") == "Etc/UTC\n"


def test_clean(image):
    assert read(image, "/etc/machine-id") == "", "every instance must get its own machine id"
    assert not glob.glob(rootfs_path(image, "/var/cache/apt/archives/*.deb"))
    assert not glob.glob(rootfs_path(image, "/var/cache/apt/*.bin"))
    lists = [f for f in os.listdir(rootfs_path(image, "/var/lib/apt/lists"))
             if f not in ("partial", "lock", "auxfiles")]
    assert lists == [], lists
    assert not os.path.exists(rootfs_path(image, "/debootstrap"))
    st = os.lstat(rootfs_path(image, "/usr/bin/apt"))
    assert st.st_uid == 0 and st.st_gid == 0
    assert not mounts_under(image[0])
