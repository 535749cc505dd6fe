"""security.nesting: a container that can run containers. What a nested container manager needs
from the kernel is a new user, mount and pid namespace with its own proc mounted; the kernel
allows that mount only where the container's /proc is fully visible, which lxm grants with
nesting and withholds (masked /proc files, read-only /proc/sys) without it."""

# The nested "container": new user, mount, pid and network namespaces, root inside, its own proc.
NESTED = ("unshare -U -r -m -p -n -f --mount-proc "
          "sh -c 'echo pid=$$; cat /proc/self/uid_map; ls /proc | grep -c \"^[0-9]\"'")


def run(lxmd, name, script):
    return lxmd.cli("exec", name, "--", "sh", "-c", script, check=False)


def test_nesting_lets_a_container_start_a_nested_one(lxmd, launched):
    c = launched(config={"security.nesting": "true"})
    r = run(lxmd, c, NESTED)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    # pid 1 of its own pid namespace, root of its own user namespace (0 mapped to the
    # container's root), and it sees only its own processes (its shell and ls, grep).
    assert lines[0] == "pid=1", r.stdout
    assert lines[1:4] == ["0", "0", "1"], r.stdout
    assert int(lines[4]) <= 4, r.stdout
    # The container's /proc is whole: nothing masked over it.
    r = run(lxmd, c, "grep -c ' /proc/' /proc/self/mountinfo || true")
    assert r.stdout.strip() == "0", r.stdout


def test_without_nesting_the_nested_proc_mount_is_refused(lxmd, launched):
    c = launched()
    r = run(lxmd, c, NESTED)
    assert r.returncode != 0, r.stdout
    assert "mount" in r.stderr and ("Operation not permitted" in r.stderr
                                    or "Permission denied" in r.stderr), r.stderr
    # What keeps it from the host stays in place: /proc/sys read-only, files masked.
    r = run(lxmd, c, "grep ' /proc/' /proc/self/mountinfo")
    assert " /proc/sys " in r.stdout, r.stdout
