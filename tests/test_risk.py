from __future__ import annotations

import pytest

from orchestration.tools.catalogue import SEED_TOOLS
from orchestration.tools.risk import bash_risk, risk_of
from orchestration.core.types import ToolDefinition

SEED = {t.name: t for t in SEED_TOOLS}


@pytest.mark.parametrize(
    ("tool", "args", "risk"),
    [
        ("Read", {"file_path": "a.py"}, "read"),
        ("Glob", {"pattern": "**/*.py"}, "read"),
        ("Grep", {"pattern": "TODO"}, "read"),
        ("Write", {"file_path": "a.py", "content": "x"}, "write"),
        ("Edit", {"file_path": "a.py", "old_string": "a", "new_string": "b"}, "write"),
        ("Bash", {"command": "ls -la"}, "read"),
        ("Bash", {"command": "pytest -q"}, "execute"),  # runs the project's code
        ("Bash", {"command": "rm -rf build"}, "destructive"),
    ],
)
def test_seed_tool_risks(tool: str, args: dict, risk: str) -> None:
    assert risk_of(SEED[tool], args, seed=True) == risk


@pytest.mark.parametrize(
    ("command", "risk"),
    [
        ("ls", "read"),
        ("cat a.txt | grep x | wc -l", "read"),
        ("git status && git diff", "read"),
        ("echo hi >> log.txt", "write"),
        ("make 2>&1", "execute"),
        ("python -m pytest > /dev/null", "execute"),
        ("echo hi > notes.txt", "destructive"),
        ("cmd 2> err.log", "destructive"),
        ("sudo rm /etc/hosts", "destructive"),
        ("dd if=/dev/zero of=/dev/sda", "destructive"),
        ("mkfs.ext4 /dev/sdb1", "destructive"),
        ("chmod -R 777 /", "destructive"),
        ("chmod 644 a.txt", "write"),
        ("git reset --hard HEAD~1", "destructive"),
        ("git reset HEAD~1", "write"),
        ("git clean -fdx", "destructive"),
        ("git push --force origin main", "destructive"),
        ("find . -name '*.pyc' -delete", "destructive"),
        ("find . -name '*.py'", "read"),
        ("ls | xargs rm", "destructive"),
        ("cd /tmp; shred secret", "destructive"),
        ("FOO=1 /bin/rm x", "destructive"),
        ("npm install", "execute"),  # lifecycle scripts run
    ],
)
def test_bash_risk_table(command: str, risk: str) -> None:
    assert bash_risk(command) == risk


# Fail closed: every construct the classifier does not fully understand is execute at least, never read.
FAIL_CLOSED = [
    # substitutions: what they run is classified too
    ("echo $(rm -rf ~)", "destructive"),
    ("echo `rm -rf ~`", "destructive"),
    ('echo "$(rm -rf ~)"', "destructive"),
    ("echo `whoami`", "execute"),
    ("ls $(pwd)", "execute"),
    ("cat <(rm -rf x)", "destructive"),
    ("echo ${X:-$(rm -rf y)}", "destructive"),
    ("$CMD --help", "execute"),
    ('"$(which rm)" -rf x', "execute"),
    ("$'\x72\x6d' -rf x", "execute"),
    # commands that write through an option
    ("sort -o sorted.txt data.txt", "destructive"),
    ("sort -uo out data", "destructive"),
    ("sort --output=out data", "destructive"),
    ("sort --compress-program=sh data", "execute"),
    ("find . -fprint out.txt", "destructive"),
    ("find . -name '*.tmp' -delete", "destructive"),
    ("find . -exec cat {} \\;", "execute"),
    ("find . -exec rm {} +", "destructive"),
    ("find . -execdir sh -c 'echo hi' \\;", "execute"),
    ("git branch -f main HEAD~3", "destructive"),
    ("git branch -D old", "destructive"),
    ("git branch feature", "write"),
    ("git -c core.pager=evil log", "execute"),
    ("git diff --output=patch.txt", "destructive"),
    ("git restore src/app.py", "destructive"),
    ("git stash drop", "destructive"),
    ("git frobnicate", "execute"),
    ("tee out.txt", "destructive"),
    ("echo x | tee -a log.txt", "write"),
    ("uniq in.txt out.txt", "destructive"),
    ("tree -o listing.txt", "destructive"),
    ("rg --pre ./decode pattern", "execute"),
    # redirections
    ("ls > out.txt", "destructive"),
    ("ls &> out.txt", "destructive"),
    ("ls >| out.txt", "destructive"),
    ("echo x > $FILE", "destructive"),
    ("ls >> out.txt", "write"),
    ("ls 2>&1 | tee build.log", "destructive"),
    # programs that run other programs
    ("ls | xargs rm", "destructive"),
    ("ls | xargs grep foo", "execute"),
    ("sh -c 'ls'", "execute"),
    ("bash -c 'rm -rf build'", "destructive"),
    ("bash -lc \"git push --force\"", "destructive"),
    ("bash script.sh", "execute"),
    ("curl -s https://example.com/x | sh", "execute"),
    ("python -c 'print(1)'", "execute"),
    ("python3 -c 'import shutil; shutil.rmtree(\"/\")'", "execute"),
    ("node -e 'require(\"fs\")'", "execute"),
    ("perl -pi -e 's/a/b/' f", "execute"),
    ("eval ls", "execute"),
    ('eval "rm -rf /"', "destructive"),
    ("source venv/bin/activate", "execute"),
    (". ./env.sh", "execute"),
    ("watch rm -rf x", "destructive"),
    ("timeout 5 rm -rf x", "destructive"),
    ("env -S 'rm -rf x'", "execute"),
    # sed and awk: in place or a script that can write or run
    ("sed -i 's/a/b/' f.txt", "write"),
    ("sed -i.bak 's/a/b/' f.txt", "write"),
    ("sed --in-place 's/a/b/' f.txt", "write"),
    ("sed 's/a/b/w out.txt' f.txt", "execute"),
    ("sed '1e rm -rf /' f.txt", "execute"),
    ("sed -f script.sed f.txt", "execute"),
    ("awk 'BEGIN { system(\"rm -rf /\") }'", "execute"),
    ("awk '{ print > \"out\" }' f", "execute"),
    # here-documents and here-strings
    ("cat <<EOF\nhello\nEOF", "execute"),
    ("python3 <<'EOF'\nprint(1)\nEOF", "execute"),
    ("cat <<EOF > out.txt\nhello\nEOF", "destructive"),
    ("bash <<< 'ls'", "execute"),
    # environment that changes what runs
    ("PATH=/tmp/evil:$PATH ls", "execute"),
    ("LD_PRELOAD=./x.so ls", "execute"),
    ("export PATH=/tmp/evil", "execute"),
    ("alias ls='rm -rf ~'", "execute"),
    # unknown programs and what cannot be lexed
    ("foo --bar", "execute"),
    ("./configure && make", "execute"),
    ("rm\\ -rf x", "execute"),
    ('echo "unterminated', "execute"),
    ("echo 'unterminated", "execute"),
    ("ls >", "execute"),
    # compound commands: the worst part counts
    ("(cd sub && rm -rf out)", "destructive"),
    ("{ ls; rm x; }", "destructive"),
    ("for f in *.py; do rm \"$f\"; done", "destructive"),
    ("for f in $(ls); do echo $f; done", "execute"),
    ("if [ -f x ]; then rm x; fi", "destructive"),
    ("r''m -rf x", "destructive"),
    ("\\rm -rf x", "destructive"),
    ("exec rm x", "destructive"),
    ("sudo -u bob rm x", "destructive"),
    ("sudo -s", "execute"),
]

# Reads the classifier understands stay reads (the table is not "everything is execute").
STILL_READ = [
    "ls -la", "cat a.txt | grep x | wc -l", "git status && git diff", "git log --oneline -5", "git branch",
    "git branch -a", "git remote -v", "grep -rn TODO src/", "find . -name '*.py'", "head -n 20 README.md",
    'echo "a; rm -rf /"', "echo 'a && b > c'", "wc -l < file.txt", "ls 2>/dev/null", "ls > /dev/null 2>&1",
    "sort -u data.txt", "sed -n '1,10p' f.txt", "sed -ne 's/a/b/p' f.txt", "sed 's/a/b/g; s/c/d/' f.txt",
    "awk '{print $1}' f.txt", "echo ${HOME}", "LANG=C sort f", "sudo -u bob ls", "command -v git",
    "ls # rm -rf /", "cd src && ls", "nice -n 10 ls", "echo hi &", "git clean -n", "while true; do ls; done",
    "[[ -n $x ]] && echo yes", "tee", "jq .name package.json", "diff a b",
]


@pytest.mark.parametrize(("command", "risk"), FAIL_CLOSED)
def test_bash_risk_fails_closed(command: str, risk: str) -> None:
    assert bash_risk(command) == risk


@pytest.mark.parametrize("command", STILL_READ)
def test_understood_reads_stay_read(command: str) -> None:
    assert bash_risk(command) == "read"


def test_the_table_is_large_and_never_read() -> None:
    assert len(FAIL_CLOSED) >= 50
    assert all(risk != "read" for _, risk in FAIL_CLOSED)


def test_long_and_nested_commands_end_quickly() -> None:
    import time

    t0 = time.perf_counter()
    assert bash_risk("echo $(" * 40 + "rm -rf x" + ")" * 40) == "execute"  # deeper than the classifier looks
    assert bash_risk("ls " + "a " * 20000) == "read"
    assert bash_risk("watch " + "x " * 5000) == "execute"
    assert bash_risk("echo " + "a" * 40000) == "read"  # one 40 KB word: linear, not quadratic
    assert bash_risk("echo '" + "a" * 40000 + "' \"" + "$x" * 10000 + "\"") == "read"
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize(
    ("annotations", "risk"),
    [
        ({"readOnlyHint": True}, "read"),
        ({"readOnlyHint": False, "destructiveHint": False}, "write"),
        ({"readOnlyHint": False, "destructiveHint": True}, "destructive"),
        (None, "destructive"),  # MCP's default destructiveHint is true
    ],
)
def test_host_tools_take_their_annotations(annotations: dict | None, risk: str) -> None:
    tool = ToolDefinition(name="deploy", parameters={"type": "object", "properties": {}}, annotations=annotations)
    assert risk_of(tool, {}, seed=False) == risk


def test_host_tool_named_like_a_seed_tool_uses_annotations() -> None:
    tool = ToolDefinition(name="Read", parameters={"type": "object", "properties": {}})
    assert risk_of(tool, {}, seed=False) == "destructive"
