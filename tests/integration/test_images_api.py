"""The image store's REST API (/1.0/images, /1.0/images/aliases) as lxc and pylxd use it: uploads
of unified images (chunked like lxc, Content-Length without a type like pylxd) and split ones
(multipart/form-data), listing, prefix lookup, editing with ETags, export, aliases (names with
'/'), delete, and what a cut-short upload leaves behind (nothing)."""

import hashlib
import io
import os
import tarfile
import time
import urllib.parse

import pytest

import lxmtest
from lxmtest import assert_async, assert_error_envelope, assert_sync

ARCH = os.uname().machine


def _add(t, name, data=None, mode=0o644, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.mtime = 1700000000
    info.type = kind
    info.mode = mode if kind != tarfile.DIRTYPE else 0o755
    if data is not None:
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    else:
        t.addfile(info)


METADATA = ("architecture: %s\ncreation_date: 1700000000\nproperties:\n  os: testos\n"
            "  release: \"1\"\n  description: lxm test image\n" % ARCH).encode()


def unified_image(tag="a"):
    """A tiny unified image (metadata.yaml + rootfs/), gzip-compressed; tag changes its
    content, hence its fingerprint."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        _add(t, "metadata.yaml", METADATA)
        _add(t, "rootfs", kind=tarfile.DIRTYPE)
        _add(t, "rootfs/bin", kind=tarfile.DIRTYPE)
        _add(t, "rootfs/bin/sh", b"#!/bin/true\n# " + tag.encode() + b"\n", mode=0o755)
        _add(t, "rootfs/etc", kind=tarfile.DIRTYPE)
        _add(t, "rootfs/etc/hostname", b"test\n")
    return buf.getvalue()


def split_image(tag="s"):
    """A split image: (metadata tarball, rootfs tarball)."""
    meta = io.BytesIO()
    with tarfile.open(fileobj=meta, mode="w:gz") as t:
        _add(t, "metadata.yaml", METADATA)
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w:gz") as t:
        _add(t, "bin", kind=tarfile.DIRTYPE)
        _add(t, "bin/sh", b"#!/bin/true\n# " + tag.encode() + b"\n", mode=0o755)
    return meta.getvalue(), rootfs.getvalue()


def multipart(parts, boundary="lxmtestboundary0123456789"):
    """multipart/form-data body of (name, filename, data) parts."""
    out = b""
    for name, filename, data in parts:
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                b"Content-Type: application/octet-stream\r\n\r\n"
                % (boundary.encode(), name.encode(), filename.encode()))
        out += data + b"\r\n"
    out += b"--%s--\r\n" % boundary.encode()
    return out, "multipart/form-data; boundary=" + boundary


def sha256(*blobs):
    h = hashlib.sha256()
    for b in blobs:
        h.update(b)
    return h.hexdigest()


def images_dir(lxmd):
    return os.path.join(lxmd.root, "images")


def spool_files(lxmd):
    d = images_dir(lxmd)
    return sorted(f for f in os.listdir(d) if f.startswith(".tmp-")) if os.path.isdir(d) else []


def wait_upload(lxmd, resp):
    op = assert_async(resp)
    return lxmd.wait_op(op["id"], timeout=60)


def import_pylxd(lxmd, data, headers=None):
    """pylxd: raw body with Content-Length and no Content-Type; returns the finished op."""
    return wait_upload(lxmd, lxmd.api("POST", "/1.0/images", data, headers or {}))


def import_ok(lxmd, data, headers=None):
    done = import_pylxd(lxmd, data, headers)
    assert done["status"] == "Success", done
    return done["metadata"]["fingerprint"]


def import_chunked(lxmd, data, extra_headers=""):
    """lxc: chunked, application/octet-stream, X-LXD-filename; returns the finished op."""
    head = ("POST /1.0/images HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/octet-stream\r\nX-LXD-filename: img.tar.gz\r\n"
            + extra_headers + "\r\n").encode()
    with lxmd.conn(timeout=60) as c:
        c.send(head + lxmtest.chunked(data, [7, 1000, 4096, 65536]))
        resp = c.read_response()
    return wait_upload(lxmd, resp)


# ---------------------------------------------------------------- upload

def test_import_chunked_like_lxc(lxmd):
    data = unified_image()
    done = import_chunked(lxmd, data, "X-LXD-public: 1\r\nX-LXD-properties: "
                          "description=my%20image&custom.key=a%3Db\r\n")
    assert done["status"] == "Success", done
    fp = done["metadata"]["fingerprint"]
    assert fp == sha256(data), "fingerprint is not the sha256 of the uploaded file"
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + fp))
    assert img["fingerprint"] == fp
    assert img["public"] is True
    assert img["filename"] == "img.tar.gz"
    assert img["size"] == len(data)
    assert img["architecture"] == ARCH
    assert img["type"] == "container"
    assert img["properties"]["description"] == "my image"
    assert img["properties"]["custom.key"] == "a=b"
    assert img["properties"]["os"] == "testos", "metadata.yaml properties are kept"
    lxmtest.assert_timestamps(img)
    assert os.path.isfile(os.path.join(images_dir(lxmd), fp))
    assert spool_files(lxmd) == []


def test_import_content_length_like_pylxd(lxmd):
    data = unified_image("pylxd")
    done = import_pylxd(lxmd, data, {"X-LXD-Public": "0"})
    assert done["status"] == "Success", done
    fp = done["metadata"]["fingerprint"]
    assert fp == sha256(data)
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + fp))
    assert img["public"] is False
    # The same image again is a conflict that names it, and leaves the first one alone.
    again = import_pylxd(lxmd, data)
    assert again["status"] == "Failure", again
    assert fp in again["err"]
    assert assert_sync(lxmd.api("GET", "/1.0/images")) == ["/1.0/images/" + fp]
    assert spool_files(lxmd) == []


def test_wrong_fingerprint_header_is_refused(lxmd):
    data = unified_image("fp")
    wrong = "0" * 64
    done = import_pylxd(lxmd, data, {"X-LXD-fingerprint": wrong})
    assert done["status"] == "Failure", done
    assert wrong in done["err"] or "fingerprint" in done["err"], done["err"]
    assert assert_sync(lxmd.api("GET", "/1.0/images")) == []
    assert spool_files(lxmd) == []
    # The right one is accepted.
    done = import_pylxd(lxmd, data, {"X-LXD-fingerprint": sha256(data)})
    assert done["status"] == "Success", done


def test_bad_upload_headers(lxmd):
    data = unified_image("hdr")
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images", data, {"X-LXD-public": "maybe"}),
                                400)
    assert "X-LXD-public" in err
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images", data,
                                         {"Content-Type": "text/plain"}), 415)
    assert "Content-Type" in err
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images", data,
                                         {"Content-Type": "multipart/form-data"}), 400)
    assert "boundary" in err
    assert spool_files(lxmd) == []


def test_garbage_upload_fails_and_leaves_nothing(lxmd):
    done = import_pylxd(lxmd, b"this is not an image" * 100)
    assert done["status"] == "Failure", done
    assert done["err"]
    assert assert_sync(lxmd.api("GET", "/1.0/images")) == []
    assert spool_files(lxmd) == []


def test_truncated_uploads_leave_nothing(lxmd):
    data = unified_image("cut")
    # Content-Length not reached, then the client hangs up.
    head = ("POST /1.0/images HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" % (len(data) + 100000)).encode()
    with lxmd.conn() as c:
        c.send(head + data)
        time.sleep(0.3)
    # A chunked body cut in the middle of a chunk.
    head = (b"POST /1.0/images HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n")
    body = lxmtest.chunked(data, [1000])
    with lxmd.conn() as c:
        c.send(head + body[:len(body) // 2])
        time.sleep(0.3)
    # A multipart body cut inside the rootfs part.
    meta, rootfs = split_image("cut")
    mp, ctype = multipart([("metadata", "meta.tar.gz", meta), ("rootfs", "rootfs.tar.gz", rootfs)])
    head = ("POST /1.0/images HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n"
            "Content-Type: %s\r\n\r\n" % (len(mp), ctype)).encode()
    with lxmd.conn() as c:
        c.send(head + mp[:len(mp) - 200])
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while spool_files(lxmd) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool_files(lxmd) == []
    assert assert_sync(lxmd.api("GET", "/1.0/images")) == []
    ops = assert_sync(lxmd.api("GET", "/1.0/operations?recursion=1"))
    assert not any(ops.values()), "a cut-short upload started an operation: %r" % ops
    # The daemon still takes a complete upload afterwards.
    assert import_ok(lxmd, data) == sha256(data)


def test_multipart_without_closing_boundary_is_refused(lxmd):
    meta, rootfs = split_image("noclose")
    mp, ctype = multipart([("metadata", "m", meta), ("rootfs", "r", rootfs)])
    mp = mp[:mp.rindex(b"\r\n--")]
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images", mp, {"Content-Type": ctype}), 400)
    assert "boundary" in err
    mp, ctype = multipart([("metadata", "m", meta)])
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images", mp, {"Content-Type": ctype}), 400)
    assert "rootfs" in err
    mp, ctype = multipart([("metadata", "m", meta), ("kernel", "k", b"x"), ("rootfs", "r", rootfs)])
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images", mp, {"Content-Type": ctype}), 400)
    assert "part" in err
    assert spool_files(lxmd) == []
    assert assert_sync(lxmd.api("GET", "/1.0/images")) == []


def test_split_import_and_export(lxmd):
    meta, rootfs = split_image()
    mp, ctype = multipart([("metadata", "meta-test.tar.gz", meta),
                           ("rootfs", "rootfs-test.tar.gz", rootfs)])
    done = wait_upload(lxmd, lxmd.api("POST", "/1.0/images", mp, {"Content-Type": ctype}))
    assert done["status"] == "Success", done
    fp = done["metadata"]["fingerprint"]
    assert fp == sha256(meta, rootfs), "a split image's fingerprint is sha256(meta + rootfs)"
    assert os.path.isfile(os.path.join(images_dir(lxmd), fp))
    assert os.path.isfile(os.path.join(images_dir(lxmd), fp + ".rootfs"))

    r = lxmd.api("GET", "/1.0/images/%s/export" % fp[:12])
    assert r.status == 200, r
    ctype = r.headers.get("Content-Type")
    assert ctype.startswith("multipart/form-data; boundary="), ctype
    boundary = ctype.split("boundary=", 1)[1].encode()
    assert int(r.headers["Content-Length"]) == len(r.raw)
    parts = r.raw.split(b"--" + boundary)
    assert parts[0] == b"" and parts[-1] == b"--\r\n", r.raw[:200]
    got = {}
    for p in parts[1:-1]:
        head, _, body = p.partition(b"\r\n\r\n")
        assert body.endswith(b"\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        got[name] = body[:-2]
    assert got == {"metadata": meta, "rootfs": rootfs}
    assert spool_files(lxmd) == []


# ---------------------------------------------------------------- read, edit, export, delete

def test_list_recursion_prefix_and_filter(lxmd):
    fp1 = import_ok(lxmd, unified_image("one"))
    fp2 = import_ok(lxmd, unified_image("two"), {"X-LXD-public": "true"})
    urls = assert_sync(lxmd.api("GET", "/1.0/images"))
    assert sorted(urls) == sorted(["/1.0/images/" + fp1, "/1.0/images/" + fp2])
    objs = assert_sync(lxmd.api("GET", "/1.0/images?recursion=1"))
    assert sorted(o["fingerprint"] for o in objs) == sorted([fp1, fp2])
    for o in objs:
        for key in ("aliases", "architecture", "auto_update", "cached", "created_at",
                    "expires_at", "filename", "last_used_at", "properties", "public", "size",
                    "type", "uploaded_at"):
            assert key in o, (key, o)
    pub = assert_sync(lxmd.api("GET", "/1.0/images?recursion=1&filter=" +
                               urllib.parse.quote("public eq true")))
    assert [o["fingerprint"] for o in pub] == [fp2]

    # A unique prefix names the image; an ambiguous or unknown one does not.
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + fp1[:8]))
    assert img["fingerprint"] == fp1
    common = os.path.commonprefix([fp1, fp2])
    if common:
        err = assert_error_envelope(lxmd.api("GET", "/1.0/images/" + common), 400)
        assert "ambiguous" in err
    err = assert_error_envelope(lxmd.api("GET", "/1.0/images/zz"), 404)
    assert "zz" in err


def test_patch_put_with_etag(lxmd):
    fp = import_ok(lxmd, unified_image("edit"))
    r = lxmd.api("GET", "/1.0/images/" + fp)
    etag = r.headers.get("ETag")
    assert etag, dict(r.headers)

    stale = assert_error_envelope(lxmd.api("PATCH", "/1.0/images/" + fp,
                                           {"public": True}, {"If-Match": "0" * 64}), 412)
    assert "ETag" in stale
    assert_sync(lxmd.api("PATCH", "/1.0/images/" + fp,
                         {"public": True, "properties": {"custom": "x"}}, {"If-Match": etag}))
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + fp))
    assert img["public"] is True
    assert img["properties"]["custom"] == "x"
    assert img["properties"]["os"] == "testos", "PATCH merges properties"
    # The old ETag is stale now.
    assert_error_envelope(lxmd.api("PATCH", "/1.0/images/" + fp, {"public": False},
                                   {"If-Match": etag}), 412)

    assert_sync(lxmd.api("PUT", "/1.0/images/" + fp[:10],
                         {"properties": {"only": "this"}, "auto_update": True,
                          "expires_at": "2040-01-02T03:04:05Z", "profiles": ["default"]}))
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + fp))
    assert img["properties"] == {"only": "this"}, "PUT replaces properties"
    assert img["public"] is False, "PUT without public makes it private"
    assert img["auto_update"] is True
    assert img["expires_at"].startswith("2040-01-02T03:04:05"), img["expires_at"]

    assert_error_envelope(lxmd.api("PATCH", "/1.0/images/" + fp, {"public": "yes"}), 400)
    assert_error_envelope(lxmd.api("PATCH", "/1.0/images/" + fp,
                                   {"properties": {"n": 1}}), 400)
    assert_error_envelope(lxmd.api("PATCH", "/1.0/images/" + fp,
                                   {"expires_at": "tomorrow"}), 400)
    assert_error_envelope(lxmd.api("PATCH", "/1.0/images/zz", {"public": True}), 404)


def test_export_unified_equals_import(lxmd):
    data = unified_image("export")
    done = import_chunked(lxmd, data)
    fp = done["metadata"]["fingerprint"]
    r = lxmd.api("GET", "/1.0/images/%s/export" % fp)
    assert r.status == 200, r
    assert r.raw == data
    assert r.headers.get("Content-Type") == "application/octet-stream"
    assert 'filename="img.tar.gz"' in r.headers.get("Content-Disposition", "")
    assert_error_envelope(lxmd.api("GET", "/1.0/images/%s/export" % ("0" * 64)), 404)


def test_delete_removes_files(lxmd):
    fp = import_ok(lxmd, unified_image("del"))
    assert_sync(lxmd.api("POST", "/1.0/images/aliases", {"name": "gone/soon", "target": fp}))
    assert os.path.exists(os.path.join(images_dir(lxmd), fp))
    done = lxmd.wait_op(assert_async(lxmd.api("DELETE", "/1.0/images/" + fp[:16]))["id"])
    assert done["status"] == "Success", done
    assert_error_envelope(lxmd.api("GET", "/1.0/images/" + fp), 404)
    assert_error_envelope(lxmd.api("GET", "/1.0/images/aliases/gone/soon"), 404)
    assert assert_sync(lxmd.api("GET", "/1.0/images")) == []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [f for f in os.listdir(images_dir(lxmd)) if f.startswith(fp)]
        if not left:
            break
        time.sleep(0.1)
    assert left == [], "image files left under ROOT/images: %r" % left
    assert_error_envelope(lxmd.api("DELETE", "/1.0/images/" + fp), 404)


# ---------------------------------------------------------------- aliases

def test_aliases_crud(lxmd):
    fp1 = import_ok(lxmd, unified_image("al1"))
    fp2 = import_ok(lxmd, unified_image("al2"))
    assert_sync(lxmd.api("POST", "/1.0/images/aliases",
                         {"name": "debian/12", "description": "Debian", "target": fp1}))
    assert_sync(lxmd.api("POST", "/1.0/images/aliases",
                         {"name": "plain", "target": fp2[:12], "description": "", "type": ""}))

    a = assert_sync(lxmd.api("GET", "/1.0/images/aliases/debian/12"))
    assert a == {"name": "debian/12", "description": "Debian", "target": fp1,
                 "type": "container"}
    # The same name percent-encoded, as lxc sends it.
    a2 = assert_sync(lxmd.api("GET", "/1.0/images/aliases/debian%2F12"))
    assert a2 == a
    assert assert_sync(lxmd.api("GET", "/1.0/images/aliases/plain"))["target"] == fp2

    urls = assert_sync(lxmd.api("GET", "/1.0/images/aliases"))
    assert urls == ["/1.0/images/aliases/debian/12", "/1.0/images/aliases/plain"]
    objs = assert_sync(lxmd.api("GET", "/1.0/images/aliases?recursion=1"))
    assert [o["name"] for o in objs] == ["debian/12", "plain"]
    img = assert_sync(lxmd.api("GET", "/1.0/images/" + fp1))
    assert img["aliases"] == [{"name": "debian/12", "description": "Debian"}]

    # Conflicts and unknowns.
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images/aliases",
                                         {"name": "debian/12", "target": fp2}), 409)
    assert "debian/12" in err
    assert_error_envelope(lxmd.api("POST", "/1.0/images/aliases",
                                   {"name": "x", "target": "0" * 64}), 404)
    assert_error_envelope(lxmd.api("GET", "/1.0/images/aliases/nope"), 404)
    assert_error_envelope(lxmd.api("GET", "/1.0/images/aliases/debian/13"), 404)
    assert_error_envelope(lxmd.api("DELETE", "/1.0/images/aliases/nope"), 404)

    # PUT/PATCH with ETag.
    r = lxmd.api("GET", "/1.0/images/aliases/plain")
    etag = r.headers.get("ETag")
    assert etag
    assert_sync(lxmd.api("PATCH", "/1.0/images/aliases/plain", {"description": "patched"},
                         {"If-Match": etag}))
    assert_error_envelope(lxmd.api("PATCH", "/1.0/images/aliases/plain", {"description": "z"},
                                   {"If-Match": etag}), 412)
    a = assert_sync(lxmd.api("GET", "/1.0/images/aliases/plain"))
    assert a["description"] == "patched" and a["target"] == fp2
    assert_sync(lxmd.api("PUT", "/1.0/images/aliases/plain", {"target": fp1}))
    a = assert_sync(lxmd.api("GET", "/1.0/images/aliases/plain"))
    assert a["target"] == fp1 and a["description"] == "", "PUT replaces the description"

    # Rename, including onto a taken name.
    assert_error_envelope(lxmd.api("POST", "/1.0/images/aliases/plain", {"name": "debian/12"}),
                          409)
    assert_sync(lxmd.api("POST", "/1.0/images/aliases/plain", {"name": "debian/bookworm"}))
    assert_error_envelope(lxmd.api("GET", "/1.0/images/aliases/plain"), 404)
    assert assert_sync(lxmd.api("GET", "/1.0/images/aliases/debian/bookworm"))["target"] == fp1
    assert_error_envelope(lxmd.api("POST", "/1.0/images/aliases/nope", {"name": "other"}), 404)

    # Delete.
    assert_sync(lxmd.api("DELETE", "/1.0/images/aliases/debian/bookworm"))
    assert_error_envelope(lxmd.api("GET", "/1.0/images/aliases/debian/bookworm"), 404)
    assert assert_sync(lxmd.api("GET", "/1.0/images/aliases")) == [
        "/1.0/images/aliases/debian/12"]


@pytest.mark.parametrize("name", ["", "a b", "remote:alias", "debian//12", "/lead", "trail/",
                                  "a/../b", "tab\tname", "ctl\x01", "q?x", "h#x", "x" * 256])
def test_invalid_alias_names(lxmd, name):
    fp = import_ok(lxmd, unified_image("inv"))
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images/aliases",
                                         {"name": name, "target": fp}), 400)
    assert "name" in err
    assert assert_sync(lxmd.api("GET", "/1.0/images/aliases")) == []


def test_invalid_alias_rename(lxmd):
    fp = import_ok(lxmd, unified_image("ren"))
    assert_sync(lxmd.api("POST", "/1.0/images/aliases", {"name": "ok", "target": fp}))
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images/aliases/ok", {"name": "bad name"}),
                                400)
    assert "space" in err
    assert assert_sync(lxmd.api("GET", "/1.0/images/aliases/ok"))["target"] == fp


def test_publish_source_types(lxmd):
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images",
                                         {"source": {"type": "url", "url": "https://x"}}), 501)
    assert "url" in err
    err = assert_error_envelope(lxmd.api("POST", "/1.0/images", {"public": True}), 400)
    assert "source" in err
    # Publishing an unknown instance fails, at once or in its operation, and names it.
    r = lxmd.api("POST", "/1.0/images", {"source": {"type": "instance", "name": "nosuch"}})
    if r.status == 202:
        done = wait_upload(lxmd, r)
        assert done["status"] == "Failure" and "nosuch" in done["err"], done
    else:
        assert "nosuch" in assert_error_envelope(r, 404)
    assert assert_sync(lxmd.api("GET", "/1.0/images")) == []
    assert spool_files(lxmd) == []
