"""The harness's untrusted half: holds the candidate's code and answers the supervisor's requests.

Run inside the sandbox as ``python -I -B -c <this file>`` by the supervisor, never by the host. Everything
here is in the candidate's reach (it may patch any of it), which is why nothing here decides a result: it
only returns values, as plain data, to the supervisor, which compares them itself.
"""

import builtins
import collections
import json
import os
import sys

_PLAIN = (bool, int, float, str)
_DICTS = (dict, collections.Counter, collections.OrderedDict, collections.defaultdict)


def main() -> None:
    rin, wout = _take_pipes()
    worker = _Worker()
    for line in rin:
        wout.write(json.dumps(worker.reply(line)).encode() + b"\n")
        wout.flush()


def _take_pipes():
    """The supervisor's pipes, kept for the replies; the candidate's prints and input() go nowhere."""
    rin = os.fdopen(os.dup(0), "rb")
    wout = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    sys.stdin = open(os.devnull)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    return rin, wout


def _kind(v):
    return "module" if type(v).__name__ == "module" else "callable" if callable(v) else "value"


class _Worker:
    """The candidate's namespace and the objects handed out by reference, one request at a time."""

    def __init__(self):
        self.ns = {"__name__": "candidate", "__builtins__": builtins}
        self.objects = {}

    def reply(self, line):
        try:
            return {"ok": self.answer(json.loads(line))}
        except BaseException as e:  # noqa: BLE001 - every failure of the candidate is an answer, exit included
            try:
                return {"err": [type(e).__name__, str(e)[:500]]}
            except BaseException:  # noqa: BLE001 - an exception whose str() raises
                return {"err": [type(e).__name__, ""]}

    def answer(self, msg):
        op = msg["op"]
        if op == "load":
            exec(compile(msg["source"], "candidate.py", "exec"), self.ns)
            return {"D": [[k, _kind(v)] for k, v in self.ns.items() if not k.startswith("__")]}
        target = self.ref(msg["ref"])
        value, dec = self.value, self.dec
        if op == "get":
            return value(target)
        if op == "call":
            return value(target(*[dec(a) for a in msg["args"]], **{k: dec(a) for k, a in msg["kwargs"]}))
        if op == "attr":
            return value(getattr(target, msg["name"]))
        if op == "item":
            return value(target[dec(msg["key"])])
        if op == "list":
            return {"L": [value(x) for x in target]}
        if op == "contains":
            return dec(msg["key"]) in target
        if op in ("len", "str", "repr", "bool"):
            got = {"len": len, "str": str, "repr": repr, "bool": bool}[op](target)
            return got if type(got) in _PLAIN else None
        raise ValueError(f"unknown request {op!r}")

    def handle(self, v):
        key = len(self.objects) + 1
        self.objects[key] = v
        return {"H": [key, type(v).__name__[:60]]}

    def ref(self, r):
        return self.ns[r] if isinstance(r, str) else self.objects[r]

    def value(self, v, depth=0):
        """Plain data, built-in types exactly (a subclass, an int whose __eq__ lies, travels as a handle); what is
        not plain data, inside a container too, stays here as a handle that equals only itself."""
        t = type(v)
        if v is None or t in _PLAIN:
            return v
        if depth > 100:
            return self.handle(v)
        if t in (list, tuple):
            return {"L" if t is list else "T": [self.value(x, depth + 1) for x in v]}
        if t in (set, frozenset):  # members must hash on the other side: plain data only
            items = [self.value(x, depth + 1) for x in v]
            if any(type(x) is dict and "H" in x for x in items):
                return self.handle(v)
            return {"S" if t is set else "F": items}
        if t in _DICTS:  # the standard library's own dicts compare as dicts: sent as one
            return {"D": [[self.value(k, depth + 1), self.value(x, depth + 1)] for k, x in dict.items(v)]}
        if t is bytes:
            return {"B": v.hex()}
        if t is complex:
            return {"C": [v.real, v.imag]}
        return self.handle(v)

    def dec(self, v):
        if v is None or type(v) in _PLAIN:
            return v
        (tag, x), = v.items()
        if tag == "H":
            return self.ref(x)
        if tag == "D":
            return {self.dec(k): self.dec(y) for k, y in x}
        if tag == "B":
            return bytes.fromhex(x)
        if tag == "C":
            return complex(*x)
        return {"L": list, "T": tuple, "S": set, "F": frozenset}[tag](self.dec(y) for y in x)


if __name__ == "__main__":  # run by the supervisor as `python -c`; importing it does nothing
    main()
