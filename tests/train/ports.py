"""A free TCP port on 127.0.0.1 for ``torchrun --master-port``, and the torchrun command line, for the
multi-process tests."""

from __future__ import annotations

import socket
import sys


def free_port() -> int:
    """A port the OS says is free now (bound once, then released for torchrun to take)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int = 2) -> list[str]:
    """``python -m torch.distributed.run`` for ``nproc`` local processes on a free port of 127.0.0.1."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
            "127.0.0.1", "--master-port", str(free_port())]
