"""Isolated execution of model-written code, and a pass verdict the code cannot forge.

**The verdict** (:meth:`Sandbox.judge`). Two processes per run:

- the *candidate*: the model's program, loaded as a module in the sandbox (below). It defines the
  function under test and then only answers calls: one line of JSON in (the arguments), one line out
  (the return value, encoded by :mod:`ladtrain.sandbox.values`);
- the *judge* (:mod:`ladtrain.sandbox.judge`): a separate interpreter outside the sandbox, never
  reachable from it (another pid and user namespace, another uid, no shared memory, no signal path).
  It runs the problem's prompt (imports, helpers) and test text, binds the function's name to a proxy
  that forwards each call to the candidate, and calls ``check(proxy)`` (the HumanEval convention). It
  decodes every answer into fresh builtin values, so what the candidate sends is data, never an
  object: an ``int`` subclass whose ``==`` is always true cannot even be encoded. The verdict goes to
  the trainer on a pipe the candidate has no handle on.

So the candidate's own memory, frames, tracebacks, builtins, ``/proc/self/mem`` and exit path are
irrelevant to the verdict: patching ``os._exit``, reading a token from a frame (there is none) or exiting
with status 0 all end in ``fail``. The tests' expected values never enter the sandbox. ``reason`` is the
harness's own text (a fixed phrase, the judge's exception type, a line number of the test), never the
program's output; the program's stdout and stderr come back separately, control characters removed.

What cannot be checked this way, and how it is handled: a test that passes an argument that is not a
plain value (a function, an object) to the candidate: the run is ``error`` ("cannot check: ..."), scored
None, never 0 or 1; a test that relies on the function changing its arguments in place works for
top-level lists, dicts and sets (they are written back) and not for deeper mutation; a test that
catches exceptions of the candidate sees the builtin exception class (``ValueError`` ...) without its
message; a candidate that returns a non-plain value (a generator, a numpy array, a subclass) fails.
None of the 164 HumanEval problems needs more (their canonical solutions pass:
``tests/train/test_tasks_code.py``, a slow test).

:meth:`Sandbox.run` runs a whole program and reports how it ended; its ``passed`` (a token printed
after the program's end) can be forged by the program and is not a verdict.

**The sandbox** (:mod:`ladtrain.sandbox.runner`, :mod:`ladtrain.sandbox.boot`). Each run is a fresh
user namespace (uid 0 inside mapped to one unprivileged host uid from a range that is this trainer
process's alone: :mod:`ladtrain.sandbox.uids`), with new pid, mount, network, IPC, UTS and cgroup
namespaces, started by util-linux ``unshare`` (and ``setpriv`` to the run's uid as root). Inside:

- **a minimal read-only root**: only ``/usr``, ``/etc``, ``/bin``, ``/sbin``, ``/lib*`` and the
  interpreter's prefix (recursively read-only, nosuid, nodev), a private ``/proc``, a ``/dev`` with
  five devices, a 1 MiB ``/dev/shm`` and the size-limited working tmpfs ``/tmp`` (``noexec``). The
  host's ``/run``, ``/var``, ``/home``, ``/tmp``, the repository and the data sets are not there;
  filesystem sockets in the bound trees are masked, abstract ones are per network namespace;
- **fail closed**: every mount is re-read from ``/proc/self/mountinfo`` (escaped names decoded) and the
  run is refused (``error``, no score) if any mount but ``/tmp``, ``/dev/shm`` and ``/proc`` is writable;
- **no network**, **no SysV IPC shared** with the host or other runs (IPC namespace; its shm capped at
  the tmpfs size), **no nested namespaces** (``max_*_namespaces`` 0 in the run's user namespace, and
  seccomp), **a fresh session keyring**, **no capabilities** (all sets, locked ``SECBIT_NOROOT``,
  ``no_new_privs``), **a seccomp filter** (:mod:`ladtrain.sandbox.seccomp`, x86-64);
- **limits**: wall time (the whole tree killed), CPU seconds, address space per process, processes
  per run, file size, open files, output; and per-run cgroups (memory including tmpfs/memfd/shm, pids,
  CPU weight) where the machine allows, with the fallback stated in :mod:`ladtrain.sandbox.cgroups`.

**Limits** (plainly): namespaces, rlimits, cgroups and seccomp, not a VM: a kernel bug reachable from
the allowed system calls is out of scope. World-readable files of the bound trees (``/usr``, ``/etc``)
can be read but not sent anywhere. Sockets in the bound trees are found once per process (one created
later is not masked). Without a cgroup backend the memory cap is per process (``nproc x memory_mb`` in
the worst case) and CPU fairness between runs relies on the kernel's autogroup. The seccomp filter is
x86-64 only. The judge runs the problem's test text unsandboxed (it is trusted data, like the trainer's
config). Without root and without unprivileged user namespaces the sandbox refuses to run
(:class:`SandboxError`); as root, mode ``userns`` is refused (it would map to the host's root).

Tests switch single protections off with ``Sandbox(_off=...)`` (names in
:data:`ladtrain.sandbox.runner.PROTECTIONS`) to show each attack working without its protection
(``tests/train/test_sandbox_isolation_attacks.py``); nothing outside a test does.
"""

from ladtrain.sandbox.box import Sandbox, isolation_mode
from ladtrain.sandbox.runner import Limits, Result, SandboxError, clean

__all__ = ["Limits", "Result", "Sandbox", "SandboxError", "clean", "isolation_mode"]
