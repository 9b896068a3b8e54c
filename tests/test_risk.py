from __future__ import annotations

import pytest

from orchestration.tools.catalogue import SEED_TOOLS
from orchestration.tools.risk import bash_risk, risk_of
from orchestration.types import ToolDefinition

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
        ("Bash", {"command": "pytest -q"}, "write"),
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
        ("make 2>&1", "write"),
        ("python -m pytest > /dev/null", "write"),
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
        ("npm install", "write"),
    ],
)
def test_bash_risk_table(command: str, risk: str) -> None:
    assert bash_risk(command) == risk


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
