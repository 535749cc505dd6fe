"""pytest fixtures for lxm's integration tests.

`lxmd` starts a private daemon on a fresh /tmp/lxm-it-XXXX root (binaries from $LXM_BUILD_DIR,
default <repo>/build), waits until GET /1.0 answers, and on teardown sends SIGTERM, requires exit
code 0 within 10 s and no process left behind, then removes the root. When a test fails, the
daemon's stderr and lxmd.log are attached to the report.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import lxmtest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root (lxmd refuses to run otherwise)")
        for item in items:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        daemons = getattr(item, "_lxm_daemons", [])
        for i, d in enumerate(daemons):
            tag = "lxmd" if i == 0 else "lxmd #%d" % (i + 1)
            err = d.stderr_text()
            log = d.log_text()
            report.sections.append(("%s stderr (%s)" % (tag, d.base), err[-20000:] or "(empty)"))
            if log and log != err:
                report.sections.append(("%s lxmd.log" % tag, log[-20000:]))


@pytest.fixture
def lxmd_factory(request):
    """Makes private daemons (not started); each is stopped, checked and removed at teardown."""
    made = []
    request.node._lxm_daemons = made

    def make(**kw):
        d = lxmtest.Lxmd(**kw)
        made.append(d)
        return d

    yield make

    errors = []
    for d in made:
        if d.proc is not None:
            rc = d.stop(10)
            if rc != 0:
                errors.append("lxmd (%s) exited with %r after SIGTERM, expected 0 within 10 s:\n%s"
                              % (d.base, rc, d.stderr_text()[-6000:]))
        left = d.cleanup()
        if left:
            errors.append("processes left behind under %s: %r" % (d.base, left))
        if os.path.exists(d.base):
            errors.append("%s not removed" % d.base)
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def lxmd(lxmd_factory):
    """A running private lxmd."""
    d = lxmd_factory()
    d.start()
    return d


@pytest.fixture
def r2(lxmd_factory):
    """A second running lxmd, listening for HTTPS on 127.0.0.1:<r2.https_port>."""
    from nettest import free_port

    d = lxmd_factory()
    d.start()
    d.https_port = free_port()
    d.cli("config", "set", "core.https_address", "127.0.0.1:%d" % d.https_port)
    yield d
    for name in d.instance_names():
        d.cli("delete", "-f", name, check=False)


@pytest.fixture
def https(lxmd, tmp_path):
    """lxmd listening for HTTPS on 127.0.0.1: (port, a directory for certificates)."""
    from nettest import free_port

    port = free_port()
    lxmtest.assert_sync(lxmd.api("PATCH", "/1.0", {"config": {"core.https_address":
                                                              "127.0.0.1:%d" % port}}))
    return port, str(tmp_path)


@pytest.fixture
def r2_conf(lxmd, r2, tmp_path):
    """A private LXM_CONF for the local lxm in which r2 is a remote that trusts it (a token)."""
    env = {"LXM_CONF": str(tmp_path / "conf")}
    token = r2.cli("config", "trust", "add", "--name", "laptop", "-q").stdout.strip()
    lxmd.cli("remote", "add", "r2", "https://127.0.0.1:%d" % r2.https_port,
             "--accept-certificate", "--token", token, env=env)
    return env


@pytest.fixture
def launched(lxmd):
    """Launches busybox containers by name (with optional config keys and profiles after default);
    force-deletes them at the end and checks that no cgroup and no directory of theirs is left."""
    names = []

    def launch(name=None, config=None, profiles=None):
        name = name or lxmtest.unique("c")
        args = ["launch", "busybox", name]
        # Given profiles come after default, in order.
        for p in ["default"] + profiles if profiles else []:
            args += ["-p", p]
        for k, v in (config or {}).items():
            args += ["-c", "%s=%s" % (k, v)]
        names.append(name)
        lxmd.cli(*args, timeout=120)
        return name

    yield launch
    for name in names:
        lxmd.cli("delete", "-f", name, check=False)
        assert lxmtest.cgroup_dirs(name) == [], "cgroups of %s left behind" % name
        assert not os.path.exists(os.path.join(lxmd.root, "containers", name)), \
            "%s's directory left behind" % name
