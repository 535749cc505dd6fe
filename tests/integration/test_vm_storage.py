"""Virtual machines' volumes on each pool driver (dir, btrfs on a loop file, overlay), as a user
sees them, without booting anything: `lxm init IMAGE NAME --vm` makes a VM whose volume holds the
image's disk (a sparse raw copy on dir, a nodatacow raw file in a subvolume snapshot on btrfs, a
qcow2 overlay over the image's disk on overlay pools) beside boot/ and metadata.yaml; the root
disk's size= grows the disk and never shrinks it; snapshot, copy (of the VM and of a snapshot),
restore, move, publish (a virtual-machine image a new VM is made from) and delete act on the disk;
a container image for a VM and a VM image for a container are refused.

The VM image is made here (not built by the busybox template, which needs a kernel download): a
unified tarball with metadata.yaml (lxm.type: virtual-machine), an ext4 rootfs.img made with
mkfs.ext4 -d, and stand-in boot files, imported as `busybox/vm`, so that `--vm busybox` picks it.
What a disk holds is read without mounting: its first sector (ext4 leaves it unused) is the marker
a test writes, and debugfs reads files; a qcow2 disk is converted to raw first."""

import json
import os
import platform
import shutil
import subprocess
import tarfile

import pytest

from lxmtest import unique

pytestmark = [
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="busybox-static is not installed"),
    pytest.mark.skipif(not shutil.which("qemu-img") or not shutil.which("debugfs"),
                       reason="qemu-img or debugfs missing: run scripts/install-deps"),
]

OS_RELEASE = "ID=lxmtestvm\nNAME=\"lxm test VM disk\"\n"
DISK_MIB = 64


def run(*argv):
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert r.returncode == 0, "%s: %s%s" % (" ".join(argv), r.stdout, r.stderr)
    return r.stdout


@pytest.fixture(scope="module")
def vm_tarball(tmp_path_factory):
    d = tmp_path_factory.mktemp("vmimage")
    tree, src = d / "tree", d / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "os-release").write_text(OS_RELEASE)
    (tree / "boot").mkdir(parents=True)
    (tree / "boot" / "vmlinuz").write_bytes(b"stand-in kernel\n")
    (tree / "boot" / "initrd.img").write_bytes(b"stand-in initrd\n")
    (tree / "metadata.yaml").write_text(
        "architecture: %s\ncreation_date: 1700000000\nproperties:\n  os: lxmtestvm\n"
        "lxm:\n  type: virtual-machine\n  kernel: boot/vmlinuz\n  initrd: boot/initrd.img\n"
        "  cmdline: root=/dev/vda rw console=ttyS0\n" % platform.machine())
    disk = tree / "rootfs.img"
    run("mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", str(src), str(disk), "%dM" % DISK_MIB)
    out = d / "vm.tar"
    with tarfile.open(out, "w") as t:
        for name in ("metadata.yaml", "rootfs.img", "boot"):
            t.add(tree / name, arcname=name)
    return str(out), str(disk)


@pytest.fixture(params=["dir", "btrfs", "overlay"])
def vmd(request, lxmd_factory, vm_tarball):
    d = lxmd_factory(storage=request.param)
    d.start()
    d.driver = request.param
    d.made = []
    d.pool_dir = os.path.join(d.root, "storage-pools", "default")
    d.image_disk = vm_tarball[1]
    d.cli("image", "import", vm_tarball[0], "--alias", "busybox/vm", timeout=120)
    yield d
    for n in d.made:
        d.cli("delete", "-f", n, check=False)
    for img in d.api("GET", "/1.0/images").json["metadata"]:
        d.api("DELETE", img)


def vol(d, name, snap=None):
    if snap:
        return os.path.join(d.pool_dir, "containers-snapshots", name, snap)
    return os.path.join(d.pool_dir, "containers", name)


def disk_of(path):
    for n in ("rootfs.img", "root.qcow2"):
        if os.path.exists(os.path.join(path, n)):
            return os.path.join(path, n)
    raise AssertionError("no disk in %s: %s" % (path, os.listdir(path)))


def raw_copy(disk, tmp_path):
    """A raw file with the disk's content (a qcow2 disk with its backing file flattened)."""
    if disk.endswith(".img"):
        return disk
    out = str(tmp_path / ("flat-%s.img" % unique("d")))
    run("qemu-img", "convert", "-O", "raw", disk, out)
    return out


def head(disk, tmp_path):
    with open(raw_copy(disk, tmp_path), "rb") as f:
        return f.read(512)


def set_head(disk, byte):
    """Writes 512 bytes of byte to the disk's first sector, which ext4 does not use."""
    if disk.endswith(".qcow2"):
        run("qemu-io", "-f", "qcow2", "-c", "write -P 0x%02x 0 512" % byte, disk)
        return
    with open(disk, "r+b") as f:
        f.write(bytes([byte]) * 512)


def disk_file(disk, path, tmp_path):
    return run("debugfs", "-R", "cat " + path, raw_copy(disk, tmp_path))


def virtual_size(disk):
    return json.loads(run("qemu-img", "info", "--output=json", disk))["virtual-size"]


def check_layout(d, path, tmp_path, from_image=True):
    """What every VM volume or snapshot holds, per driver (from_image: made from the imported
    image, whose disk an overlay's qcow2 is backed by)."""
    disk = disk_of(path)
    assert not os.path.exists(os.path.join(path, "rootfs"))
    for f in ("boot/vmlinuz", "boot/initrd.img", "metadata.yaml"):
        assert os.path.isfile(os.path.join(path, f)), f
    if d.driver == "overlay":
        assert disk.endswith("root.qcow2")
        info = json.loads(run("qemu-img", "info", "--output=json", disk))
        assert info["format"] == "qcow2"
        base = info["backing-filename"]
        assert base.startswith(os.path.join(d.pool_dir, "images") + "/")
        assert base.endswith("/rootfs.img")
        if from_image:
            assert subprocess.run(["cmp", base, d.image_disk]).returncode == 0
    else:
        assert disk.endswith("rootfs.img")
        st = os.stat(disk)
        # Sparse: the 64 MiB disk of a few files occupies far less.
        assert st.st_blocks * 512 < st.st_size / 2, (st.st_blocks, st.st_size)
    if d.driver == "btrfs":
        assert "C" in run("lsattr", disk).split()[0]
    assert disk_file(disk, "/etc/os-release", tmp_path) == OS_RELEASE
    return disk


def test_vm_volume_lifecycle(vmd, tmp_path):
    d = vmd
    v1, v2, v3, v4, v5 = (unique("v") for _ in range(5))
    d.made += [v1, v2, v3, v4, v5]

    # --vm picks the image's VM variant: busybox -> busybox/vm.
    d.cli("init", "busybox", v1, "--vm", timeout=120)
    inst = d.api("GET", "/1.0/instances/" + v1).json["metadata"]
    assert inst["type"] == "virtual-machine"
    row = [ln for ln in d.cli("list").stdout.splitlines() if v1 in ln]
    assert row and "VIRTUAL-MACHINE" in row[0], d.cli("list").stdout
    disk = check_layout(d, vol(d, v1), tmp_path)
    assert os.path.isfile(os.path.join(vol(d, v1), "backup.yaml"))
    assert os.path.realpath(os.path.join(d.root, "containers", v1)) == vol(d, v1)
    if d.driver != "overlay":
        assert subprocess.run(["cmp", disk, d.image_disk]).returncode == 0
    assert virtual_size(disk) == DISK_MIB << 20

    # snapshot keeps the disk as it was; copy of the VM and of the snapshot; restore.
    set_head(disk, 0xAA)
    d.cli("snapshot", v1, "s0")
    check_layout(d, vol(d, v1, "s0"), tmp_path)
    set_head(disk, 0xBB)
    assert head(disk_of(vol(d, v1, "s0")), tmp_path) == b"\xaa" * 512
    d.cli("copy", v1 + "/s0", v2)
    d.cli("copy", v1, v3)
    for n in (v2, v3):
        assert d.api("GET", "/1.0/instances/" + n).json["metadata"]["type"] == "virtual-machine"
        check_layout(d, vol(d, n), tmp_path)
    assert head(disk_of(vol(d, v2)), tmp_path) == b"\xaa" * 512
    assert head(disk_of(vol(d, v3)), tmp_path) == b"\xbb" * 512
    # A copy's disk is its own.
    set_head(disk_of(vol(d, v3)), 0xCC)
    assert head(disk, tmp_path) == b"\xbb" * 512
    d.cli("restore", v1, "s0")
    disk = disk_of(vol(d, v1))
    assert head(disk, tmp_path) == b"\xaa" * 512
    check_layout(d, vol(d, v1), tmp_path)

    # move (rename) takes the disk and the snapshots along.
    d.cli("move", v2, v4)
    assert not os.path.lexists(vol(d, v2))
    assert head(disk_of(vol(d, v4)), tmp_path) == b"\xaa" * 512

    # publish: a virtual-machine image (a qcow2 disk flattened) that makes a new VM.
    pub = unique("pub")
    d.cli("publish", v1, "--alias", pub, timeout=120)
    fp = d.api("GET", "/1.0/images/aliases/" + pub).json["metadata"]["target"]
    img = d.api("GET", "/1.0/images/" + fp).json["metadata"]
    assert img["type"] == "virtual-machine"
    d.cli("init", pub, v5, "--vm", timeout=120)
    disk5 = check_layout(d, vol(d, v5), tmp_path, from_image=False)
    assert head(disk5, tmp_path) == b"\xaa" * 512

    # delete leaves no file, snapshot or subvolume.
    for n in (v1, v3, v4, v5):
        d.cli("delete", n)
    d.made = []
    for n in (v1, v2, v3, v4, v5):
        assert not os.path.lexists(vol(d, n))
        assert not os.path.lexists(os.path.join(d.pool_dir, "containers-snapshots", n))
        assert not os.path.lexists(os.path.join(d.root, "containers", n))
    if d.driver == "btrfs":
        subvols = run("btrfs", "subvolume", "list", d.pool_dir)
        for n in (v1, v2, v3, v4, v5):
            assert n not in subvols, subvols


def test_vm_disk_size(vmd, tmp_path):
    d = vmd
    v1, v2 = unique("v"), unique("v")
    d.made += [v1, v2]

    def create(name, size):
        body = {"name": name, "type": "virtual-machine",
                "source": {"type": "image", "alias": "busybox/vm"},
                "devices": {"root": {"type": "disk", "path": "/", "pool": "default",
                                     "size": size}}}
        r = d.api("POST", "/1.0/instances", body)
        assert r.status == 202, r
        return d.wait_op(r.json["metadata"]["id"])

    done = create(v1, "256MiB")
    assert done["status"] == "Success", done
    disk = check_layout(d, vol(d, v1), tmp_path)
    assert virtual_size(disk) == 256 << 20
    if d.driver != "overlay":
        assert os.stat(disk).st_size == 256 << 20
    # Smaller than the image's disk: refused, and nothing is left of the instance.
    done = create(v2, "16MiB")
    assert done["status"] == "Failure", done
    assert "shrink" in done["err"] and "only grow" in done["err"], done["err"]
    assert d.api("GET", "/1.0/instances/" + v2).status == 404
    assert not os.path.lexists(vol(d, v2))


def test_vm_image_type_refusals(vmd):
    d = vmd
    c, v1, v2 = unique("c"), unique("v"), unique("v")
    d.made += [c, v1, v2]
    d.cli("init", "busybox", c, timeout=120)
    assert d.api("GET", "/1.0/instances/" + c).json["metadata"]["type"] == "container"
    cfp = d.api("GET", "/1.0/images/aliases/busybox").json["metadata"]["target"]

    # A container image's fingerprint with --vm is used as is, and refused.
    r = d.cli("init", cfp, v1, "--vm", check=False)
    assert r.returncode != 0
    assert "container image" in r.stderr and "virtual-machine image" in r.stderr, r.stderr
    # A VM image without --vm.
    r = d.cli("init", "busybox/vm", v2, check=False)
    assert r.returncode != 0
    assert "virtual-machine image" in r.stderr and "container" in r.stderr, r.stderr
    assert "--vm" in r.stderr
    for n in (v1, v2):
        assert d.api("GET", "/1.0/instances/" + n).status == 404
        assert not os.path.lexists(vol(d, n))

    # A VM does not migrate to another host yet: refused, with the way round, and kept whole.
    v3 = unique("v")
    d.made.append(v3)
    d.cli("init", "busybox", v3, "--vm", timeout=120)
    r = d.api("POST", "/1.0/instances/" + v3, {"migration": True, "live": False})
    assert r.status == 501, r.json
    assert "'%s'" % v3 in r.json["error"] and "lxm publish %s" % v3 in r.json["error"], r.json
    assert d.api("GET", "/1.0/instances/" + v3).json["metadata"]["type"] == "virtual-machine"
    assert os.path.isfile(disk_of(vol(d, v3)))


def test_vm_copy_to_another_pool(vmd, tmp_path):
    """A copy into a dir pool has a raw disk of its own (an overlay's qcow2 is flattened: its
    backing file is an image volume of the source's pool)."""
    d = vmd
    v1, v2 = unique("v"), unique("v")
    d.made += [v1, v2]
    pool = unique("p")
    d.cli("storage", "create", pool, "dir")
    try:
        d.cli("init", "busybox", v1, "--vm", timeout=120)
        set_head(disk_of(vol(d, v1)), 0xAB)
        body = {"name": v2, "source": {"type": "copy", "source": v1},
                "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}}
        r = d.api("POST", "/1.0/instances", body)
        assert r.status == 202, r
        done = d.wait_op(r.json["metadata"]["id"])
        assert done["status"] == "Success", done
        path = os.path.join(d.root, "storage-pools", pool, "containers", v2)
        assert os.listdir(path) and not os.path.exists(os.path.join(path, "root.qcow2"))
        disk = os.path.join(path, "rootfs.img")
        assert json.loads(run("qemu-img", "info", "--output=json", disk))["format"] == "raw"
        assert head(disk, tmp_path) == b"\xab" * 512
        assert disk_file(disk, "/etc/os-release", tmp_path) == OS_RELEASE
        assert d.api("GET", "/1.0/instances/" + v2).json["metadata"]["type"] == \
            "virtual-machine"
        d.cli("delete", v2)
        assert not os.path.lexists(path)
    finally:
        d.cli("delete", "-f", v2, check=False)
        d.cli("storage", "delete", pool, check=False)
