"""Files in instances: `lxm file push/pull/delete` and /1.0/instances/NAME/files as lxc and pylxd
use it, against a stopped busybox instance and a running one.

Paths resolve inside the instance's rootfs: symlinks the container made (to /etc/shadow, to
../../..) and ".." never reach the host. Pushes are atomic (temporary file + rename) and streamed:
a body cut short leaves the old file and no temporary file, and lxmd's memory does not grow with
the size of what is pushed.
"""

import hashlib
import os
import stat
import subprocess
import threading
import time
import urllib.parse

import pytest

from lxmtest import assert_error_envelope, assert_sync, chunked, http_request, unique, wait_for

MiB = 1024 * 1024


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture
def stopped(lxmd):
    """Creates stopped busybox instances (`lxm init`); deletes them at the end."""
    names = []

    def init(name=None):
        name = name or unique("f")
        lxmd.cli("init", "busybox", name, timeout=120)
        names.append(name)
        return name

    yield init
    for name in names:
        lxmd.cli("delete", "-f", name, check=False)
        assert not os.path.exists(os.path.join(lxmd.root, "containers", name))


@pytest.fixture(params=["stopped", "running"])
def inst(request, lxmd, stopped, launched):
    """One instance, stopped or running: the files API works on both through the rootfs."""
    name = stopped() if request.param == "stopped" else launched()
    st = assert_sync(lxmd.api("GET", "/1.0/instances/%s/state" % name))
    assert st["status"] == ("Stopped" if request.param == "stopped" else "Running"), st
    return name


def rootfs(lxmd, name):
    return os.path.join(lxmd.root, "containers", name, "rootfs")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(os.urandom(n))
            left -= n


def files_url(name, path, prefix="/1.0/instances"):
    return "%s/%s/files?path=%s" % (prefix, name, urllib.parse.quote(path, safe=""))


def lxm(lxmd, *args, input=b"", timeout=120):
    """The CLI with bytes in and out."""
    return subprocess.run([lxmd.lxm_bin] + [str(a) for a in args], env=lxmd.cli_env(),
                          input=input, capture_output=True, timeout=timeout)


def temp_entries(directory):
    return [e for e in os.listdir(directory) if e.startswith(".lxm-push.")]


def uneven_chunked(data):
    """data in chunked encoding, in uneven pieces (1 byte up to 64 KiB)."""
    sizes, n = [], 1
    while sum(sizes) < len(data):
        sizes.append(n)
        n = n * 3 % 65536 + 1
    return chunked(data, sizes)


def rss_kib(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


# ---------------------------------------------------------------- push / pull

def test_extensions_advertised(lxmd):
    exts = assert_sync(lxmd.api("GET", "/1.0"))["api_extensions"]
    for e in ("file_delete", "file_append", "directory_manipulation", "file_symlinks"):
        assert e in exts, exts


def test_round_trip_20mib(lxmd, inst, tmp_path):
    src = str(tmp_path / "big.bin")
    write_random(src, 20 * MiB)
    os.chmod(src, 0o600)
    want = sha256_file(src)
    lxmd.cli("file", "push", src, "%s/root/big.bin" % inst)
    on_disk = os.path.join(rootfs(lxmd, inst), "root", "big.bin")
    assert sha256_file(on_disk) == want
    st = os.lstat(on_disk)
    # Mode and owner of the local file, as lxc does it.
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0 and st.st_gid == 0
    dst = str(tmp_path / "back.bin")
    lxmd.cli("file", "pull", "%s/root/big.bin" % inst, dst)
    assert sha256_file(dst) == want
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o600
    assert temp_entries(os.path.join(rootfs(lxmd, inst), "root")) == []


def test_mode_uid_gid_applied(lxmd, inst, tmp_path):
    src = tmp_path / "f.txt"
    src.write_bytes(b"owned\n")
    lxmd.cli("file", "push", "--mode", "0640", "--uid", "1000", "--gid", "1001", str(src),
             "%s/root/f.txt" % inst)
    st = os.lstat(os.path.join(rootfs(lxmd, inst), "root", "f.txt"))
    # On disk the ids are the container's (the rootfs is idmapped for the container).
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1000, 1001)
    r = lxmd.api("GET", files_url(inst, "/root/f.txt"))
    assert r.status == 200 and r.raw == b"owned\n"
    assert r.headers.get("X-LXD-type") == "file"
    assert r.headers.get("X-LXD-mode") == "0640"
    assert r.headers.get("X-LXD-uid") == "1000" and r.headers.get("X-LXD-gid") == "1001"
    # A replacement without mode or owner keeps the old file's.
    r = lxmd.api("POST", files_url(inst, "/root/f.txt"), b"new\n")
    assert_sync(r)
    st = os.lstat(os.path.join(rootfs(lxmd, inst), "root", "f.txt"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1000, 1001)
    # A new file without headers: 0644 root:root.
    assert_sync(lxmd.api("POST", files_url(inst, "/root/g.txt"), b"g"))
    st = os.lstat(os.path.join(rootfs(lxmd, inst), "root", "g.txt"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o644, 0, 0)
    # Set-id bits survive the chown.
    assert_sync(lxmd.api("POST", files_url(inst, "/root/s"), b"s",
                         {"X-LXD-mode": "4755", "X-LXD-uid": "5"}))
    st = os.lstat(os.path.join(rootfs(lxmd, inst), "root", "s"))
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_uid == 5


def test_running_container_sees_pushed_file(lxmd, launched, tmp_path):
    name = launched()
    src = tmp_path / "hello"
    src.write_bytes(b"from the host\n")
    lxmd.cli("file", "push", "--uid", "1000", str(src), "%s/root/hello" % name)
    p = lxm(lxmd, "exec", name, "--", "cat", "/root/hello")
    assert p.returncode == 0 and p.stdout == b"from the host\n", p
    p = lxm(lxmd, "exec", name, "--", "ls", "-ln", "/root/hello")
    assert p.returncode == 0 and p.stdout.split()[2] == b"1000", p
    # A file the container writes comes back.
    p = lxm(lxmd, "exec", name, "--", "sh", "-c", "echo made inside > /root/inside")
    assert p.returncode == 0, p
    assert lxm(lxmd, "file", "pull", "%s/root/inside" % name, "-").stdout == b"made inside\n"


def test_running_container_own_mounts_not_seen(lxmd, launched):
    """Documented property: the files API works on the rootfs directory, so what a running
    container mounted itself (its /run tmpfs) is not where a push lands."""
    name = launched()
    assert_sync(lxmd.api("POST", files_url(name, "/run/under-the-tmpfs"), b"x"))
    assert os.path.exists(os.path.join(rootfs(lxmd, name), "run", "under-the-tmpfs"))
    p = lxm(lxmd, "exec", name, "--", "cat", "/run/under-the-tmpfs")
    assert p.returncode != 0, p


def test_push_and_pull_recursive(lxmd, inst, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"a\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(300 * 1024))
    (tree / "sub" / "deeper" / "c").write_bytes(b"")
    os.chmod(tree / "sub" / "b.bin", 0o751)
    os.chmod(tree / "sub", 0o750)
    os.symlink("../a.txt", tree / "sub" / "link")
    lxmd.cli("file", "push", "-r", str(tree), "%s/root/" % inst)
    top = os.path.join(rootfs(lxmd, inst), "root", "tree")

    def check(copy, original):
        for dirpath, dirs, files in os.walk(original):
            rel = os.path.relpath(dirpath, original)
            other = os.path.normpath(os.path.join(copy, rel))
            assert sorted(os.listdir(other)) == sorted(dirs + files), other
            assert stat.S_IMODE(os.lstat(other).st_mode) == stat.S_IMODE(os.lstat(dirpath).st_mode)
            for f in files:
                a, b = os.path.join(dirpath, f), os.path.join(other, f)
                if os.path.islink(a):
                    assert os.path.islink(b) and os.readlink(b) == os.readlink(a), b
                    continue
                assert sha256_file(a) == sha256_file(b), b
                assert stat.S_IMODE(os.lstat(a).st_mode) == stat.S_IMODE(os.lstat(b).st_mode), b

    check(top, str(tree))
    # The listing of a directory.
    r = lxmd.api("GET", files_url(inst, "/root/tree/sub"))
    assert r.headers.get("X-LXD-type") == "directory"
    assert r.headers.get("X-LXD-mode") == "0750"
    assert sorted(assert_sync(r)) == ["b.bin", "deeper", "link"]
    # And back.
    out = tmp_path / "out"
    out.mkdir()
    lxmd.cli("file", "pull", "-r", "%s/root/tree" % inst, str(out))
    check(str(out / "tree"), str(tree))
    # A directory without -r is refused.
    p = lxmd.cli("file", "pull", "%s/root/tree" % inst, str(tmp_path / "x"), check=False)
    assert p.returncode == 1 and "is a directory (use -r)" in p.stderr, p.stderr


def test_push_create_dirs_and_into_directory(lxmd, stopped, tmp_path):
    name = stopped()
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"A")
    b.write_bytes(b"B")
    p = lxmd.cli("file", "push", str(a), "%s/opt/x/y/a" % name, check=False)
    assert p.returncode == 1 and "No such file or directory" in p.stderr, p.stderr
    lxmd.cli("file", "push", "-p", str(a), "%s/opt/x/y/a" % name)
    base = rootfs(lxmd, name)
    assert open(os.path.join(base, "opt/x/y/a"), "rb").read() == b"A"
    for d in ("opt", "opt/x", "opt/x/y"):
        st = os.lstat(os.path.join(base, d))
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755, d
    # Existing parents are left as they are.
    assert stat.S_IMODE(os.lstat(os.path.join(base, "root")).st_mode) == 0o700
    lxmd.cli("file", "push", "-p", str(a), "%s/root/deep/a" % name)
    assert stat.S_IMODE(os.lstat(os.path.join(base, "root")).st_mode) == 0o700
    # Several sources go into the directory by name.
    lxmd.cli("file", "push", str(a), str(b), "%s/opt/x/" % name)
    assert sorted(os.listdir(os.path.join(base, "opt/x"))) == ["a", "b", "y"]
    # Standard input.
    lxm(lxmd, "file", "push", "-", "%s/opt/stdin" % name, input=b"piped")
    assert open(os.path.join(base, "opt/stdin"), "rb").read() == b"piped"


# ---------------------------------------------------------------- escapes

def test_symlinks_never_leave_the_rootfs(lxmd, inst, tmp_path):
    base = rootfs(lxmd, inst)
    with open(os.path.join(base, "etc", "shadow"), "wb") as f:
        f.write(b"container-shadow\n")
    os.symlink("/etc/shadow", os.path.join(base, "etc", "evil"))
    os.symlink("../../../", os.path.join(base, "up"))
    marker = unique("marker")
    host_shadow = os.stat("/etc/shadow")
    host_shadow_hash = sha256_file("/etc/shadow")
    host_hostname_hash = sha256_file("/etc/hostname")

    # Pushing to the link is refused: never written through, the link stays.
    r = lxmd.api("POST", files_url(inst, "/etc/evil"), b"pwned\n")
    msg = assert_error_envelope(r, 400)
    assert "symbolic link" in msg, msg
    assert os.readlink(os.path.join(base, "etc", "evil")) == "/etc/shadow"
    local = tmp_path / "local"
    local.write_bytes(b"pwned\n")
    p = lxmd.cli("file", "push", str(local), "%s/etc/evil" % inst, check=False)
    assert p.returncode == 1 and "symbolic link" in p.stderr, p.stderr
    assert open(os.path.join(base, "etc", "shadow"), "rb").read() == b"container-shadow\n"
    # Through a directory link to ../../../ the path lands on the container's own /.
    assert_sync(lxmd.api("POST", files_url(inst, "/up/etc/shadow"), b"via-up\n"))
    assert open(os.path.join(base, "etc", "shadow"), "rb").read() == b"via-up\n"
    assert_sync(lxmd.api("POST", files_url(inst, "/up/up/up/tmp/" + marker),
                         headers={"X-LXD-type": "directory"}))
    assert os.path.isdir(os.path.join(base, "tmp", marker))
    assert not os.path.exists(os.path.join("/tmp", marker))
    # ".." stops at the rootfs.
    assert_sync(lxmd.api("POST", files_url(inst, "../../../../etc/hostname"), b"inside\n"))
    assert open(os.path.join(base, "etc", "hostname"), "rb").read() == b"inside\n"
    assert_sync(lxmd.api("POST", files_url(inst, "/../../../../etc/" + marker), b"m"))
    assert os.path.exists(os.path.join(base, "etc", marker))
    assert not os.path.exists(os.path.join("/etc", marker))
    # A symlink pushed as such is made in the container, pointing where it says.
    assert_sync(lxmd.api("POST", files_url(inst, "/etc/evil2"), b"/etc/shadow",
                         {"X-LXD-type": "symlink"}))
    assert os.readlink(os.path.join(base, "etc", "evil2")) == "/etc/shadow"

    # Pulling: the link itself over the API, the container's file through the CLI.
    r = lxmd.api("GET", files_url(inst, "/etc/evil"))
    assert r.status == 200 and r.headers.get("X-LXD-type") == "symlink", r
    assert r.raw == b"/etc/shadow"
    out = tmp_path / "pulled"
    lxmd.cli("file", "pull", "%s/etc/evil" % inst, str(out))
    assert out.read_bytes() == b"via-up\n"
    r = lxmd.api("GET", files_url(inst, "/up/up/etc/shadow"))
    assert r.status == 200 and r.raw == b"via-up\n"
    r = lxmd.api("GET", files_url(inst, "../../../../etc/hostname"))
    assert r.status == 200 and r.raw == b"inside\n"
    listing = assert_sync(lxmd.api("GET", files_url(inst, "/up/up/up/")))
    assert "etc" in listing and "containers" not in listing and "unix.socket" not in listing

    # Deleting through the link removes the container's entry, never the host's.
    assert_sync(lxmd.api("DELETE", files_url(inst, "/up/etc/" + marker)))
    assert not os.path.exists(os.path.join(base, "etc", marker))
    assert_sync(lxmd.api("DELETE", files_url(inst, "/etc/evil2")))
    assert not os.path.lexists(os.path.join(base, "etc", "evil2"))

    after = os.stat("/etc/shadow")
    assert (after.st_mtime_ns, after.st_ino) == (host_shadow.st_mtime_ns, host_shadow.st_ino)
    assert sha256_file("/etc/shadow") == host_shadow_hash
    assert sha256_file("/etc/hostname") == host_hostname_hash


def test_proc_magic_links_refused(lxmd, stopped, tmp_path):
    name = stopped()
    base = rootfs(lxmd, name)
    host_shadow = open("/etc/shadow", "rb").read()
    os.symlink("/proc/self/root/etc/shadow", os.path.join(base, "etc", "magic"))
    # With the instance's /proc empty (stopped), the link leads nowhere.
    assert_error_envelope(lxmd.api("GET", files_url(name, "/proc/self/root/etc/shadow")), 404)
    # With a procfs in the rootfs (as a running container has one, in its own mount namespace),
    # /proc/<pid>/root is a magic link to lxmd's root: openat2 refuses to follow it.
    proc = os.path.join(base, "proc")
    subprocess.run(["mount", "-t", "proc", "proc", proc], check=True)
    try:
        for path in ("/proc/self/root/etc/shadow", "/etc/magic", "/proc/1/root/etc/shadow"):
            r = lxmd.api("GET", files_url(name, path))
            assert r.status != 200 or r.headers.get("X-LXD-type") == "symlink", (path, r)
            assert host_shadow not in r.raw
        assert_error_envelope(lxmd.api("GET", files_url(name, "/proc/self/root/etc/shadow")),
                              400)
        r = lxmd.api("POST", files_url(name, "/proc/self/root/tmp/" + unique("m")), b"x")
        assert r.status in (400, 403), r
        p = lxmd.cli("file", "pull", "%s/etc/magic" % name, str(tmp_path / "m"), check=False)
        assert p.returncode == 1 and not os.path.exists(tmp_path / "m"), p.stderr
    finally:
        subprocess.run(["umount", "-l", proc], check=True)


# ---------------------------------------------------------------- atomicity, errors

def start_upload(lxmd, name, path, chunked_body=True, total=None):
    c = lxmd.conn(timeout=30)
    headers = {"X-LXD-type": "file"}
    if chunked_body:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(total)
    c.send(http_request("POST", files_url(name, path), headers=headers))
    return c


@pytest.mark.parametrize("chunked_body", [True, False], ids=["chunked", "content-length"])
def test_truncated_upload_keeps_old_file(lxmd, stopped, chunked_body):
    name = stopped()
    assert_sync(lxmd.api("POST", files_url(name, "/root/keep.txt"), b"old content\n"))
    rootdir = os.path.join(rootfs(lxmd, name), "root")
    c = start_upload(lxmd, name, "/root/keep.txt", chunked_body, total=64 * MiB)
    piece = os.urandom(256 * 1024)
    for _ in range(8):
        c.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked_body else piece)
    # The upload is under way in a temporary file...
    wait_for(lambda: temp_entries(rootdir), what="the temporary file")
    assert open(os.path.join(rootdir, "keep.txt"), "rb").read() == b"old content\n"
    # ...and the client goes away mid-body.
    c.close()
    wait_for(lambda: not temp_entries(rootdir), what="the temporary file to go")
    assert open(os.path.join(rootdir, "keep.txt"), "rb").read() == b"old content\n"
    assert_sync(lxmd.api("GET", "/1.0"))


def test_shutdown_during_upload_cleans_up(lxmd, stopped):
    name = stopped()
    rootdir = os.path.join(rootfs(lxmd, name), "root")
    c = start_upload(lxmd, name, "/root/partial")
    c.send(b"%x\r\n%s\r\n" % (MiB, os.urandom(MiB)))
    wait_for(lambda: temp_entries(rootdir), what="the temporary file")
    lxmd.stop_checked()
    c.close()
    assert temp_entries(rootdir) == [] and not os.path.exists(os.path.join(rootdir, "partial"))
    lxmd.start()


def test_pipelined_requests_after_streamed_push(lxmd, stopped):
    name = stopped()
    body = os.urandom(700 * 1024)
    with lxmd.conn() as c:
        # One write: a push in many small chunks, a pull and a delete right behind it.
        c.send(http_request("POST", files_url(name, "/root/p"), headers={
            "Transfer-Encoding": "chunked"}) + uneven_chunked(body)
            + http_request("GET", files_url(name, "/root/p"))
            + http_request("DELETE", files_url(name, "/root/p")))
        assert_sync(c.read_response())
        r = c.read_response()
        assert r.status == 200 and r.raw == body
        assert_sync(c.read_response())
    assert not os.path.exists(os.path.join(rootfs(lxmd, name), "root", "p"))


def test_missing_things_404(lxmd, stopped, tmp_path):
    name = stopped()
    assert_error_envelope(lxmd.api("GET", files_url(name, "/no/such/file")), 404)
    assert_error_envelope(lxmd.api("GET", files_url(name, "/etc/no-such-file")), 404)
    assert_error_envelope(lxmd.api("POST", files_url(name, "/no/such/dir/f"), b"x"), 404)
    assert_error_envelope(lxmd.api("DELETE", files_url(name, "/etc/no-such-file")), 404)
    missing = unique("missing")
    assert_error_envelope(lxmd.api("GET", files_url(missing, "/etc/hosts")), 404)
    assert_error_envelope(lxmd.api("POST", files_url(missing, "/etc/x"), b"x"), 404)
    p = lxmd.cli("file", "pull", "%s/etc/no-such-file" % name, str(tmp_path / "x"),
                 check=False)
    assert p.returncode == 1 and "No such file or directory" in p.stderr, p.stderr
    assert "/etc/no-such-file" in p.stderr and name in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "x") and os.listdir(tmp_path) == []
    # Bad requests say what is wrong.
    assert_error_envelope(lxmd.api("GET", "/1.0/instances/%s/files" % name), 400)
    r = lxmd.api("POST", files_url(name, "/root/x"), b"x", {"X-LXD-type": "fifo"})
    assert "fifo" in assert_error_envelope(r, 400)
    r = lxmd.api("POST", files_url(name, "/root/x"), b"x", {"X-LXD-mode": "rwx"})
    assert "X-LXD-mode" in assert_error_envelope(r, 400)
    r = lxmd.api("POST", files_url(name, "/root"), b"x")
    assert "is a directory" in assert_error_envelope(r, 400)
    os.mkfifo(os.path.join(rootfs(lxmd, name), "root", "fifo"))
    assert_error_envelope(lxmd.api("GET", files_url(name, "/root/fifo")), 400)


def test_early_refusal_keeps_connection(lxmd, stopped):
    """A push refused before its body (unknown instance) is answered at once; the rest of the
    body is read and dropped and the connection serves the next request."""
    name = stopped()
    body = os.urandom(3 * MiB)
    with lxmd.conn(timeout=30) as c:
        req = http_request("POST", files_url(unique("missing"), "/x"), body=body,
                           headers={"Content-Type": "application/octet-stream"})
        t = threading.Thread(target=c.send, args=(req,))
        t.start()
        r = c.read_response()
        t.join(30)
        assert_error_envelope(r, 404)
        c.send(http_request("POST", files_url(name, "/root/after"), body=b"ok",
                            headers={"Content-Type": "application/octet-stream"}))
        assert_sync(c.read_response())
    assert open(os.path.join(rootfs(lxmd, name), "root", "after"), "rb").read() == b"ok"


def test_expect_continue(lxmd, stopped):
    name = stopped()
    with lxmd.conn() as c:
        c.send(http_request("POST", files_url(name, "/root/e"), headers={
            "Content-Length": "5", "Expect": "100-continue"}))
        assert c._line() == b"HTTP/1.1 100 Continue" and c._line() == b""
        c.send(b"hello")
        assert_sync(c.read_response())
        # A refused request gets no "100 Continue", only the answer; the body it holds back
        # would be where the next request starts, so the connection closes.
        c.send(http_request("POST", files_url(unique("missing"), "/x"), headers={
            "Content-Length": "5", "Expect": "100-continue"}))
        r = c.read_response()
        assert_error_envelope(r, 404)
        assert r.headers.get("Connection") == "close"
        assert c.is_closed()
    assert open(os.path.join(rootfs(lxmd, name), "root", "e"), "rb").read() == b"hello"


def test_delete_and_append(lxmd, stopped):
    name = stopped()
    base = rootfs(lxmd, name)
    assert_sync(lxmd.api("POST", files_url(name, "/root/log"), b"one\n"))
    assert_sync(lxmd.api("POST", files_url(name, "/root/log"), b"two\n", {"X-LXD-write": "append"}))
    assert open(os.path.join(base, "root", "log"), "rb").read() == b"one\ntwo\n"
    assert_sync(lxmd.api("POST", files_url(name, "/root/new"), b"n", {"X-LXD-write": "append"}))
    assert stat.S_IMODE(os.lstat(os.path.join(base, "root", "new")).st_mode) == 0o644
    lxmd.cli("file", "delete", "%s/root/log" % name, "%s/root/new" % name)
    assert not os.path.exists(os.path.join(base, "root", "log"))
    # Empty directories go too; full ones do not.
    assert_sync(lxmd.api("POST", files_url(name, "/root/d"), headers={"X-LXD-type": "directory"}))
    assert_sync(lxmd.api("POST", files_url(name, "/root/d/f"), b"f"))
    r = lxmd.api("DELETE", files_url(name, "/root/d"))
    assert "not empty" in assert_error_envelope(r, 400)
    lxmd.cli("file", "delete", "%s/root/d/f" % name)
    lxmd.cli("file", "delete", "%s/root/d" % name)
    assert not os.path.exists(os.path.join(base, "root", "d"))
    p = lxmd.cli("file", "delete", "%s/root/d" % name, check=False)
    assert p.returncode == 1 and "No such file or directory" in p.stderr, p.stderr
    r = lxmd.api("DELETE", files_url(name, "/"))
    assert_error_envelope(r, 400)


# ---------------------------------------------------------------- pylxd and streaming

def test_pylxd_style_requests(lxmd, stopped):
    """What pylxd 2.2.10 sends: /1.0/containers, Content-Length bodies, X-LXD-mode only, one
    keep-alive connection; files.put() requires exactly 200."""
    name = stopped()
    base = rootfs(lxmd, name)
    with lxmd.conn() as c:
        c.send(http_request("POST", files_url(name, "/root/x.txt", "/1.0/containers"),
                            body=b"pylxd data", headers={"X-LXD-mode": "0600"}))
        r = c.read_response()
        assert r.status == 200 and assert_sync(r) == {}, r
        c.send(http_request("GET", files_url(name, "/root/x.txt", "/1.0/containers")))
        r = c.read_response()
        assert r.status == 200 and r.raw == b"pylxd data"
        assert r.headers.get("X-LXD-type") == "file" and r.headers.get("X-LXD-mode") == "0600"
        assert r.headers.get("X-LXD-uid") == "0" and r.headers.get("X-LXD-gid") == "0"
        c.send(http_request("POST", files_url(name, "/root/dir", "/1.0/containers"), body=b"",
                            headers={"X-LXD-type": "directory", "X-LXD-mode": "0700"}))
        assert c.read_response().status == 200
        c.send(http_request("DELETE", files_url(name, "/root/x.txt", "/1.0/containers"),
                            headers={"Content-Length": "0"}))
        assert_sync(c.read_response())
    assert stat.S_IMODE(os.lstat(os.path.join(base, "root", "dir")).st_mode) == 0o700
    assert not os.path.exists(os.path.join(base, "root", "x.txt"))


def test_streamed_push_200mib_bounded_memory(lxmd_factory, monkeypatch, tmp_path):
    # Under ASan, freed blocks wait in a quarantine (256 MiB by default) and stay resident: keep
    # it small so that RSS shows what lxmd holds. No effect on other builds.
    monkeypatch.setenv("ASAN_OPTIONS", ":".join(
        filter(None, [os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=8"])))
    lxmd = lxmd_factory().start()
    name = unique("f")
    lxmd.cli("init", "busybox", name, timeout=120)
    pid = lxmd.pid
    block = os.urandom(MiB)
    total = 200 * MiB
    before = rss_kib(pid)
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")  # resets VmHWM, the peak RSS
    h = hashlib.sha256()
    with lxmd.conn(timeout=120) as c:
        c.send(http_request("POST", files_url(name, "/root/huge"), headers={
            "Transfer-Encoding": "chunked", "X-LXD-type": "file"}))
        for _ in range(total // MiB):
            c.send(b"%x\r\n%s\r\n" % (len(block), block))
            h.update(block)
        c.send(b"0\r\n\r\n")
        assert_sync(c.read_response())
    peak = rss_kib(pid, "VmHWM")
    assert peak - before < 48 * 1024, "lxmd grew by %d KiB while receiving 200 MiB" % (peak - before)
    assert sha256_file(os.path.join(rootfs(lxmd, name), "root", "huge")) == h.hexdigest()

    # The CLI streams both ways too: neither lxm nor lxmd holds the file.
    src = str(tmp_path / "src")
    with open(src, "wb") as f:
        for _ in range(total // MiB):
            f.write(block)
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")
    before = rss_kib(pid)
    for args in (["file", "push", src, "%s/root/huge2" % name],
                 ["file", "pull", "%s/root/huge2" % name, str(tmp_path / "back")]):
        p = subprocess.Popen([lxmd.lxm_bin] + args, env=lxmd.cli_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # The peak RSS of lxm itself (getrusage would count the forking test process too).
        peak_cli = 0
        while p.poll() is None:
            try:
                peak_cli = max(peak_cli, rss_kib(p.pid, "VmHWM"))
            except (OSError, AssertionError):
                pass
            time.sleep(0.01)
        assert p.returncode == 0, (args, p.stderr.read())
        p.stderr.close()
        assert 0 < peak_cli < 48 * 1024, "lxm %s used %d KiB" % (args[1], peak_cli)
    peak = rss_kib(pid, "VmHWM")
    assert peak - before < 48 * 1024, "lxmd grew by %d KiB on push+pull" % (peak - before)
    assert sha256_file(str(tmp_path / "back")) == h.hexdigest()
    lxmd.cli("delete", name)
