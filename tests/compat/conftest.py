"""pytest fixtures for the compat suite: LXD's own clients, unmodified, against a private lxmd.

The clients are Debian's: lxd-client (`lxc`, LXD 5.0.2) and python3-pylxd (2.2.10). `lxc` finds
the daemon through $LXD_DIR/unix.socket (LXD_DIR is the private lxmd's root) and keeps its own
config under $HOME (the daemon's temporary base, so nothing is left behind); pylxd is given the
socket as an http+unix:// endpoint. A test module that needs a client that is not installed is
skipped with the package to install; nothing else skips.

The private daemon and its checks at teardown are tests/integration's (conftest.py, lxmtest.py):
this file loads that conftest under another module name and re-exports its fixtures.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from urllib.parse import quote

import pytest

INTEGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration")
sys.path.insert(0, INTEGRATION)

import lxmtest  # noqa: E402


def _load_integration_conftest():
    spec = importlib.util.spec_from_file_location("lxm_integration_conftest",
                                                  os.path.join(INTEGRATION, "conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_it = _load_integration_conftest()

# The private daemon (started, `lxm init --auto` done) and its factory; failures attach the
# daemon's stderr and log to the report.
lxmd_factory = _it.lxmd_factory
lxmd = _it.lxmd
pytest_runtest_makereport = _it.pytest_runtest_makereport

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="compat tests need root (lxmd refuses to run otherwise)")
    for item in items:
        if str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(skip)


def need_lxc():
    """A module-level skip when LXD's client is not installed (and only then)."""
    return pytest.mark.skipif(shutil.which("lxc") is None,
                              reason="LXD's client is not installed: apt-get install lxd-client")


class Lxc:
    """Runs LXD's `lxc` against a private lxmd."""

    def __init__(self, d):
        self.d = d
        self.env = dict(d.cli_env(), LXD_DIR=d.root, HOME=d.base, TERM="dumb")

    def run(self, *args, check=True, input=None, timeout=120):
        p = subprocess.run(["lxc"] + [str(a) for a in args], env=self.env,
                           input=input if input is not None else "", capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("lxc %s exited %d\nstdout: %s\nstderr: %s"
                                 % (" ".join(map(str, args)), p.returncode, p.stdout, p.stderr))
        return p


def pylxd_endpoint(d):
    """pylxd 2.2.10 takes a path only when os.path.isfile() says so, which is never true of a
    socket: the endpoint is given in the http+unix:// form it would have made of it."""
    return "http+unix://" + quote(d.socket, safe="")


@pytest.fixture
def busybox_image(lxmd):
    """The busybox image under the alias 'busybox', built as `lxm launch busybox` would on first
    use (lxc only looks aliases up, it builds nothing). Returns its fingerprint."""
    lxmd.cli("image", "build", "busybox", timeout=300)
    r = lxmtest.assert_sync(lxmd.api("GET", "/1.0/images/aliases/busybox"))
    return r["target"]


@pytest.fixture
def names(lxmd):
    """Instance names for a test (lxm-it-<tag>-<random>); the instances are force-deleted at the
    end, and none may leave a cgroup or a directory behind."""
    made = []

    def new(tag="c"):
        name = lxmtest.unique(tag)
        made.append(name)
        return name

    yield new
    for name in made:
        lxmd.cli("delete", "-f", name, check=False)
        assert lxmtest.cgroup_dirs(name) == [], "cgroups of %s left behind" % name
        assert not os.path.exists(os.path.join(lxmd.root, "containers", name)), \
            "%s's directory left behind" % name


@pytest.fixture
def lxc(lxmd, busybox_image):
    return Lxc(lxmd)
