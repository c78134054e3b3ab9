"""The judge: runs a problem's tests in a trusted process, against a candidate that is only reachable
through two pipes.

Standalone (the text of :mod:`ladtrain.sandbox.values` is prepended). One interpreter per trainer
process, outside every sandbox, runs :func:`forkserver`; each judged run is a fresh fork of it
(:mod:`ladtrain.sandbox.forkserver` is the trainer's side), with its configuration as JSON. The judge
executes the problem's ``prelude`` (the prompt: imports and helpers; the stub it defines is replaced)
and ``test`` text, binds the entry point name to a *proxy*, and calls ``check(proxy)``. Each call of
the proxy encodes its arguments as plain values, sends them to the sandboxed program and decodes the
answer into fresh builtins; arguments the program changed in place are written back into the caller's
top-level lists, dicts and sets.

The verdict is one JSON object written to the verdict pipe, which the sandboxed program has no handle
on. Every field of it comes from this process (exception types are the judge's own objects, or names
checked against ``builtins``): nothing the program prints or sends becomes verdict text.

Verdicts: ``pass`` (``check`` returned and no call went wrong); ``fail`` with ``why`` one of
``test`` (an exception in the test code, ``exc`` its type, ``line`` its line in ``test``),
``raised`` (the program raised the builtin exception ``exc`` and the test let it through), ``load``
(the program failed while loading or did not define the entry point), ``not_plain`` (it returned
something that is not a plain value), ``no_answer`` (it exited or died during a call),
``bad_answer`` (an answer that is not protocol text, or over ``max_answer`` bytes); ``uncheckable``
(the *test* passes an argument that is not a plain value: this problem cannot be checked this way);
``judge_error`` (the prelude or test text itself fails to run).
"""

import builtins
import json
import os
import sys

if "encode" not in globals():  # imported as a module; in the judge program the codec's text comes first
    from ladtrain.sandbox.values import NotPlain, decode, encode


class Broken(BaseException):
    """The candidate broke the protocol: the run fails whatever the test does with the exception."""


class Uncheckable(BaseException):
    pass


def _exception_class(name):
    cls = getattr(builtins, name, None) if isinstance(name, str) else None
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls
    return None


def _write_back(old, new):
    for a, b in zip(old, new):
        if type(a) is list and type(b) is list:
            a[:] = b
        elif type(a) in (dict, set) and type(a) is type(b):
            a.clear()
            a.update(b)


class Proxy:
    def __init__(self, req, resp, max_answer):
        self.req, self.resp, self.max_answer = req, resp, max_answer
        self.broken = None
        self.calls = 0
        self.raised = set()

    def receive(self):
        line = self.resp.readline(self.max_answer + 1)
        if not line:
            self.broken = "no_answer"
            raise Broken()
        if len(line) > self.max_answer or not line.endswith("\n"):
            self.broken = "bad_answer"
            raise Broken()
        try:
            msg = json.loads(line)
            if type(msg) is not dict:
                raise ValueError("not an object")
        except (ValueError, RecursionError):
            self.broken = "bad_answer"
            raise Broken() from None
        return msg

    def __call__(self, *args, **kwargs):
        if self.broken:
            raise Broken()
        try:
            text = json.dumps({"args": encode(list(args)), "kwargs": encode(kwargs)})
        except NotPlain as e:
            raise Uncheckable(str(e.args[0])) from None
        self.calls += 1
        try:
            self.req.write(text + "\n")
            self.req.flush()
        except OSError:
            self.broken = "no_answer"
            raise Broken() from None
        msg = self.receive()
        try:
            if "value" in msg:
                value = decode(msg["value"])
                if msg.get("args") is not None:
                    _write_back(args, decode(msg["args"]))
                return value
        except (ValueError, TypeError, RecursionError):
            self.broken = "bad_answer"
            raise Broken() from None
        if "raised" in msg:
            cls = _exception_class(msg["raised"])
            if cls is None:  # SystemExit, KeyboardInterrupt, ...: the program tried to leave
                self.broken = "no_answer"
                raise Broken()
            exc = cls("raised by the candidate")
            self.raised.add(id(exc))
            raise exc
        self.broken = "not_plain" if "not_plain" in msg else "bad_answer"
        raise Broken()


def _test_line(tb):
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<test>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def judge(cfg, verdict):
    req = os.fdopen(cfg["req_fd"], "w", encoding="ascii", newline="\n")
    resp = os.fdopen(cfg["resp_fd"], "r", encoding="ascii", newline="\n")
    proxy = Proxy(req, resp, cfg["max_answer"])
    try:
        first = proxy.receive()
    except Broken:
        return verdict({"v": "fail", "why": proxy.broken})
    if "load_error" in first or first.get("ready") is not True:
        exc = first.get("load_error")
        return verdict({"v": "fail", "why": "load", "exc": exc if _exception_class(exc) else None})
    g = {"__name__": "__lad_test__", "__builtins__": builtins}
    try:
        exec(compile(cfg["prelude"], "<prelude>", "exec"), g)
        g[cfg["entry"]] = proxy
        exec(compile(cfg["test"], "<test>", "exec"), g)
        check = g["check"]
    except BaseException as e:
        return verdict({"v": "judge_error", "exc": type(e).__name__})
    try:
        check(proxy)
    except Uncheckable as e:
        return verdict({"v": "uncheckable", "type": str(e.args[0])})
    except Broken:
        pass
    except BaseException as e:
        if proxy.broken:
            pass
        elif id(e) in proxy.raised:
            return verdict({"v": "fail", "why": "raised", "exc": type(e).__name__})
        else:
            line = _test_line(e.__traceback__)
            return verdict({"v": "fail", "why": "test", "exc": type(e).__name__, "line": line})
    if proxy.broken:
        return verdict({"v": "fail", "why": proxy.broken})
    return verdict({"v": "pass", "calls": proxy.calls})


def _run_judge(cfg, fds):
    import resource

    cfg["req_fd"], cfg["resp_fd"], cfg["verdict_fd"] = fds
    for name, value in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    fd = cfg["verdict_fd"]

    def verdict(obj):
        os.write(fd, json.dumps(obj).encode())
        os.close(fd)
        os._exit(0)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
    try:
        judge(cfg, verdict)
    finally:
        os._exit(1)


def forkserver(sock_fd):
    """Fork one judge per request: a request is an 8-byte length, that many bytes of configuration and
    three file descriptors (requests to, answers from the candidate; the verdict pipe); the answer is the
    judge's pid as 8 bytes. Ends when the trainer closes the socket."""
    import signal
    import socket

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # judges are reaped by the kernel
    sock = socket.socket(fileno=sock_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 65536, 3)
        except OSError:
            os._exit(0)
        if not data:
            os._exit(0)
        size = int.from_bytes(data[:8], "little")
        buf = bytearray(data[8:])
        while len(buf) < size:
            chunk = sock.recv(size - len(buf))
            if not chunk:
                os._exit(0)
            buf.extend(chunk)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the test code may wait for its own children
            sock.close()
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            _run_judge(json.loads(bytes(buf)), fds)
        for fd in fds:
            os.close(fd)
        sock.sendall(pid.to_bytes(8, "little"))


if __name__ == "__main__":
    forkserver(int(sys.argv[1]))
