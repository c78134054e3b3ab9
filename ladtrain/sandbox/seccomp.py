"""The sandbox's seccomp filter, assembled as classic BPF (x86-64 only; elsewhere there is none).

Built here, in the trusted process; the sandbox's boot program (:mod:`ladtrain.sandbox.boot`) only
installs the bytes with ``prctl(PR_SET_SECCOMP)`` after ``no_new_privs``, before any model-written code
runs. The filter is a deny list, each denied call failing with ``EPERM``:

- new namespaces and mounts: ``unshare``, ``setns``, ``clone`` with any ``CLONE_NEW*`` flag, ``mount``,
  ``umount2``, ``pivot_root``, ``chroot`` and the new mount API (``open_tree`` ... ``mount_setattr``);
  ``clone3`` fails with ``ENOSYS`` (its flags live in memory a filter cannot read), so the C library
  falls back to ``clone``;
- kernel keyrings (``keyctl``, ``add_key``, ``request_key``);
- ``memfd_create`` (anonymous files are charged to no size-limited tmpfs);
- ``setsid`` (with ``kernel.sched_autogroup_enabled`` every new session is its own CPU scheduling
  group: seven ``setsid`` children would take seven shares of the CPU from other runs);
- debugging and kernel-attack surface: ``ptrace``, ``process_vm_readv/writev``, ``bpf``,
  ``userfaultfd``, ``perf_event_open``, ``io_uring_*``, module, kexec, swap, reboot, ``acct``,
  ``quotactl``, ``open_by_handle_at``, ``iopl``/``ioperm``;
- any other architecture's calls (the x32 ABI too) kill the process.
"""

from __future__ import annotations

import platform
import struct

_X86_64 = {
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "keyctl": 250, "add_key": 248, "request_key": 249, "memfd_create": 319,
    "setsid": 112, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "bpf": 321,
    "userfaultfd": 323, "perf_event_open": 298, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "kexec_load": 246, "kexec_file_load": 320, "swapon": 167, "swapoff": 168, "reboot": 169, "acct": 163,
    "quotactl": 179, "open_by_handle_at": 304, "name_to_handle_at": 303, "iopl": 172, "ioperm": 173,
}
_CLONE, _CLONE3 = 56, 435
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME (0x80)
CLONE_NS_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
                  | 0x80)

_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
EPERM, ENOSYS = 1, 38

DENIED = tuple(sorted(_X86_64))
"""The calls the filter denies (besides namespace-creating ``clone`` and ``clone3``)."""


def _assemble(prog: list[tuple]) -> bytes:
    """``prog``: (code, k) or (code, k, jt_label, jf_label) or ("label", name); labels resolved to the
    forward offsets classic BPF needs."""
    where, n = {}, 0
    for ins in prog:
        if ins[0] == "label":
            where[ins[1]] = n
        else:
            n += 1
    out, i = bytearray(), 0
    for ins in prog:
        if ins[0] == "label":
            continue
        code, k, *jumps = ins
        jt, jf = (where[j] - i - 1 if isinstance(j, str) else j for j in (jumps or (0, 0)))
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise ValueError("BPF jump out of range")
        out += struct.pack("<HBBI", code, jt, jf, k)
        i += 1
    return bytes(out)


def filter_bytes() -> bytes | None:
    """The filter for this machine, or None where there is none (not x86-64)."""
    if platform.machine() != "x86_64":
        return None
    prog: list[tuple] = [
        (_LD_ABS, 4), (_JEQ, _AUDIT_ARCH_X86_64, 0, "kill"),
        (_LD_ABS, 0), (_JGE, _X32_BIT, "kill", 0),
        (_JEQ, _CLONE3, "enosys", 0), (_JEQ, _CLONE, "clone", 0),
    ]
    prog += [(_JEQ, nr, "deny", 0) for nr in sorted(_X86_64.values())]
    prog += [
        (_RET, _ALLOW),
        ("label", "clone"), (_LD_ABS, 16), (_JSET, CLONE_NS_FLAGS, "deny", 0), (_RET, _ALLOW),
        ("label", "deny"), (_RET, _ERRNO | EPERM),
        ("label", "enosys"), (_RET, _ERRNO | ENOSYS),
        ("label", "kill"), (_RET, _KILL),
    ]
    return _assemble(prog)
