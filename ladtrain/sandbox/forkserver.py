"""The trainer's side of the judge fork server (:func:`ladtrain.sandbox.judge.forkserver`).

One server per trainer process, started on first use and again if it died: a trusted interpreter with
the judge loaded, outside every sandbox, connected by a Unix socket pair that no sandbox holds. Each
judged run costs a ``fork`` instead of an interpreter start. A judge is killed through a pidfd opened as soon
as its pid is known.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

_LOCK = threading.Lock()
_SERVER: dict[str, object] = {}


def _start(source: str) -> tuple[subprocess.Popen, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen([sys.executable, "-I", "-c", source, str(theirs.fileno())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            pass_fds=(theirs.fileno(),), env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                            cwd="/", start_new_session=True)
    theirs.close()
    return proc, ours


def fork_judge(source: str, cfg: dict, fds: tuple[int, int, int]) -> int:
    """Start one judge with ``cfg`` and (requests, answers, verdict) fds; returns a pidfd for it."""
    data = json.dumps(cfg).encode()
    with _LOCK:
        for attempt in (0, 1):
            server = _SERVER.get("s")
            if server is None or server[0].poll() is not None or server[2] != os.getpid():
                server = (*_start(source), os.getpid())
                _SERVER["s"] = server
            sock = server[1]
            try:
                socket.send_fds(sock, [len(data).to_bytes(8, "little") + data], list(fds))
                pid = b""
                while len(pid) < 8:
                    chunk = sock.recv(8 - len(pid))
                    if not chunk:
                        raise OSError("judge server closed")
                    pid += chunk
                break
            except OSError:
                _SERVER.pop("s", None)
                if attempt:
                    raise
    return os.pidfd_open(int.from_bytes(pid, "little"))


def kill(pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass
