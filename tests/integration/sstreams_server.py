"""A local simplestreams image server for the tests: a static directory served over HTTPS on
127.0.0.1 (python's http.server + ssl) with a certificate made by `openssl req` for the test,
and helpers that build LXD images and the catalogue (streams/v1/index.json + images.json)
describing them.
"""

import hashlib
import http.server
import io
import json
import os
import ssl
import subprocess
import tarfile
import threading


def sha256_file(*paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def make_cert(directory):
    """A self-signed certificate for 127.0.0.1 (it is its own CA); returns (cert, key)."""
    cert = os.path.join(directory, "server.crt")
    key = os.path.join(directory, "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=lxm test image server",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True)
    return cert, key


def _add_file(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1700000000
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar, name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 1700000000
    tar.addfile(info)


METADATA_YAML = b"""architecture: x86_64
creation_date: 1700000000
properties:
  os: Tiny
  release: "1"
  description: Tiny test image
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
"""


def make_split_image(directory, marker):
    """lxd.tar.xz (metadata.yaml + templates/) and root.tar.xz (a tiny tree) in directory;
    marker goes into rootfs/etc/marker so that each image differs. Returns (meta, rootfs)."""
    os.makedirs(directory, exist_ok=True)
    meta = os.path.join(directory, "lxd.tar.xz")
    rootfs = os.path.join(directory, "rootfs.tar.xz")
    with tarfile.open(meta, "w:xz", format=tarfile.PAX_FORMAT) as t:
        _add_file(t, "metadata.yaml", METADATA_YAML)
        _add_dir(t, "templates")
        _add_file(t, "templates/hostname.tpl", b"{{ instance.name }}\n")
    with tarfile.open(rootfs, "w:xz", format=tarfile.PAX_FORMAT) as t:
        for d in ("bin", "etc", "root", "tmp"):
            _add_dir(t, d)
        _add_file(t, "etc/marker", marker.encode() + b"\n")
        _add_file(t, "etc/os-release", b"ID=tiny\n")
        # Some bulk so that a download takes more than one write callback.
        _add_file(t, "bin/blob", os.urandom(300 * 1024), 0o755)
    return meta, rootfs


def make_unified_image(directory, marker):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "lxd_combined.tar.gz")
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as t:
        _add_file(t, "metadata.yaml", METADATA_YAML)
        _add_dir(t, "rootfs")
        _add_dir(t, "rootfs/etc")
        _add_file(t, "rootfs/etc/marker", marker.encode() + b"\n")
    return path


def item(root, path, ftype, **extra):
    full = os.path.join(root, path)
    d = {"ftype": ftype, "path": path, "sha256": sha256_file(full),
         "size": os.path.getsize(full)}
    d.update(extra)
    return d


def split_product(root, version_dir, arch, aliases, marker):
    """A product entry (split image: lxd.tar.xz + root.tar.xz) whose files are written under
    root/version_dir. Returns (product, fingerprint)."""
    meta, rootfs = make_split_image(os.path.join(root, version_dir), marker)
    fp = sha256_file(meta, rootfs)
    rel = os.path.relpath
    product = {
        "aliases": aliases, "arch": arch, "os": "Tiny", "release": "1", "release_title": "one",
        "variant": "default",
        "versions": {
            os.path.basename(version_dir): {"items": {
                "lxd.tar.xz": item(root, rel(meta, root), "lxd.tar.xz",
                                   combined_rootxz_sha256=fp, combined_sha256=fp),
                "root.tar.xz": item(root, rel(rootfs, root), "root.tar.xz"),
            }},
        },
    }
    return product, fp


def unified_product(root, version_dir, arch, aliases, marker):
    path = make_unified_image(os.path.join(root, version_dir), marker)
    product = {
        "aliases": aliases, "arch": arch, "os": "Tiny", "release": "1", "variant": "default",
        "versions": {os.path.basename(version_dir): {"items": {
            "lxd_combined.tar.gz": item(root, os.path.relpath(path, root), "lxd_combined.tar.gz"),
        }}},
    }
    return product, sha256_file(path)


def write_catalogue(root, products):
    """streams/v1/index.json and streams/v1/images.json for products ({id: product})."""
    os.makedirs(os.path.join(root, "streams", "v1"), exist_ok=True)
    index = {"format": "index:1.0", "index": {"images": {
        "datatype": "image-downloads", "path": "streams/v1/images.json",
        "format": "products:1.0", "products": sorted(products)}}}
    images = {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
              "products": products}
    with open(os.path.join(root, "streams", "v1", "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(root, "streams", "v1", "images.json"), "w") as f:
        json.dump(images, f)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        self.server.requests.append(self.path)


class Server:
    """Serves root over HTTPS on 127.0.0.1 (a free port) in a thread; url, ca (the PEM to
    trust) and requests (paths asked for) are set once started."""

    def __init__(self, root, certdir):
        self.root = root
        self.ca, key = make_cert(certdir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.ca, key)
        handler = lambda *a, **kw: _Handler(*a, directory=root, **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.requests = []
        self.httpd.daemon_threads = True
        self.url = "https://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.httpd.requests

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
