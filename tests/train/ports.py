"""A free TCP port on 127.0.0.1 for ``torchrun --master-port`` in the multi-process tests."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the OS says is free now (bound once, then released for torchrun to take)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
