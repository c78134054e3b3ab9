"""The program that runs first inside every sandbox: it builds the jail, then runs the candidate.

Standalone (standard library and ``ctypes`` only; the text of :mod:`ladtrain.sandbox.values` is
prepended). It starts as uid 0 of a fresh user namespace (mapped to one unprivileged host uid), as
pid 1 of fresh pid, mount, network, IPC, UTS and cgroup namespaces, with its configuration as one JSON
document on stdin. In order, failing closed (exit 97 with the failed step on the status pipe) at the
first step that does not work:

1. a minimal root: a tmpfs holding read-only recursive binds of only the trees Python needs
   (``/usr``, ``/etc``, the interpreter's prefix, ...), a fresh ``/proc``, a ``/dev`` with only
   ``null zero full random urandom`` and a 1 MiB ``/dev/shm``, and ``/tmp`` (the size-limited working
   tmpfs, ``nosuid,nodev,noexec``); ``pivot_root`` into it and the host tree detached. Filesystem
   sockets found in the bound trees are masked (a ``/dev/null`` bind on each);
2. every mount of the new tree is checked in ``/proc/self/mountinfo`` (escaped names such as ``\\040``
   decoded): any writable mount other than ``/tmp``, ``/dev/shm`` and ``/proc`` refuses the run;
3. namespace limits of its own user namespace set to 0 (``user.max_user_namespaces`` and the other
   ``max_*_namespaces``: no nested namespace can be created), SysV shared memory capped at the tmpfs
   size and message queues at 0 (the IPC namespace is private, so this caps only this run);
4. a fresh, empty session keyring (the user keyrings are already the new user namespace's own);
5. rlimits (CPU, address space, processes, file size, open files, no core, no locked memory or POSIX
   message queues); every capability dropped (bounding set, ambient, effective, permitted,
   inheritable) under locked ``SECBIT_NOROOT``, ``no_new_privs`` set, capabilities re-read and checked;
6. the seccomp filter of :mod:`ladtrain.sandbox.seccomp` installed;
7. one ``ok`` on the status pipe; then a fork: this process stays pid 1 (it reaps, and reports how
   the candidate ended on the status pipe), the child closes the status pipe before any candidate code
   runs (what the candidate writes cannot reach it) and runs the candidate: ``program`` mode a whole
   program, ``serve`` mode a module that answers calls (one line of :mod:`ladtrain.sandbox.values`
   text each way) on two pipes to the judge.

``off`` (tests only) names protections to leave out, so each attack test can show the attack working
without its protection.
"""

import ctypes
import json
import os
import sys

if "encode" not in globals():  # imported as a module; in the sandbox the codec's text comes first
    from ladtrain.sandbox.values import NotPlain, decode, encode

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH, AT_RECURSIVE, AT_FDCWD = 2, 0x8000, -100
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4
SYS_PIVOT_ROOT, SYS_KEYCTL, SYS_MOUNT_SETATTR, SYS_CAPSET = 155, 250, 442, 126  # x86-64 numbers
NEW = "/tmp"  # where the new root is built (a mount point of this private namespace only)
SETUP_FAILED = 97
_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def _check(rc, step):
    if rc != 0:
        raise SetupError("%s: %s" % (step, os.strerror(ctypes.get_errno())))


def _mount(src, dst, fstype, flags, data, step):
    _check(_libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), ctypes.c_ulong(flags),
                       data and data.encode()), step)


def unescape(field):
    """A path field of /proc/self/mountinfo, with its octal escapes (``\\040`` = space) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts():
    """(mount point, per-mount options, fs type) of every mount, paths decoded."""
    rows = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            sep = parts.index("-")
            rows.append((unescape(parts[4]), parts[5].split(","), parts[sep + 1]))
    return rows


def _readonly_tree(path, off):
    """Make ``path`` and every mount under it read-only, nosuid, nodev."""
    if "mount_setattr" not in off:
        attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0)
        if _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, attr, 32) == 0:
            return
    if "submounts_ro" in off:
        _ro_one(path, [])
        return
    for mnt, opts, _ in mounts():  # fallback: one remount per mount, paths decoded
        if mnt == path or mnt.startswith(path.rstrip("/") + "/"):
            _ro_one(mnt, opts)


def _ro_one(mnt, opts, nodev=True):
    keep = 0
    for name, bit in (("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)):
        keep |= bit if name in opts else 0
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | (MS_NODEV if nodev else 0) | keep
    for extra in (0, 1 << 21, 1 << 10, 1 << 24):  # atime flags may be locked: try relatime, noatime, strict
        if _libc.mount(None, mnt.encode(), None, ctypes.c_ulong(flags | extra), None) == 0:
            return
    raise SetupError("remount read-only %r: %s" % (mnt, os.strerror(ctypes.get_errno())))


def build_root(cfg):
    off = set(cfg["off"])
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None, "make / private")
    _mount("tmpfs", NEW, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755", "root tmpfs")
    for src, dst in cfg["binds"]:
        target = NEW + dst
        if os.path.islink(src):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(src), target)
            continue
        os.makedirs(target, exist_ok=True)
        _mount(src, target, None, MS_BIND | MS_REC, None, "bind %s" % src)
        _readonly_tree(target, off)
    if "socket_mask" not in off:
        for path in cfg["sockets"]:
            _mount("/dev/null", NEW + path, None, MS_BIND, None, "mask socket %s" % path)
            _ro_one(NEW + path, [])
    dev = NEW + "/dev"
    os.makedirs(dev, exist_ok=True)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755", "dev tmpfs")
    for name in ("null", "zero", "full", "random", "urandom"):
        open(dev + "/" + name, "w").close()
        _mount("/dev/" + name, dev + "/" + name, None, MS_BIND, None, "bind /dev/" + name)
        _ro_one(dev + "/" + name, [], nodev=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, dev + "/" + name)
    os.mkdir(dev + "/shm")
    os.mkdir(NEW + "/proc")
    os.mkdir(NEW + "/tmp")
    os.mkdir(NEW + "/.old")
    _mount("proc", NEW + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "mount proc")
    noexec = 0 if "noexec" in off else MS_NOEXEC
    _mount("tmpfs", NEW + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | noexec,
           "size=%dm,mode=1777" % cfg["tmpfs_mb"], "work tmpfs")
    _mount("tmpfs", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=1777", "shm tmpfs")
    _mount(None, dev, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, None, "dev read-only")
    os.chdir(NEW)
    _check(_libc.syscall(SYS_PIVOT_ROOT, b".", b".old"), "pivot_root")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "detach the host tree")
    os.rmdir("/.old")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None, "root read-only")
    os.mkdir("/tmp/work")
    os.chdir("/tmp/work")


WRITABLE = {"/tmp": "tmpfs", "/dev/shm": "tmpfs", "/proc": "proc"}


def check_mounts():
    """Refuse the run if any mount other than the three expected ones is writable."""
    for mnt, opts, fstype in mounts():
        if "ro" not in opts and WRITABLE.get(mnt) != fstype:
            raise SetupError("mount %r is writable" % mnt)


def limit_namespaces(cfg):
    for name in ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"):
        path = "/proc/sys/user/max_%s_namespaces" % name
        if os.path.exists(path):
            with open(path, "w") as fh:
                fh.write("0")
    if "ipc" in cfg["off"]:  # the host's IPC namespace: its limits are not this run's to set
        return
    shm = cfg["tmpfs_mb"] << 20
    for key, value in (("shmmax", shm), ("shmall", shm >> 12), ("shmmni", 16), ("msgmni", 0)):
        with open("/proc/sys/kernel/" + key, "w") as fh:
            fh.write(str(value))


def drop_privileges(cfg):
    import resource

    lim = cfg["rlimits"]
    for name, value in lim.items():
        soft, hard = value if isinstance(value, list) else (value, value)
        resource.setrlimit(getattr(resource, name), (soft, hard))
    # PR_SET_SECUREBITS: NOROOT, NO_SETUID_FIXUP, NO_CAP_AMBIENT_RAISE, each locked; KEEP_CAPS locked off
    _check(_libc.prctl(28, 0xEF, 0, 0, 0), "securebits")
    with open("/proc/sys/kernel/cap_last_cap") as fh:
        last = int(fh.read())
    for cap in range(last + 1):
        _check(_libc.prctl(24, cap, 0, 0, 0), "drop bounding capability %d" % cap)
    _check(_libc.prctl(47, 4, 0, 0, 0), "clear ambient capabilities")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.syscall(SYS_CAPSET, header, data), "capset")
    _check(_libc.prctl(38, 1, 0, 0, 0), "no_new_privs")
    with open("/proc/self/status") as fh:
        status = dict(line.split(":", 1) for line in fh if ":" in line)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(status[key], 16):
            raise SetupError("capability left in " + key)
    if cfg["seccomp"] and "seccomp" not in cfg["off"]:
        code = bytes.fromhex(cfg["seccomp"])
        buf = ctypes.create_string_buffer(code, len(code))

        class Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        prog = Prog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
        _check(_libc.prctl(22, 2, ctypes.byref(prog), 0, 0), "seccomp")


def setup(cfg):
    off = set(cfg["off"])
    build_root(cfg)
    if "mount_check" not in off:
        check_mounts()
    if "userns_limit" not in off:
        limit_namespaces(cfg)
    if "keyring" not in off:
        if _libc.syscall(SYS_KEYCTL, 1, None) < 0:  # KEYCTL_JOIN_SESSION_KEYRING, anonymous
            raise SetupError("new session keyring: " + os.strerror(ctypes.get_errno()))
    drop_privileges(cfg)


def run_program(cfg):
    """``program`` mode: run the text as ``__main__``; the token after a normal end (forgeable by the
    program itself: this reports how a program ended, it is no verdict)."""
    code = compile(cfg["code"], "program.py", "exec")
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit:
        os._exit(3)
    except BaseException as e:
        sys.stderr.write("%s: %s\n" % (type(e).__name__, str(e)[:200]))
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os.write(1, ("\n" + cfg["token"] + "\n").encode())
    os._exit(0)


def _builtin_exception(e):
    import builtins

    for cls in type(e).__mro__:
        if getattr(builtins, cls.__name__, None) is cls and issubclass(cls, BaseException):
            return cls.__name__
    return "BaseException"


def serve(cfg):
    """``serve`` mode: load the candidate module, then answer calls until the judge closes the pipe."""
    req = os.fdopen(cfg["req_fd"], "r", encoding="ascii", newline="\n")
    resp = os.fdopen(cfg["resp_fd"], "w", encoding="ascii", newline="\n")

    def answer(obj):
        resp.write(json.dumps(obj) + "\n")
        resp.flush()

    g = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(cfg["code"], "solution.py", "exec"), g)
        fn = g[cfg["entry"]]
        if not callable(fn):
            raise TypeError("not callable")
    except BaseException as e:
        answer({"load_error": _builtin_exception(e)})
        return
    answer({"ready": True})
    for line in req:
        msg = json.loads(line)
        args, kwargs = decode(msg["args"]), decode(msg["kwargs"])
        before = encode(args)
        try:
            value = fn(*args, **kwargs)
        except BaseException as e:
            answer({"raised": _builtin_exception(e)})
            continue
        try:
            after = encode(args)
            answer({"value": encode(value), "args": after if after != before else None})
        except NotPlain as e:
            answer({"not_plain": str(e.args[0])[:80]})
        except BaseException as e:
            answer({"raised": _builtin_exception(e)})


def become_init(child, cfg, status):
    """pid 1 of the run's pid namespace: reap every process; when the candidate ends, report how on the
    status pipe (`` exit N`` or `` signal N``, after the ``ok``) and exit with its status (128 + n for a
    signal). Its signals from inside the namespace are ignored by the kernel (no handlers)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    for key in ("req_fd", "resp_fd"):
        if key in cfg:
            os.close(cfg[key])
    for fd in (0, 1, 2):
        os.close(fd)
    while True:
        try:
            pid, st = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            how = "exit %d" % os.WEXITSTATUS(st) if os.WIFEXITED(st) else "signal %d" % os.WTERMSIG(st)
            os.write(status, (" " + how).encode())
            os._exit(os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))


def main():
    cfg = json.loads(sys.stdin.read())
    status = cfg["status_fd"]
    try:
        setup(cfg)
    except (SetupError, OSError) as e:
        os.write(status, ("fail " + str(e)).encode("ascii", "replace")[:500])
        os._exit(SETUP_FAILED)
    for key in list(os.environ):
        del os.environ[key]
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": "/tmp/work", "LANG": "C.UTF-8"})
    os.write(status, b"ok")
    child = os.fork()
    if child:
        become_init(child, cfg, status)
    os.close(status)  # before any candidate code: what it writes never reaches the status pipe
    keep = {0, 1, 2, cfg.get("req_fd", -1), cfg.get("resp_fd", -1)}
    for fd in os.listdir("/proc/self/fd"):
        if int(fd) not in keep:
            try:
                os.close(int(fd))
            except OSError:
                pass
    del cfg["binds"], cfg["sockets"], cfg["seccomp"]
    if cfg["mode"] == "program":
        run_program(cfg)
    else:
        serve(cfg)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
