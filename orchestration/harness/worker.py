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
    rin = os.fdopen(os.dup(0), "rb")
    wout = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the candidate's prints and input() go nowhere, never into the replies
        os.dup2(null, fd)
    sys.stdin = open(os.devnull)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    ns = {"__name__": "candidate", "__builtins__": builtins}
    objects = {}

    def handle(v):
        key = len(objects) + 1
        objects[key] = v
        return {"H": [key, type(v).__name__[:60]]}

    def value(v, depth=0):
        """Plain data, built-in types exactly (a subclass, an int whose __eq__ lies, travels as a handle); what is
        not plain data, inside a container too, stays here as a handle that equals only itself."""
        t = type(v)
        if v is None or t in _PLAIN:
            return v
        if depth > 100:
            return handle(v)
        if t in (list, tuple):
            return {"L" if t is list else "T": [value(x, depth + 1) for x in v]}
        if t in (set, frozenset):  # members must hash on the other side: plain data only
            items = [value(x, depth + 1) for x in v]
            if any(type(x) is dict and "H" in x for x in items):
                return handle(v)
            return {"S" if t is set else "F": items}
        if t in _DICTS:  # the standard library's own dicts compare as dicts: sent as one
            return {"D": [[value(k, depth + 1), value(x, depth + 1)] for k, x in dict.items(v)]}
        if t is bytes:
            return {"B": v.hex()}
        if t is complex:
            return {"C": [v.real, v.imag]}
        return handle(v)

    def dec(v):
        if v is None or type(v) in _PLAIN:
            return v
        (tag, x), = v.items()
        if tag == "H":
            return ref(x)
        if tag == "D":
            return {dec(k): dec(y) for k, y in x}
        if tag == "B":
            return bytes.fromhex(x)
        if tag == "C":
            return complex(*x)
        return {"L": list, "T": tuple, "S": set, "F": frozenset}[tag](dec(y) for y in x)

    def ref(r):
        return ns[r] if isinstance(r, str) else objects[r]

    def kind(v):
        return "module" if type(v).__name__ == "module" else "callable" if callable(v) else "value"

    def answer(msg):
        op = msg["op"]
        if op == "load":
            exec(compile(msg["source"], "candidate.py", "exec"), ns)
            return {"D": [[k, kind(v)] for k, v in ns.items() if not k.startswith("__")]}
        target = ref(msg["ref"])
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

    for line in rin:
        try:
            reply = {"ok": answer(json.loads(line))}
        except BaseException as e:  # noqa: BLE001 - every failure of the candidate is an answer, exit included
            try:
                reply = {"err": [type(e).__name__, str(e)[:500]]}
            except BaseException:  # noqa: BLE001 - an exception whose str() raises
                reply = {"err": [type(e).__name__, ""]}
        wout.write(json.dumps(reply).encode() + b"\n")
        wout.flush()


if __name__ == "__main__":  # run by the supervisor as `python -c`; importing it does nothing
    main()
