"""The review's shell probes (issue 26, section 3) and more of each family, as a table.

Each probe was labelled ``read`` and deleted, overwrote or ran code. Every row is checked twice: the label is
``execute`` at least, and, where bubblewrap is installed, the command is run in a scratch folder under bwrap to
confirm what it does (the probes change the folder; the reads kept in the second table change nothing).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from orchestration.tools.risk import bash_risk

_RANK = {"read": 0, "write": 1, "execute": 2, "destructive": 3}
BWRAP = shutil.which("bwrap")
GIT = shutil.which("git")
A = "a[$(touch X)]"  # a subscript whose evaluation runs a command

# (command, does it change the scratch folder when run). Each touches X, deletes or overwrites v, or runs ./ls.
PROBES: list[tuple[str, bool]] = [
    # ANSI-C quoting: escapes the classifier does not decode
    ("find . -name v $'-delete'", True),
    ("find . -name v $'-\\x64elete'", True),
    ("sort $'-o' v notes", True),
    ("sort $'--output=v' notes", True),
    ('echo "$\'" ; rm v ; echo "\'"', True),  # $' inside double quotes is two literal characters
    ('find . -name v $"-delete"', True),  # $"..." is translated: the classifier cannot know the text
    # parameter expansion in an argument
    ("find . -name v ${X:--delete}", True),
    ('find . -name v "${X:--delete}"', True),
    ("X=-delete; find . -name v $X", True),
    ("sort ${O:--o} v notes", True),
    # brace expansion
    ("find . -name v {-delete,-print}", True),
    ("find . -name v -{delete,print}", True),
    ("sort {-o,v} notes", True),
    ("{find,.,-name,v,-delete}", True),
    # abbreviated GNU long options
    ("sort --out=v notes", True),
    ("sort --o=v notes", True),
    ("sort --outp v notes", True),
    ("cat big | sort --compress-prog=sh -S 4K > /dev/null", True),
    ("sort --compress-p=sh -S 4K big > /dev/null", True),
    ("env --split-s='touch X'", True),
    ("env --split='touch X'", True),
    ("env -S 'touch X'", True),
    ("env -iS'touch X'", True),
    # a path-qualified command is whatever that file is
    ("./ls", True),
    ("./ls -la", True),
    ("sub/../ls", True),
    # git options that run a program (git takes abbreviations too)
    ("git ls-remote --upload-pack='touch X; false' .", True),
    ("git ls-remote --upload='touch X; false' .", True),
    ("git ls-remote -u 'touch X; false' .", False),  # older gits only
    ("git clone -q -u 'touch X; false' . copy", True),
    # arithmetic on [[ operands
    (f"[[ '{A}' -eq 0 ]]", True),
    (f"x='{A}'; [[ x -eq 0 ]]", True),
    (f"x='{A}'; [[ $x -lt 1 ]]", True),
    (f"[[ -v '{A}' ]]", True),
    # declare / typeset: -i evaluates, -n refers, a subscript is arithmetic
    (f"declare -i n='{A}'", True),
    (f"typeset -i n='{A}'", True),
    (f"declare '{A}=1'", True),
    (f"x='{A}'; declare -n r=$x; echo $r", True),
    # printf -v NAME and test -v NAME
    (f"printf -v '{A}' x", True),
    ("printf -v 'b[$(touch X)]' %s y", True),
    (f"test -v '{A}'", True),
    (f"[ -v '{A}' ]", True),
    # prompt expansion and other ${...} forms that evaluate
    ("x='$(touch X)'; echo ${x@P}", True),
    ("x='$(touch X)'; echo \"${x@P}\"", True),
    ("x='y[$(touch X)]'; echo ${a[x]}", True),
    (f"x='{A}'; echo ${{!x}}", True),
    (f"x='{A}'; echo $[x]", True),
    (f"x='{A}'; s=abc; echo ${{s:x}}", True),
    # PATH and friends
    ("printf -v PATH %s .; ls", True),
    ("PATH=. ls", True),
    ("export PATH=.; ls", True),
    ("declare PATH=.; ls", True),
    ("for PATH in .; do ls; done", True),
    ("unset PATH; ls", True),
    ("PS4='$(touch X)'; set -x; true", True),
    ("IFS=/ ; ls", False),
    ("BASH_ENV=./env.sh ls", False),
    ("LD_PRELOAD=./x.so ls", False),
    ("PROMPT_COMMAND='touch X' ls", False),
    ("set -k; ls LD_PRELOAD=./x.so", False),
    # options of listed programs that bring code or write a file (not installed here, or mawk's awk)
    ("awk --source='BEGIN{system(\"touch X\")}' '{print}' notes", False),
    ("ag --pager='touch X' foo", False),
    ("ag --pag='touch X' foo", False),
    ("less -o log notes", False),
    ("file -C -m magic", False),
    ("tree -R -L 1 -H .", False),
    (f"unset '{A}'", False),
    # an unquoted glob may expand to a file named like an option
    ("find . -name v *", False),
    ("sort *", False),
]

# Reads the classifier understands: they stay read, and under bwrap they change nothing.
READS = [
    "ls -la", "cat a.py", "grep -rn foo .", "git status", "find . -name '*.py'", "sort notes", "sort -r -u notes",
    "head -n 2 notes", "wc -l notes", "echo ${HOME}", "echo $HOME", "x=1; [[ -n $x ]] && echo yes",
    "[[ $x == a* ]]", "[ 1 -eq 1 ]", "[ \"$#\" -eq 0 ] || true", "[[ 2 -gt 1 ]]", "test -f a.py",
    "printf '%s\\n' \"$HOME\"", "printf -v y %s x", "declare -p", "export FOO=1", "sed -n 1p notes",
    "awk '{print $1}' notes", "awk -F: '{print $1}' notes", "awk -F , -v x=1 '{print x}' notes",
    "diff a.py notes || true", "LANG=C sort notes", "env LANG=C sort notes", "du -sh .", "git status --short",
    "git log --oneline -5", "git stash list", "git show stash@{0} || true", "ls *.py", "cat *.py",
    "grep -n foo *.py", "echo {}", "find . -type f -name '*.py'", "set -euo pipefail; ls", "unset FOO",
    "sort --check notes || true", "tree -L 1 || true",
]


def _snapshot(root: Path) -> dict[str, tuple[bool, int, bytes]]:
    """Every path under ``root`` with its kind, mode and bytes; ``.git`` is left out (git refreshes its own
    index and caches even on reads)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == ".git":
            continue
        out[str(rel)] = (p.is_dir(), p.lstat().st_mode, b"" if p.is_dir() or p.is_symlink() else p.read_bytes())
    return out


def _scratch(root: Path) -> None:
    (root / "v").write_text("keep me\n")
    (root / "notes").write_text("b\na\nc\n")
    (root / "a.py").write_text("print('foo')\n")
    (root / "big").write_text("touch X\n" * 3000)  # sort's --compress-program reads its chunks as a script
    (root / "sub").mkdir()
    (root / "sub" / "foo.txt").write_text("foo\n")
    ls = root / "ls"  # what ./ls, PATH=. and a missing PATH run
    ls.write_text("#!/bin/sh\n: > X\n")  # no lookup: PATH may be "."
    ls.chmod(0o755)
    if GIT:
        subprocess.run([GIT, "init", "-q", str(root)], check=True, capture_output=True)


def _run_in_bwrap(root: Path, command: str) -> None:
    assert BWRAP is not None
    argv = [BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", str(root), str(root),
            "--unshare-all", "--die-with-parent", "--chdir", str(root), "bash", "-c", command]
    subprocess.run(argv, capture_output=True, timeout=30)


def _effect(tmp_path: Path, command: str) -> bool:
    """Whether running ``command`` under bwrap changed the scratch folder."""
    root = tmp_path / "scratch"
    root.mkdir()
    _scratch(root)
    before = _snapshot(root)
    _run_in_bwrap(root, command)
    return _snapshot(root) != before


@pytest.mark.parametrize(("command", "changes"), PROBES)
def test_probe_is_execute_at_least(command: str, changes: bool) -> None:
    assert _RANK[bash_risk(command)] >= _RANK["execute"], bash_risk(command)


@pytest.mark.parametrize("command", READS)
def test_understood_reads_stay_read(command: str) -> None:
    assert bash_risk(command) == "read"


@pytest.mark.skipif(BWRAP is None, reason="bubblewrap (bwrap) is not installed")
@pytest.mark.parametrize(("command", "changes"), [p for p in PROBES if p[1]])
def test_probe_really_changes_the_folder_under_bwrap(tmp_path: Path, command: str, changes: bool) -> None:
    if command.startswith("git ") and GIT is None:
        pytest.skip("git is not installed")
    assert _effect(tmp_path, command), "the probe did nothing: it no longer shows what the label must cover"


@pytest.mark.skipif(BWRAP is None, reason="bubblewrap (bwrap) is not installed")
@pytest.mark.parametrize("command", READS)
def test_reads_change_nothing_under_bwrap(tmp_path: Path, command: str) -> None:
    assert not _effect(tmp_path, command)


def test_the_tables_cover_each_family() -> None:
    assert len(PROBES) >= 50 and len(READS) >= 30
