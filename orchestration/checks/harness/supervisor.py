"""The harness's trusted half, run inside the sandbox: it runs the tests, the candidate runs elsewhere.

The supervisor never imports the candidate. It starts a worker process (``worker.py``) that loads the
candidate's code, and the tests, run here, reach the candidate's functions through proxies: arguments go
over, results come back as plain data (exact built-in types; anything else stays in the worker as an opaque
handle that equals only itself), so every comparison is made here, on values the candidate cannot dress
up. The result leaves through a file descriptor the host opened for this process alone: the worker never
holds it, and this process is made non-dumpable so the worker cannot reach it through /proc. A worker that
dies, hangs, or answers garbage fails the test it was serving and a fresh one serves the next.

The host appends ``main()`` and hands the job (the candidate, the setup, the tests, the worker's source) over a
descriptor that is read and closed before the worker starts: no file holds the tests or their expected values.
"""

import ast
import builtins
import json
import os
import select
import signal
import subprocess
import sys
import time

MAX_FRAME = 4 << 20
_PLAIN = (bool, int, float, str)
_RAISABLE = {n: c for n, c in vars(builtins).items()
             if isinstance(c, type) and issubclass(c, Exception) and not issubclass(c, (StopIteration,
                                                                                        StopAsyncIteration))}


class Broken(Exception):
    """The worker died, hung or answered what is not a reply: this test fails, a fresh worker serves the next."""


class Hung(Broken):
    """The worker did not answer before the test's deadline."""


class CandidateError(Exception):
    """The candidate raised something that is not a built-in exception (SystemExit included)."""


def _nondumpable():
    try:  # Linux: no /proc/<pid>/fd or /mem of this process for anything without CAP_SYS_PTRACE
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:  # noqa: BLE001 - macOS has no prctl; its sandbox profile is the guard there
        pass


class Worker:
    def __init__(self, source, candidate, cwd):
        self.source, self.candidate, self.cwd = source, candidate, cwd
        self.proc = None
        self.buf = b""
        self.names = {}

    def start(self, deadline):
        self.proc = subprocess.Popen([sys.executable, "-I", "-B", "-c", self.source], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={}, close_fds=True,
                                     start_new_session=True, cwd=self.cwd)
        self.buf = b""
        names = _dec(self.ask({"op": "load", "source": self.candidate}, deadline))
        self.names = names if type(names) is dict else {}

    def stop(self):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
            self.proc = None

    def _write(self, data, deadline):
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise Hung()
            try:
                n = os.write(fd, view[:65536])
            except OSError:
                raise Broken(self._died()) from None
            view = view[n:]

    def _died(self):
        code = self.proc.poll() if self.proc is not None else None
        return f"the candidate's process exited (status {code})" if code is not None else \
            "the candidate's process closed its channel"

    def ask(self, msg, deadline):
        """Send one request; the reply's value (plain data, decoded later) or an exception raised here."""
        if self.proc is None:
            raise Broken("no worker")
        self._write(json.dumps(msg).encode() + b"\n", deadline)
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise Hung()
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise Broken(self._died())
            self.buf += chunk
            if len(self.buf) > MAX_FRAME:
                raise Broken("the candidate's answer is too large")
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            raise Broken("the candidate's process wrote something that is not an answer") from None
        if not isinstance(reply, dict) or len(reply) != 1:
            raise Broken("the candidate's process wrote something that is not an answer")
        if "ok" in reply:
            return reply["ok"]
        err = reply.get("err")
        if not (isinstance(err, list) and len(err) == 2 and all(isinstance(x, str) for x in err)):
            raise Broken("the candidate's process wrote something that is not an answer")
        name, text = err
        cls = _RAISABLE.get(name)
        if cls is None:
            raise CandidateError(f"{name}: {text}" if text else name)
        raise cls(text)


_WORKER = None
_DEADLINE = 0.0


class Remote:
    """A value that stays in the worker: calls and reads go over; it equals only itself."""

    __slots__ = ("_ref", "_type")

    def __init__(self, ref, type_name):
        self._ref, self._type = ref, type_name

    def _ask(self, op, **kw):
        return _dec(_WORKER.ask({"op": op, "ref": self._ref, **kw}, _DEADLINE))

    def __call__(self, *args, **kwargs):
        return self._ask("call", args=[_enc(a) for a in args], kwargs=[[k, _enc(v)] for k, v in kwargs.items()])

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._ask("attr", name=name)

    def __getitem__(self, key):
        return self._ask("item", key=_enc(key))

    def __iter__(self):
        got = self._ask("list")
        if type(got) is not list:
            raise TypeError(f"'{self._type}' object is not iterable")
        return iter(got)

    def __contains__(self, key):
        return bool(self._ask("contains", key=_enc(key)))

    def __len__(self):
        got = self._ask("len")
        if type(got) is not int:
            raise TypeError("len() of the candidate's object is not an int")
        return got

    def __bool__(self):
        return self._ask("bool") is True

    def __str__(self):
        got = self._ask("str")
        return got if type(got) is str else self.__repr__()

    def __repr__(self):
        return f"<candidate's {self._type} object>"

    __eq__ = object.__eq__
    __hash__ = object.__hash__


def _enc(v):
    t = type(v)
    if v is None or t in _PLAIN:
        return v
    if t is Remote:
        return {"H": v._ref}
    if t in (list, tuple, set, frozenset):
        return {{list: "L", tuple: "T", set: "S", frozenset: "F"}[t]: [_enc(x) for x in v]}
    if t is dict:
        return {"D": [[_enc(k), _enc(x)] for k, x in v.items()]}
    if t is bytes:
        return {"B": v.hex()}
    if t is complex:
        return {"C": [v.real, v.imag]}
    raise TypeError(f"a {t.__name__} cannot be passed to the candidate's code")


def _dec(v):
    """Plain data from the worker; anything malformed breaks the test, never this process."""
    try:
        if v is None or type(v) in _PLAIN:
            return v
        if type(v) is not dict or len(v) != 1:
            raise ValueError
        (tag, x), = v.items()
        if tag == "H":
            if not (type(x) is list and len(x) == 2 and type(x[0]) in (int, str) and type(x[1]) is str):
                raise ValueError
            return Remote(x[0], x[1][:60])
        if tag == "D":
            return {_dec(k): _dec(y) for k, y in x}
        if tag == "B":
            return bytes.fromhex(x)
        if tag == "C":
            return complex(float(x[0]), float(x[1]))
        kinds = {"L": list, "T": tuple, "S": set, "F": frozenset}
        if tag not in kinds or type(x) is not list:
            raise ValueError
        return kinds[tag](_dec(y) for y in x)
    except (ValueError, TypeError, KeyError, RecursionError):
        raise Broken("the candidate's process sent a malformed value") from None


def _short(v):
    try:
        text = repr(v)
    except Exception:  # noqa: BLE001
        text = "<unprintable>"
    return text if len(text) <= 300 else text[:297] + "..."


def _alarm(signum, frame):
    raise TimeoutError("the test ran past its time")


def _run_test(src, ns, per_test_s):
    """One test: {'passed', 'error', and for ``assert X == Y``: 'call', 'expected', 'got'}."""
    global _DEADLINE
    _DEADLINE = time.monotonic() + per_test_s
    signal.setitimer(signal.ITIMER_REAL, per_test_s + 0.5)  # this side's own loops, if a test has any
    out = {"passed": False, "error": None}
    try:
        node = ast.parse(src)
        body = node.body[0] if len(node.body) == 1 else None
        test = body.test if isinstance(body, ast.Assert) else None
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            out["call"] = ast.unparse(test.left)
            got = eval(compile(ast.Expression(test.left), "test", "eval"), ns)
            expected = eval(compile(ast.Expression(test.comparators[0]), "test", "eval"), ns)
            out["expected"], out["got"] = _short(expected), _short(got)
            if got == expected:
                out["passed"] = True
            else:
                out["error"] = f"got {out['got']}"
        else:
            exec(compile(node, "test", "exec"), ns)
            out["passed"] = True
    except (Hung, TimeoutError):
        out["error"] = f"TimeoutError: the test ran past {per_test_s:g}s"
        _WORKER.stop()
    except Broken as e:
        out["error"] = str(e)
        _WORKER.stop()
    except BaseException as e:  # noqa: BLE001 - the test's failure, whatever it is
        out["error"] = (type(e).__name__ + (f": {e}" if str(e) else ""))[:500]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if out["error"] is not None and out.get("got") is None and "call" in out:
        out["raised"] = out["error"]
    return out


def _bind(ns, setup_names, bind):
    """The candidate's names the tests may use: callables as proxies, values fetched (modules: ours)."""
    for name, kind in _WORKER.names.items():
        if not isinstance(name, str) or not name.isidentifier() or kind == "module":
            continue
        if bind is not None and name not in bind:
            continue
        if bind is None and name in setup_names:
            continue  # the setup's own (trusted) definition stands
        ns[name] = Remote(name, "function") if kind == "callable" else _dec(_WORKER.ask({"op": "get", "ref": name},
                                                                                       _DEADLINE))


def _read_job():
    fd = int(os.environ.pop("MAGEAGENT_DATA_FD"))
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return json.loads(b"".join(chunks))


def main():
    global _WORKER, _DEADLINE
    _nondumpable()  # before anything else runs: from here on no other process reads this one's descriptors
    job = _read_job()
    fd = int(os.environ.pop("MAGEAGENT_RESULT_FD"))
    os.set_inheritable(fd, False)
    signal.signal(signal.SIGALRM, _alarm)
    per_test = job["per_test_s"]
    ns = {"__name__": "tests", "__builtins__": builtins}
    signal.setitimer(signal.ITIMER_REAL, per_test + 0.5)
    exec(compile(job["setup"], "setup", "exec"), ns)  # trusted: the data set's or the project's own
    signal.setitimer(signal.ITIMER_REAL, 0)
    setup_names = set(ns)
    _WORKER = Worker(job["worker"], job["candidate"], os.getcwd())
    result = {"load_error": None, "tests": []}
    for i, src in enumerate(job["tests"]):
        if _WORKER.proc is None:
            _DEADLINE = time.monotonic() + per_test
            try:
                _WORKER.start(_DEADLINE)
                _bind(ns, setup_names, job["bind"])
            except Exception as e:  # noqa: BLE001 - the candidate failed to load
                _WORKER.stop()
                error = (f"TimeoutError: loading ran past {per_test:g}s" if isinstance(e, (Hung, TimeoutError))
                         else str(e) if isinstance(e, Broken) else (type(e).__name__ + (f": {e}" if str(e) else "")))
                error = error[:500]
                if i == 0:
                    result["load_error"] = error
                    break
                result["tests"].append({"passed": False, "error": error})
                continue
        result["tests"].append(_run_test(src, ns, per_test))
    _WORKER.stop()
    data = json.dumps(result).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.close(fd)
