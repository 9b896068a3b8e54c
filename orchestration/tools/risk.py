"""Risk labels for tool calls: read < write < execute < destructive. Pure and table-tested.

Shell commands fail closed. The command is lexed the way a POSIX shell splits it (quotes, escapes,
operators, redirections, substitutions); each simple command is then looked up in tables of commands whose
effect is known. Anything else (an unknown program, an interpreter, ``eval``, ``xargs``, a command or
process substitution, a here-document, a dynamic command name, a lexing error) is ``execute`` at least,
never ``read``; what a substitution or ``sh -c`` runs is classified too, so ``echo $(rm -rf ~)`` is
destructive. Overwriting a file (``>``, ``tee f``, ``sort -o f``, ``find -fprint``) is destructive.

``shlex`` alone cannot tell a quoted ``';'`` from the operator, hence the small lexer below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..types import Risk, ToolDefinition

__all__ = ["risk_of", "bash_risk"]

_ORDER: dict[Risk, int] = {"read": 0, "write": 1, "execute": 2, "destructive": 3}
_MAX_DEPTH = 8  # nested substitutions / sh -c beyond this are not looked into (execute)


def _worst(*risks: Risk) -> Risk:
    return max(risks, key=_ORDER.__getitem__)


# -- the lexer ---------------------------------------------------------------------------------------------
@dataclass
class _Word:
    text: str
    dynamic: bool = False  # holds an expansion ($x, ${x}, $(...), `...`): its value is not known here


@dataclass
class _Redirect:
    op: str
    target: str = ""
    dynamic: bool = False


@dataclass
class _Segment:
    words: list[_Word] = field(default_factory=list)
    redirects: list[_Redirect] = field(default_factory=list)


@dataclass
class _Lexed:
    segments: list[_Segment] = field(default_factory=list)
    substitutions: list[str] = field(default_factory=list)  # bodies of $(...), `...`, <(...), >(...)
    error: bool = False


_REDIRECTS = ("&>>", "<<<", "<<-", "&>", ">>", ">|", ">&", "<<", "<>", "<&", ">", "<")
_OPERATORS = ("&&", "||", ";;", "|&", ";", "|", "&", "\n", "(", ")")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]|[@*#?$!-]")


def _closing(s: str, i: int, open_: str, close: str) -> int:
    """Index of the ``close`` matching the ``open_`` just before ``i`` (quote-aware), or -1."""
    depth, quote = 1, ""
    while i < len(s):
        c = s[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
        elif c == "\\":
            i += 1
        elif c in "'\"`":
            quote = c
        elif c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _lex(s: str) -> _Lexed:
    out = _Lexed()
    seg = _Segment()
    chars: list[str] | None = None  # the word being built; None between words
    dynamic = False
    pending: str | None = None  # a redirection waiting for its target word

    def end_word() -> None:
        nonlocal chars, dynamic, pending
        if chars is None:
            return
        text = "".join(chars)
        if pending is not None:
            seg.redirects.append(_Redirect(pending, text, dynamic))
            pending = None
        else:
            seg.words.append(_Word(text, dynamic))
        chars, dynamic = None, False

    def end_segment() -> None:
        nonlocal seg, pending
        end_word()
        if pending is not None:  # a redirection with no target
            out.error = True
            pending = None
        if seg.words or seg.redirects:
            out.segments.append(seg)
        seg = _Segment()

    def expansion(i: int) -> int:
        """At a ``$`` or backtick (outside single quotes): record it, return the index after it (``i`` for a
        literal dollar)."""
        nonlocal dynamic
        j = _expansion_end(i)
        if j != i:
            dynamic = True
        return j

    def _expansion_end(i: int) -> int:
        if s[i] == "`":
            j = i + 1
            while j < len(s) and s[j] != "`":
                j += 2 if s[j] == "\\" else 1
            if j >= len(s):
                out.error = True
            out.substitutions.append(s[i + 1:j].replace("\\`", "`"))
            return j + 1
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if nxt == "(":
            j = _closing(s, i + 2, "(", ")")
            if j < 0:
                out.error = True
                j = len(s)
            out.substitutions.append(s[i + 2:j])
            return j + 1
        if nxt == "{":
            j = _closing(s, i + 2, "{", "}")
            if j < 0:
                out.error = True
                j = len(s)
            body = s[i + 2:j]
            if "$(" in body or "`" in body:  # ${x:-$(cmd)}: the nested command runs
                out.substitutions.append(body)
            return j + 1
        if nxt == "'":  # $'...' (ANSI-C quoting): escapes we do not decode, so the value is dynamic
            j = i + 2
            while j < len(s) and s[j] != "'":
                j += 2 if s[j] == "\\" else 1
            if j >= len(s):
                out.error = True
            return j + 1
        m = _NAME.match(s, i + 1)
        return m.end() if m else i  # a lone "$" is a literal dollar

    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            if i + 1 < n and s[i + 1] != "\n":
                chars = chars if chars is not None else []
                chars.append(s[i + 1])
            i += 2
            continue
        if c == "'":
            j = s.find("'", i + 1)
            if j < 0:
                out.error, j = True, n
            chars = chars if chars is not None else []
            chars.extend(s[i + 1:j])
            i = j + 1
            continue
        if c == '"':
            chars = chars if chars is not None else []
            i += 1
            while i < n and s[i] != '"':
                if s[i] == "\\" and i + 1 < n:
                    chars.append(s[i + 1])
                    i += 2
                elif s[i] in "$`":
                    j = expansion(i)
                    if j == i:
                        chars.append("$")
                        j += 1
                    chars.extend(s[i:j])
                    i = j
                else:
                    chars.append(s[i])
                    i += 1
            if i >= n:
                out.error = True
            i += 1
            continue
        if c in "$`":
            j = expansion(i)
            if j == i:  # literal "$"
                chars = chars if chars is not None else []
                chars.append("$")
                i += 1
                continue
            chars = chars if chars is not None else []
            chars.extend(s[i:j])
            i = j
            continue
        if c in "<>" and i + 1 < n and s[i + 1] == "(":  # process substitution
            j = _closing(s, i + 2, "(", ")")
            if j < 0:
                out.error, j = True, n
            out.substitutions.append(s[i + 2:j])
            chars = chars if chars is not None else []
            chars.extend("/dev/fd/N")
            dynamic = True
            i = j + 1
            continue
        if c in "<>" or (c == "&" and s.startswith("&>", i)):
            op = next(r for r in _REDIRECTS if s.startswith(r, i))
            if chars is not None and "".join(chars).isdigit() and not dynamic:
                chars = None  # "2>": the word was the descriptor
            end_word()
            if pending is not None:
                out.error = True
            pending = op
            i += len(op)
            continue
        if c in " \t\r":
            end_word()
            i += 1
            continue
        if c == "#" and chars is None:
            j = s.find("\n", i)
            i = n if j < 0 else j
            continue
        op = next((o for o in _OPERATORS if s.startswith(o, i)), None)
        if op is not None:
            end_segment()
            i += len(op)
            continue
        chars = chars if chars is not None else []
        chars.append(c)
        i += 1
    end_segment()
    return out


# -- option helpers ----------------------------------------------------------------------------------------
def _shorts(args: list[str]) -> set[str]:
    """Letters of short option clusters (``-rk2`` gives r, k, 2) before ``--``."""
    got: set[str] = set()
    for a in args:
        if a == "--":
            break
        if a.startswith("-") and not a.startswith("--") and len(a) > 1:
            got.update(a[1:])
    return got


def _longs(args: list[str]) -> set[str]:
    got: set[str] = set()
    for a in args:
        if a == "--":
            break
        if a.startswith("--") and len(a) > 2:
            got.add(a[2:].split("=", 1)[0])
    return got


def _positionals(args: list[str], takes_value: frozenset[str] | set[str] = frozenset()) -> list[str]:
    out: list[str] = []
    skip = ended = False
    for a in args:
        if skip:
            skip = False
        elif ended or not a.startswith("-") or a == "-":
            out.append(a)
        elif a == "--":
            ended = True
        elif a in takes_value:
            skip = True
    return out


def _strip_options(words: list[_Word], takes_value: set[str]) -> list[_Word]:
    """Drop a wrapper's own options (and their values) from the front of ``words``."""
    i = 0
    while i < len(words) and words[i].text.startswith("-") and words[i].text != "-":
        if words[i].text == "--":
            return words[i + 1:]
        i += 2 if words[i].text in takes_value else 1
    return words[i:]


# -- commands ----------------------------------------------------------------------------------------------
_DESTRUCTIVE = {"rm", "rmdir", "dd", "shred", "truncate", "wipefs", "fdisk", "sfdisk", "parted", "srm", "unlink"}
_WRITE = {"mkdir", "touch", "cp", "mv", "ln", "split", "csplit", "mktemp"}
_ALWAYS_READ = {
    "ls", "cat", "tac", "head", "tail", "less", "more", "wc", "pwd", "echo", "printf", "grep", "egrep", "fgrep",
    "ag", "stat", "du", "df", "which", "whoami", "tree", "diff", "cmp", "comm", "cut", "tr", "nl", "fold", "rev",
    "seq", "od", "hexdump", "strings", "column", "paste", "join", "expand", "unexpand", "fmt", "basename",
    "dirname", "realpath", "readlink", "true", "false", "test", "[", "[[", "type", "uname", "ps", "id", "groups",
    "printenv", "nproc", "uptime", "free", "sleep", "cd", "pushd", "popd", "jq", "sha1sum", "sha256sum",
    "sha512sum", "md5sum", "cksum", "base64", "zcat", "zgrep", "file", "locale", "expr", "unset", "set",
}
_INTERPRETER = re.compile(r"(python|pypy|ruby|perl|php|node|nodejs|deno|bun|lua|luajit|tclsh|Rscript|osascript|"
                          r"pwsh|java|julia)[0-9.]*$")
_SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "mksh", "fish", "busybox"}
_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "esac", "!", "{", "}", "time"}
_HEADERS = {"for", "select", "case"}  # loop / case headers: the words are data
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\+?=")
# Variables that change what later commands run or load.
_DANGEROUS_ENV = {"PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "DYLD_INSERT_LIBRARIES",
                  "DYLD_LIBRARY_PATH", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "NODE_OPTIONS", "PERL5OPT",
                  "PERL5LIB", "RUBYOPT", "BASH_ENV", "ENV", "PROMPT_COMMAND", "IFS", "SHELLOPTS", "GIT_EXEC_PATH",
                  "GIT_SSH", "GIT_SSH_COMMAND", "GIT_PAGER", "PAGER", "EDITOR", "VISUAL", "GIT_EDITOR",
                  "GIT_EXTERNAL_DIFF", "GIT_CONFIG_PARAMETERS", "LESSOPEN", "MANPAGER"}
_WRAPPERS: dict[str, set[str]] = {  # wrapper -> its options that take a value
    "sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"},
    "doas": {"-u", "-C"},
    "nohup": set(),
    "nice": {"-n"},
    "ionice": {"-c", "-n", "-p", "-P", "-u"},
    "stdbuf": {"-i", "-o", "-e"},
    "exec": {"-a"},
    "builtin": set(),
    "chronic": set(),
}
_RUNNERS = {"watch", "strace", "ltrace", "nsenter", "unshare", "chroot", "flock", "parallel", "script", "su",
            "runuser", "setsid", "taskset", "systemd-run", "firejail", "bwrap", "fakeroot", "proot"}
_NULL_TARGETS = {"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"}
# One sed command that only prints or substitutes (no w/W/e/r/R, no s///w or s///e).
_SED_SAFE = re.compile(r"""^\s*(?:(?:\d+|\$|/(?:[^/\\]|\\.)*/)(?:\s*,\s*(?:\d+|\$|/(?:[^/\\]|\\.)*/))?\s*!?\s*)?
    (?:[pdqQ=gGhHxnNlz]|s(?P<d>[^\\\n\w\s])(?:(?!(?P=d))[^\\]|\\.)*(?P=d)(?:(?!(?P=d))[^\\]|\\.)*(?P=d)[gIip0-9]*
       |y(?P<e>[^\\\n\w\s])(?:(?!(?P=e)).)*(?P=e)(?:(?!(?P=e)).)*(?P=e))?\s*$""", re.VERBOSE)


def _sed_risk(args: list[str]) -> Risk:
    scripts: list[str] = []
    files: list[str] = []
    in_place = False
    plain = set("nrEsuz")  # options that change neither files nor what runs
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--expression" or (a.startswith("-") and not a.startswith("--") and a.endswith("e")
                                   and not set(a[1:-1]) - plain):
            scripts.append(args[i + 1] if i + 1 < len(args) else "")
            i += 2
            continue
        if a.startswith("--expression="):
            scripts.append(a.split("=", 1)[1])
        elif a.startswith("--in-place"):
            in_place = True
        elif a.startswith("--"):
            if a.split("=", 1)[0] not in ("--quiet", "--silent", "--regexp-extended", "--separate",
                                          "--null-data", "--posix", "--unbuffered", "--debug", "--sandbox"):
                return "execute"  # --file and anything unknown
        elif a.startswith("-") and a != "-":
            body = a[1:]
            if "i" in body:  # -i, -i.bak, -ni: in place (a backup suffix may follow the i)
                in_place = True
                body = body[:body.index("i")]
            if set(body) - plain:
                return "execute"  # -f SCRIPT and anything unknown
        else:
            files.append(a)
        i += 1
    if not scripts:
        if not files:
            return "execute"
        scripts, files = [files[0]], files[1:]
    for script in scripts:
        if not all(_SED_SAFE.match(part) for part in re.split(r"[;\n]", script)):
            return "execute"
    return "write" if in_place else "read"


_AWK_UNSAFE = re.compile(r"system|getline|[|>]|@|\bclose\b|fflush|\bENVIRON\b")


def _awk_risk(args: list[str]) -> Risk:
    if {"f", "i", "l", "E"} & _shorts(args) or {"file", "include", "load", "exec"} & _longs(args):
        return "execute"
    pos = _positionals(args, {"-F", "-v", "--field-separator", "--assign"})
    if not pos or _AWK_UNSAFE.search(pos[0]):
        return "execute"
    return "read"


def _sort_risk(args: list[str]) -> Risk:
    if "compress-program" in _longs(args):
        return "execute"
    if "o" in _shorts(args) or "output" in _longs(args):
        return "destructive"  # -o FILE overwrites FILE
    return "read"


def _tee_risk(args: list[str]) -> Risk:
    files = [a for a in _positionals(args) if a not in _NULL_TARGETS]
    if not files:
        return "read"
    return "write" if "a" in _shorts(args) or "append" in _longs(args) else "destructive"


def _uniq_risk(args: list[str]) -> Risk:  # uniq IN OUT writes OUT
    return "destructive" if len(_positionals(args, {"-f", "-s", "-w"})) >= 2 else "read"


def _xxd_risk(args: list[str]) -> Risk:  # xxd IN OUT writes OUT
    return "destructive" if len(_positionals(args, {"-c", "-g", "-l", "-o", "-s", "-n"})) >= 2 else "read"


def _rg_risk(args: list[str]) -> Risk:
    return "execute" if "pre" in _longs(args) else "read"


def _date_risk(args: list[str]) -> Risk:
    return "execute" if "s" in _shorts(args) or "set" in _longs(args) else "read"


def _tree_risk(args: list[str]) -> Risk:
    return "destructive" if "o" in _shorts(args) else "read"


def _env_like_risk(args: list[str]) -> Risk:  # export / declare / local / readonly NAME=VALUE
    names = [m.group(1) for a in args if (m := _ASSIGN.match(a))]
    return "execute" if any(name in _DANGEROUS_ENV for name in names) else "read"


_CHECKS: dict[str, Callable[[list[str]], Risk]] = {
    "sed": _sed_risk, "gsed": _sed_risk, "awk": _awk_risk, "gawk": _awk_risk, "mawk": _awk_risk,
    "nawk": _awk_risk, "sort": _sort_risk, "tee": _tee_risk, "uniq": _uniq_risk, "xxd": _xxd_risk,
    "rg": _rg_risk, "date": _date_risk, "tree": _tree_risk, "export": _env_like_risk,
    "declare": _env_like_risk, "typeset": _env_like_risk, "local": _env_like_risk, "readonly": _env_like_risk,
}

_GIT_READ = {"status", "log", "show", "diff", "blame", "ls-files", "ls-tree", "rev-parse", "rev-list",
             "describe", "shortlog", "cat-file", "grep", "show-ref", "for-each-ref", "count-objects",
             "merge-base", "name-rev", "version", "help", "check-ignore", "whatchanged", "ls-remote"}
_GIT_WRITE = {"add", "commit", "merge", "pull", "fetch", "cherry-pick", "revert", "init", "clone", "am", "apply",
              "mv", "notes", "switch", "restore", "checkout", "push", "worktree", "submodule", "rebase", "rm"}


def _git_risk(args: list[str]) -> Risk:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        a = args[i]
        if a == "-c" or a.startswith("--exec-path") or a.startswith("--config-env"):
            return "execute"  # config on the command line can name pagers, aliases, hooks
        i += 2 if a in ("-C", "--git-dir", "--work-tree", "--namespace") else 1
    if i >= len(args):
        return "read"
    sub, rest = args[i], args[i + 1:]
    short, long = _shorts(rest), _longs(rest)
    if sub in _GIT_READ:
        if "output" in long:
            return "destructive"  # --output=FILE overwrites FILE
        if "ext-diff" in long or (sub == "grep" and ("O" in short or "open-files-in-pager" in long)):
            return "execute"
        return "read"
    if sub == "reflog":
        return "destructive" if rest[:1] in (["expire"], ["delete"]) else "read"
    if sub == "branch":
        if short & {"D", "d", "f", "M", "C"} or long & {"delete", "force"}:
            return "destructive"
        if short & {"m", "c", "u"} or long & {"move", "copy", "set-upstream-to", "unset-upstream", "edit-description"}:
            return "write"
        listing = short & {"l", "a", "r", "v"} or long & {"list", "show-current", "contains", "merged",
                                                          "no-merged", "points-at"}
        return "read" if listing or not _positionals(rest) else "write"
    if sub == "tag":
        if short & {"d", "f"} or long & {"delete", "force"}:
            return "destructive"
        return "read" if not rest or short & {"l", "n"} or "list" in long else "write"
    if sub == "remote":
        return "read" if not rest or rest[0] in ("-v", "--verbose", "show", "get-url") else "write"
    if sub == "stash":
        action = rest[0] if rest else "push"
        return {"list": "read", "show": "read", "drop": "destructive", "clear": "destructive"}.get(
            action, "write" if action in ("push", "save", "pop", "apply", "-m", "-u", "--include-untracked")
            else "execute")
    if sub == "config":
        reads = {"get", "get-all", "get-regexp", "list", "show-origin", "name-only"}
        return "read" if long & reads or "l" in short else "execute"
    if sub == "reset":
        return "destructive" if "hard" in long or "merge" in long else "write"
    if sub == "clean":  # without -f it usually refuses, unless clean.requireForce is off: only a dry run reads
        return "read" if ("n" in short or "dry-run" in long) and not ("f" in short or "force" in long) \
            else "destructive"
    if sub == "restore":  # restoring the work tree discards changes; --staged alone only unstages
        staged_only = ("S" in short or "staged" in long) and not ("W" in short or "worktree" in long)
        return "write" if staged_only else "destructive"
    if sub == "push" and (short & {"f", "d"} or long & {"force", "force-with-lease", "mirror", "delete", "prune"}
                          or any(a.startswith("+") for a in rest)):
        return "destructive"
    if sub in ("checkout", "switch") and ("--" in rest or "." in rest or "f" in short
                                          or long & {"force", "discard-changes"}):
        return "destructive"
    if sub == "rm" and ("f" in short or "force" in long):
        return "destructive"
    if sub == "rebase" and (short & {"x", "i"} or long & {"exec", "interactive"}):
        return "execute"
    if sub == "submodule" and "foreach" in rest:
        return "execute"
    if sub in ("filter-branch", "filter-repo", "gc", "prune", "update-ref", "replace"):
        return "destructive" if sub != "gc" or any(a.startswith("--prune") for a in rest) else "write"
    if sub in _GIT_WRITE:
        return "write"
    return "execute"  # an alias, bisect run, difftool, an unknown subcommand


def _find_risk(words: list[_Word], depth: int) -> Risk:
    risk: Risk = "read"
    i = 0
    while i < len(words):
        t = words[i].text
        if t == "-delete":
            risk = _worst(risk, "destructive")
        elif t in ("-fprint", "-fprint0", "-fprintf", "-fls"):
            risk = _worst(risk, "destructive")  # truncates and writes the named file
        elif t in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(words) and words[j].text not in (";", "+"):
                j += 1
            inner = words[i + 1:j]
            risk = _worst(risk, "execute", _command_risk(inner, depth) if inner else "execute")
            i = j
        i += 1
    return risk


def _command_risk(words: list[_Word], depth: int) -> Risk:
    """The risk of one simple command (assignments and keywords already removed)."""
    if not words:
        return "read"
    head = words[0]
    if head.dynamic:
        return "execute"  # $CMD, "$(which x)": the program is not known
    cmd = head.text.rsplit("/", 1)[-1]
    args = [w.text for w in words[1:]]
    if cmd in _WRAPPERS:
        rest = _strip_options(words[1:], _WRAPPERS[cmd])
        if cmd == "sudo" and not rest:
            return "execute"  # sudo -s / -i: a root shell
        return _command_risk(rest, depth)
    if cmd == "env":
        if "S" in _shorts(args) or "split-string" in _longs(args):
            return "execute"
        rest = _strip_options(words[1:], {"-u", "-C", "--unset", "--chdir"})
        floor: Risk = "read"
        while rest and (m := _ASSIGN.match(rest[0].text)):
            if m.group(1) in _DANGEROUS_ENV:
                floor = "execute"
            rest = rest[1:]
        return _worst(floor, _command_risk(rest, depth))
    if cmd == "time":
        return _command_risk(_strip_options(words[1:], set()), depth)
    if cmd == "timeout":
        rest = _strip_options(words[1:], {"-s", "-k", "--signal", "--kill-after"})
        return _command_risk(rest[1:], depth)  # rest[0] is the duration
    if cmd == "command":
        if _shorts(args) & {"v", "V"}:
            return "read"  # a lookup
        return _command_risk(_strip_options(words[1:], set()), depth)
    if cmd == "xargs":
        rest = _strip_options(words[1:], {"-I", "-L", "-n", "-P", "-s", "-d", "-E", "-a", "--arg-file",
                                          "--delimiter", "--max-args", "--max-procs", "--replace"})
        return _worst("execute", _command_risk(rest, depth))  # runs a command on arguments it reads
    if cmd in _RUNNERS:  # their options are not parsed: every later word may start the command it runs
        starts = [k for k in range(1, min(len(words), 9)) if not words[k].text.startswith("-")]
        return _worst("execute", *(_command_risk(words[k:], depth) for k in starts))
    if cmd in _SHELLS:
        for k, a in enumerate(args):
            if a.startswith("-") and not a.startswith("--") and "c" in a[1:]:
                if k + 1 < len(args) and not words[k + 2].dynamic:
                    return _worst("execute", _risk(args[k + 1], depth + 1))
                return "execute"
        return "execute"  # a script or stdin
    if cmd == "eval":
        return _worst("execute", _risk(" ".join(args), depth + 1))
    if cmd in ("source", ".") or _INTERPRETER.match(cmd):
        return "execute"
    if cmd in _DESTRUCTIVE or cmd.startswith("mkfs"):
        return "destructive"
    if cmd in ("chmod", "chown", "chgrp"):
        return "destructive" if "R" in _shorts(args) or "recursive" in _longs(args) else "write"
    if cmd == "git":
        return _git_risk(args)
    if cmd == "find":
        return _find_risk(words[1:], depth)
    if cmd in _CHECKS:
        return _CHECKS[cmd](args)
    if cmd in _ALWAYS_READ:
        return "read"
    if cmd in _WRITE:
        return "write"
    return "execute"  # not in the tables: fail closed


def _redirect_risk(r: _Redirect) -> Risk:
    if r.op in ("<<", "<<-", "<<<"):
        return "execute"  # a here-document feeds text (often code) to the command; its body is also expanded
    if r.op in ("<", "<&"):
        return "read"
    if r.op == ">&" and re.fullmatch(r"\d+-?|-", r.target):
        return "read"  # 2>&1: a descriptor, not a file
    if r.target in _NULL_TARGETS and not r.dynamic:
        return "read"
    if r.op in (">>", "&>>", "<>"):
        return "write"
    return "destructive"  # >, >|, &>, >&FILE: truncates the file


def _segment_risk(seg: _Segment, depth: int) -> Risk:
    risk: Risk = "read"
    for r in seg.redirects:
        risk = _worst(risk, _redirect_risk(r))
    words = seg.words
    while words and not words[0].dynamic and words[0].text in _KEYWORDS:
        words = words[1:]
    if words and not words[0].dynamic and words[0].text in _HEADERS:
        return risk
    while words and (m := _ASSIGN.match(words[0].text)):
        if m.group(1) in _DANGEROUS_ENV:
            risk = _worst(risk, "execute")
        words = words[1:]
    return _worst(risk, _command_risk(words, depth))


def _risk(command: str, depth: int) -> Risk:
    if depth > _MAX_DEPTH:
        return "execute"
    lexed = _lex(command)
    risk: Risk = "execute" if lexed.error else "read"
    for body in lexed.substitutions:
        risk = _worst(risk, "execute", _risk(body, depth + 1))
    for seg in lexed.segments:
        risk = _worst(risk, _segment_risk(seg, depth))
    return risk


def bash_risk(command: str) -> Risk:
    """The worst risk over a shell command's parts; anything not fully understood is execute at least."""
    return _risk(command, 0)


def risk_of(tool: ToolDefinition, arguments: dict[str, Any], *, seed: bool) -> Risk:
    """A call's risk: seed tools by name (Bash by its command), host tools by their MCP annotations."""
    if seed:
        if tool.name in ("Read", "Glob", "Grep"):
            return "read"
        if tool.name in ("Write", "Edit"):
            return "write"
        if tool.name == "Bash":
            return bash_risk(str(arguments.get("command", "")))
    ann = tool.annotations or {}
    if ann.get("readOnlyHint") is True:
        return "read"
    # MCP's default for destructiveHint is true: an unannotated tool may destroy.
    if ann.get("destructiveHint", True) is False:
        return "write"
    return "destructive"
