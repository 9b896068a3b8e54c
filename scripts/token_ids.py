"""Regenerate the token-id reference files in tests/data with llama.cpp's own tokenizer.

``tests/data/qwen2.5-coder-token-ids.json`` and ``tests/data/smollm2-token-ids.json`` hold ``[text, ids]``
pairs; tests/test_qwen.py and tests/test_real_model.py check that the tokenizer we build from the GGUF's vocab
and merges (orchestration/models/convert.py) gives the same ids. The reference must come from outside our code,
so this script asks llama.cpp (llama-cpp-python, ``vocab_only``, ``add_bos=False``, ``special=True``) to
tokenize each text with the pinned GGUF from the model cache (``mageagent setup`` puts it there). The texts are
the ones already in each file: to add a case, append ``["text", []]`` to the file and run this again.

llama.cpp runs in a child process of its own Python, so it needs no place in the project's venv (the
``.[llama]`` extra, which builds the same version from source, works too: then leave ``--llama-python`` out)::

    python3 -m venv /tmp/llvenv
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON" /tmp/llvenv/bin/pip install llama-cpp-python==0.3.36
    .venv/bin/python scripts/token_ids.py --llama-python /tmp/llvenv/bin/python

Each file is rewritten in its own layout, so where llama.cpp agrees ``git diff tests/data`` is empty; every text
whose ids changed is printed with both lists. ``--check`` writes nothing and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestration.core.settings import default_cache_dir  # noqa: E402
from orchestration.models import qwen25_coder, smollm2  # noqa: E402
from orchestration.models.sources import fetch_gguf  # noqa: E402

DATA = ROOT / "tests" / "data"

# Reads {"gguf": path, "texts": [...]} on stdin, writes the ids of each text as JSON on stdout.
CHILD = r"""
import json, sys
from llama_cpp import Llama, __version__
job = json.load(sys.stdin)
llm = Llama(model_path=job["gguf"], vocab_only=True, verbose=False)
ids = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in job["texts"]]
json.dump({"llama_cpp_python": __version__, "ids": ids}, sys.stdout)
"""


def _qwen_gguf(cache_dir: Path) -> Path:
    return fetch_gguf(qwen25_coder.MODELS["qwen2.5-coder-0.5b"].source, cache_dir, download=False, rehash=True)


def _smollm_gguf(cache_dir: Path) -> Path:
    found = smollm2.find_gguf(cache_dir)
    if found is None:
        raise SystemExit(f"no {smollm2.GGUF_FILE} in {cache_dir}: run `mageagent setup`")
    return found[0]


# name -> (reference file, where its GGUF is, json.dumps options that reproduce the committed layout)
TARGETS: dict[str, tuple[Path, Any, dict[str, Any]]] = {
    "qwen2.5-coder-0.5b": (DATA / "qwen2.5-coder-token-ids.json", _qwen_gguf, {"indent": 0, "ensure_ascii": False}),
    "smollm2-135m": (DATA / "smollm2-token-ids.json", _smollm_gguf, {}),
}


def llama_ids(python: str, gguf: Path, texts: list[str]) -> tuple[str, list[list[int]]]:
    """llama.cpp's ids for each text (and llama-cpp-python's version), tokenized in a child ``python``."""
    try:
        out = subprocess.run([python, "-c", CHILD], input=json.dumps({"gguf": str(gguf), "texts": texts}),
                             capture_output=True, text=True, check=False)
    except OSError as e:
        raise SystemExit(f"cannot run {python}: {e}") from e
    if out.returncode != 0:
        raise SystemExit(f"{python} could not tokenize with llama.cpp:\n{out.stderr.strip()}")
    got = json.loads(out.stdout)
    return got["llama_cpp_python"], got["ids"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-python", default=sys.executable,
                    help="a Python with llama-cpp-python installed (default: this one)")
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                    help="the model cache (default: %(default)s)")
    ap.add_argument("--models", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if any id differs")
    args = ap.parse_args(argv)

    differ = 0
    for name in args.models:
        path, find, layout = TARGETS[name]
        cases = json.loads(path.read_text(encoding="utf-8"))
        gguf = find(args.cache_dir)
        version, ids = llama_ids(args.llama_python, gguf, [text for text, _ in cases])
        changed = [(text, old, new) for (text, old), new in zip(cases, ids, strict=True) if old != new]
        for text, old, new in changed:
            print(f"{name}: {text[:60]!r}\n  file:      {old}\n  llama.cpp: {new}")
        differ += len(changed)
        if not args.check:
            path.write_text(json.dumps([[text, new] for (text, _), new in zip(cases, ids, strict=True)], **layout),
                            encoding="utf-8")
        print(f"{name}: {len(cases)} texts, {len(changed)} differ (llama-cpp-python {version}, {gguf.name})"
              + ("" if args.check else f"; wrote {path.relative_to(ROOT)}"))
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
