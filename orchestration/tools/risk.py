"""Risk labels for tool calls: read < write < execute < destructive. Pure and table-tested.

Shell commands fail closed. The command is lexed the way a POSIX shell splits it (quotes, escapes,
operators, redirections, substitutions); each simple command is then looked up in tables of commands whose
effect is known. Anything else (an unknown program, an interpreter, ``eval``, ``xargs``, a command or
process substitution, a here-document, a dynamic command name, a lexing error) is ``execute`` at least,
never ``read``; what a substitution or ``sh -c`` runs is classified too, so ``echo $(rm -rf ~)`` is
destructive. Overwriting a file (``>``, ``tee f``, ``sort -o f``, ``find -fprint``) is destructive.

A label is ``read`` only where the words bash will run are read exactly. So these are ``execute`` at least:
words the lexer cannot spell out (``$'...'``, ``$"..."``, ``${x:-w}``/``${x@P}``/``${a[i]}``, ``$[...]``, brace
expansion), an expansion or unquoted glob among the arguments of a command whose options matter (``find . $X``;
a short list of commands no argument can make worse is exempt), a path-qualified command (``./ls``), a long option
that abbreviates a dangerous one (GNU and git take prefixes: ``sort --out=f``), arithmetic and subscripts that
bash evaluates (``[[ x -eq 0 ]]``, ``test -v``, ``declare -i``/``-n``, ``printf -v``), and assignments to ``PATH``
and the other variables that change what runs (``_dangerous_name``).

``shlex`` alone cannot tell a quoted ``';'`` from the operator, hence the small lexer below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.types import Risk, ToolDefinition

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
    opaque: bool = False  # $'...', ${x@P}, ${a[i]}, $[...], {a,b}: never read exactly, whatever the command
    split: bool = False  # an unquoted expansion or glob: bash may split it into other words (-delete, -o f)


@dataclass
class _Redirect:
    op: str
    target: str = ""
    dynamic: bool = False
    opaque: bool = False


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
# ${...} bodies that only substitute a value; anything else (${x@P}, ${a[i]}, ${!x}, ${x:-w}, ${s:i}) may run
# code (prompt expansion, arithmetic on a subscript or offset) or yield words the classifier cannot see.
_PLAIN_BRACED = re.compile(r"#?(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])")


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
    return _Lexer(s).run()


class _Lexer:
    """One left-to-right pass over a command: the word being built, the segment it belongs to, the result."""

    def __init__(self, s: str) -> None:
        self.s, self.i = s, 0
        self.out = _Lexed()
        self.seg = _Segment()
        self.chars: list[str] | None = None  # the word being built; None between words
        self.dynamic = self.opaque = self.split = False
        self.braces: list[bool] = []  # unquoted "{" open in this word: whether a "," or ".." made it a brace expansion
        self.pending: str | None = None  # a redirection waiting for its target word

    def run(self) -> _Lexed:
        while self.i < len(self.s):
            self._step()
        self._end_segment()
        return self.out

    def _step(self) -> None:
        s, i = self.s, self.i
        c = s[i]
        if c == "\\":
            self._escape()
        elif c == "'":
            self._single_quoted()
        elif c == '"':
            self._double_quoted()
        elif c in "$`":
            self._unquoted_expansion()
        elif c in "<>" and s.startswith("(", i + 1):
            self._process_substitution()
        elif c in "<>" or s.startswith("&>", i):
            self._redirection()
        elif c in " \t\r":
            self._end_word()
            self.i += 1
        elif c == "#" and self.chars is None:
            j = s.find("\n", i)
            self.i = len(s) if j < 0 else j
        elif (op := next((o for o in _OPERATORS if s.startswith(o, i)), None)) is not None:
            self._end_segment()
            self.i += len(op)
        else:
            self._plain(c)

    # -- words and segments
    def _word(self) -> list[str]:
        if self.chars is None:
            self.chars = []
        return self.chars

    def _end_word(self) -> None:
        if self.chars is None:
            return
        text = "".join(self.chars)
        if self.pending is not None:
            self.seg.redirects.append(_Redirect(self.pending, text, self.dynamic, self.opaque))
            self.pending = None
        else:
            self.seg.words.append(_Word(text, self.dynamic, self.opaque, self.split))
        self.chars, self.dynamic, self.opaque, self.split = None, False, False, False
        self.braces.clear()

    def _end_segment(self) -> None:
        self._end_word()
        if self.pending is not None:  # a redirection with no target
            self.out.error = True
            self.pending = None
        if self.seg.words or self.seg.redirects:
            self.out.segments.append(self.seg)
        self.seg = _Segment()

    # -- the characters of a word
    def _escape(self) -> None:
        s, i = self.s, self.i
        if i + 1 < len(s) and s[i + 1] != "\n":
            self._word().append(s[i + 1])
        self.i = i + 2

    def _single_quoted(self) -> None:
        s, i = self.s, self.i
        j = s.find("'", i + 1)
        if j < 0:
            self.out.error, j = True, len(s)
        self._word().extend(s[i + 1:j])
        self.i = j + 1

    def _double_quoted(self) -> None:
        s, n = self.s, len(self.s)
        chars = self._word()
        i = self.i + 1
        while i < n and s[i] != '"':
            if s[i] == "\\" and i + 1 < n:
                chars.append(s[i + 1])
                i += 2
            elif s[i] in "$`":
                j = self._expansion(i, True)
                if j == i:
                    chars.append("$")
                    j += 1
                chars.extend(s[i:j])
                i = j
            else:
                chars.append(s[i])
                i += 1
        if i >= n:
            self.out.error = True
        self.i = i + 1

    def _unquoted_expansion(self) -> None:
        i = self.i
        j = self._expansion(i, False)
        if j == i:  # literal "$"
            self._word().append("$")
            self.i = i + 1
            return
        self._word().extend(self.s[i:j])
        self.i = j

    def _process_substitution(self) -> None:
        i = self.i
        j = self._close(i + 2, "(", ")")
        self.out.substitutions.append(self.s[i + 2:j])
        self._word().extend("/dev/fd/N")
        self.dynamic = True
        self.i = j + 1

    def _redirection(self) -> None:
        op = next(r for r in _REDIRECTS if self.s.startswith(r, self.i))
        if self.chars is not None and "".join(self.chars).isdigit() and not self.dynamic:
            self.chars = None  # "2>": the word was the descriptor
        self._end_word()
        if self.pending is not None:
            self.out.error = True
        self.pending = op
        self.i += len(op)

    def _plain(self, c: str) -> None:
        chars = self._word()
        # Unquoted: brace expansion ({-delete,-print}, {1..3}) and globs (a file named -delete) make other words.
        braces = self.braces
        if c == "{":
            braces.append(False)
        elif c == "," and braces:
            braces[-1] = True
        elif c == "." and braces and chars and chars[-1] == "." and self.s[self.i - 1] == ".":
            braces[-1] = True
        elif c == "}" and braces:
            if braces.pop():
                self.opaque = True
        elif c in "*?[":
            self.split = True
        chars.append(c)
        self.i += 1

    # -- expansions: each takes the index of its "$" or backtick and returns the index after it
    def _expansion(self, i: int, quoted: bool) -> int:
        """At a ``$`` or backtick (outside single quotes): record it, return the index after it (``i`` for a
        literal dollar)."""
        j = self._expansion_end(i, quoted)
        if j != i:
            self.dynamic = True
            self.split = self.split or not quoted
        return j

    def _expansion_end(self, i: int, quoted: bool) -> int:
        s = self.s
        if s[i] == "`":
            j = self._scan_to(i + 1, "`")
            self.out.substitutions.append(s[i + 1:j].replace("\\`", "`"))
            return j + 1
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if nxt == "(":
            j = self._close(i + 2, "(", ")")
            self.out.substitutions.append(s[i + 2:j])
            return j + 1
        if nxt == "{":
            return self._braced_parameter(i)
        if nxt == "[":  # $[...]: old arithmetic expansion (evaluates subscripts of the names it reads)
            j = self._close(i + 2, "[", "]")
            self.opaque = True
            return j + 1
        if nxt == "'" and not quoted:  # $'...' (ANSI-C quoting): escapes we do not decode
            j = self._scan_to(i + 2, "'")
            self.opaque = True
            return j + 1
        if nxt == '"' and not quoted:  # $"...": a locale translation, which may be any text
            self.opaque = True
            return i + 1  # the double-quoted string is read as usual; the word stays opaque
        m = _NAME.match(s, i + 1)
        return m.end() if m else i  # a lone "$" is a literal dollar (and "$'" inside double quotes)

    def _braced_parameter(self, i: int) -> int:
        j = self._close(i + 2, "{", "}")
        body = self.s[i + 2:j]
        if "$(" in body or "`" in body:  # ${x:-$(cmd)}: the nested command runs
            self.out.substitutions.append(body)
        if not _PLAIN_BRACED.fullmatch(body):
            self.opaque = True
        return j + 1

    def _close(self, i: int, open_: str, close: str) -> int:
        """``_closing``, or the end of the command (a lexing error) where nothing closes."""
        j = _closing(self.s, i, open_, close)
        if j < 0:
            self.out.error = True
            return len(self.s)
        return j

    def _scan_to(self, j: int, end: str) -> int:
        """Index of the next unescaped ``end`` from ``j`` (past the end, a lexing error, where there is none)."""
        s = self.s
        while j < len(s) and s[j] != end:
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            self.out.error = True
        return j


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


def _long_like(args: list[str], *names: str) -> bool:
    """Whether a long option in ``args`` may be one of ``names``: GNU getopt and git take any unambiguous prefix
    (``sort --out=f`` is ``--output=f``), so a prefix of a name counts as that name."""
    return any(name.startswith(given) for given in _longs(args) for name in names)


def _strip_options(words: list[_Word], takes_value: set[str]) -> list[_Word]:
    """Drop a wrapper's own options (and their values) from the front of ``words``; a short cluster ending in an
    option that takes a value (``env -iu NAME``) takes the next word too."""
    i = 0
    while i < len(words) and words[i].text.startswith("-") and words[i].text != "-":
        t = words[i].text
        if t == "--":
            return words[i + 1:]
        skip = 1
        if t in takes_value:
            skip = 2
        elif not t.startswith("--"):
            for k, ch in enumerate(t[1:], 1):
                if "-" + ch in takes_value:
                    skip = 2 if k == len(t) - 1 else 1  # -uNAME carries its value; -iu takes the next word
                    break
        i += skip
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
# Variables that change what later commands run, load or read as configuration (PATH unset or set to "." runs
# ./ls; IFS re-splits words; PS4 and PROMPT_COMMAND are expanded, with their substitutions, by the shell).
_DANGEROUS_ENV = {"PATH", "IFS", "ENV", "PS0", "PS1", "PS2", "PS3", "PS4", "PROMPT_COMMAND", "CDPATH", "GLOBIGNORE",
                  "EXECIGNORE", "SHELLOPTS", "BASHOPTS", "HOME", "SHELL", "PAGER", "MANPAGER", "EDITOR", "VISUAL",
                  "BROWSER", "LESSOPEN", "LESSCLOSE", "LESS", "GCONV_PATH", "LOCPATH", "NLSPATH", "GLIBC_TUNABLES",
                  "RIPGREP_CONFIG_PATH", "AWKPATH", "AWKLIBPATH", "NODE_OPTIONS", "RUBYOPT", "SUDO_ASKPASS",
                  "SSH_ASKPASS", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "TMOUT", "HISTFILE"}
_DANGEROUS_PREFIXES = ("LD_", "DYLD_", "BASH_", "GIT_", "PYTHON", "PERL", "RUBY", "NODE_", "XDG_", "MALLOC_")


def _dangerous_name(name: str) -> bool:
    return name in _DANGEROUS_ENV or name.startswith(_DANGEROUS_PREFIXES)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[+-]?[0-9]+")
# Commands no argument can make worse than a read: an unknown or unquoted expansion among their arguments is still
# a read. Every other command's arguments must be read exactly (``find . $X`` may be ``find . -delete``).
_ARGS_FREE = {
    "ls", "cat", "tac", "head", "tail", "wc", "pwd", "echo", "grep", "egrep", "fgrep", "stat", "du", "df", "which",
    "whoami", "diff", "cmp", "comm", "cut", "tr", "nl", "fold", "rev", "seq", "od", "hexdump", "strings", "column",
    "paste", "join", "expand", "unexpand", "fmt", "basename", "dirname", "realpath", "readlink", "true", "false",
    "type", "uname", "ps", "id", "groups", "printenv", "nproc", "uptime", "free", "sleep", "cd", "pushd", "popd",
    "jq", "sha1sum", "sha256sum", "sha512sum", "md5sum", "cksum", "base64", "zcat", "locale", "expr",
}
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
    # Only -F and -v (and gawk's harmless switches) are understood: -f/-e/--source/--include/... bring code.
    flags: list[str] = []
    k = 0
    while k < len(args):
        a = args[k]
        if a in ("-F", "-v"):
            k += 2
            continue
        if not (a.startswith("-F") or a.startswith("-v")):  # -F: and -vx=1 carry their value
            flags.append(a)
        k += 1
    if _shorts(flags) - {"b", "c", "P", "r", "S", "t", "s"} or \
            _longs(flags) - {"field-separator", "assign", "sandbox", "posix", "traditional", "characters-as-bytes"}:
        return "execute"
    pos = _positionals(args, {"-F", "-v", "--field-separator", "--assign"})
    if not pos or _AWK_UNSAFE.search(pos[0]):
        return "execute"
    return "read"


def _sort_risk(args: list[str]) -> Risk:
    if _long_like(args, "compress-program"):
        return "execute"
    if "o" in _shorts(args) or _long_like(args, "output"):
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
    return "execute" if _long_like(args, "pre", "hostname-bin") else "read"


def _date_risk(args: list[str]) -> Risk:
    return "execute" if "s" in _shorts(args) or _long_like(args, "set") else "read"


def _tree_risk(args: list[str]) -> Risk:  # -o FILE; -R writes 00Tree.html into every directory
    return "destructive" if {"o", "R"} & _shorts(args) else "read"


def _file_risk(args: list[str]) -> Risk:  # file -C compiles a magic file and writes NAME.mgc
    return "destructive" if "C" in _shorts(args) or _long_like(args, "compile") else "read"


def _pager_risk(args: list[str]) -> Risk:  # less/more: -o/-O/--log-file write a file, +CMD runs a command
    if {"o", "O"} & _shorts(args) or _long_like(args, "log-file", "LOG-FILE"):
        return "destructive"
    return "execute" if any(a.startswith("+") for a in args) else "read"


def _ag_risk(args: list[str]) -> Risk:  # ag --pager CMD runs CMD
    return "execute" if _long_like(args, "pager") else "read"


def _names_ok(words: list[str]) -> bool:
    """Each word is NAME or NAME=VALUE / NAME+=VALUE with a plain, harmless NAME (no subscript: ``a[$(x)]``)."""
    for w in words:
        m = _ASSIGN.match(w)
        name = m.group(1) if m else w
        if not (m or _IDENT.fullmatch(w)) or _dangerous_name(name):
            return False
    return True


_DECL_SAFE = {"export": set("pnf"), "declare": set("pfFgrxlut"), "typeset": set("pfFgrxlut"),
              "local": set("pfFgrxlut"), "readonly": set("pfFgrxlut")}


def _decl_risk(cmd: str, words: list[_Word]) -> Risk:
    """export / declare / local / readonly: -i evaluates values as arithmetic (``declare -i n='a[$(x)]'`` runs x),
    -n makes a name reference, -a/-A take compound values; NAME must be plain and harmless."""
    names: list[str] = []
    for w in words:
        t = w.text
        if t[:1] in "-+" and len(t) > 1 and not names:
            if w.dynamic or set(t[1:]) - _DECL_SAFE[cmd]:
                return "execute"
        elif t != "--":
            names.append(t)
    return "read" if _names_ok(names) else "execute"


def _printf_risk(words: list[_Word]) -> Risk:
    """printf -v NAME assigns NAME (``printf -v 'a[$(x)]'`` runs x, ``printf -v PATH``); a dynamic first word may be
    -v. Later arguments are data."""
    if not words or words[0].dynamic:
        return "execute" if words else "read"
    t = words[0].text
    if t.startswith("-v"):
        name = t[2:] or (words[1].text if len(words) > 1 and not words[1].dynamic else "")
        return "read" if name and _names_ok([name]) and "=" not in name else "execute"
    return "execute" if t.startswith("-") and t not in ("--", "-") else "read"


_ARITH_OPS = {"-eq", "-ne", "-lt", "-le", "-gt", "-ge"}


def _test_risk(words: list[_Word], double: bool) -> Risk:
    """test / [ / [[: -v NAME evaluates a subscript, and [['s arithmetic operators evaluate both operands (a name's
    value included), so each must be a plain literal (bash's test builtin compares plain integers only); test and [
    also split unquoted expansions into new words."""
    if double and words and words[-1].text == "]]":
        words = words[:-1]
    for k, w in enumerate(words):
        if not double and w.split:
            return "execute"
        if w.text == "-v" and not w.dynamic:
            nxt = words[k + 1] if k + 1 < len(words) else None
            if nxt is None or nxt.dynamic or not _IDENT.fullmatch(nxt.text):
                return "execute"
        if double and w.text in _ARITH_OPS and not w.dynamic:
            for o in (words[k - 1] if k else None, words[k + 1] if k + 1 < len(words) else None):
                if o is None or o.dynamic or not _INT.fullmatch(o.text):
                    return "execute"
    return "read"


def _unset_risk(args: list[str]) -> Risk:  # unset PATH makes bash look in "."; unset 'a[$(x)]' may evaluate x
    names = [a for a in args if a not in ("-v", "-f", "--")]
    return "read" if _names_ok(names) and not any("=" in a for a in names) else "execute"


_SET_OPTIONS = {"errexit", "nounset", "pipefail", "xtrace", "noglob", "noclobber", "verbose", "errtrace",
                "functrace", "allexport", "noexec", "posix"}


def _set_risk(words: list[_Word]) -> Risk:
    """set: -k (keyword) passes later NAME=VALUE words into a command's environment (``ls LD_PRELOAD=x.so``)."""
    k = 0
    while k < len(words):
        w = words[k]
        if w.dynamic:
            return "execute"  # may be an option
        t = w.text
        if t in ("--", "-") or t[:1] not in "-+":
            return "read"  # the rest are positional parameters: data
        if "k" in t[1:]:
            return "execute"
        if t[1:] == "o" and k + 1 < len(words):
            if words[k + 1].dynamic or words[k + 1].text not in _SET_OPTIONS:
                return "execute"
            k += 1
        k += 1
    return "read"


_CHECKS: dict[str, Callable[[list[str]], Risk]] = {
    "sed": _sed_risk, "gsed": _sed_risk, "awk": _awk_risk, "gawk": _awk_risk, "mawk": _awk_risk,
    "nawk": _awk_risk, "sort": _sort_risk, "tee": _tee_risk, "uniq": _uniq_risk, "xxd": _xxd_risk,
    "rg": _rg_risk, "date": _date_risk, "tree": _tree_risk, "file": _file_risk, "less": _pager_risk,
    "more": _pager_risk, "ag": _ag_risk, "unset": _unset_risk,
}
# Checks that need the words themselves (which are dynamic, which may be split).
_WORD_CHECKS: dict[str, Callable[[list[_Word]], Risk]] = {
    "printf": _printf_risk, "test": lambda w: _test_risk(w, False), "[": lambda w: _test_risk(w, False),
    "[[": lambda w: _test_risk(w, True), "set": _set_risk,
    **{d: (lambda w, d=d: _decl_risk(d, w)) for d in _DECL_SAFE},
}

_GIT_READ = {"status", "log", "show", "diff", "blame", "ls-files", "ls-tree", "rev-parse", "rev-list",
             "describe", "shortlog", "cat-file", "grep", "show-ref", "for-each-ref", "count-objects",
             "merge-base", "name-rev", "version", "help", "check-ignore", "whatchanged", "ls-remote"}
_GIT_WRITE = {"add", "commit", "merge", "pull", "fetch", "cherry-pick", "revert", "init", "clone", "am", "apply",
              "mv", "notes", "switch", "restore", "checkout", "push", "worktree", "submodule", "rebase", "rm"}


_GIT_GLOBALS = {"-C", "--git-dir", "--work-tree", "--namespace", "--bare", "--no-pager", "-p", "--paginate", "-P",
                "--no-replace-objects", "--literal-pathspecs", "--glob-pathspecs", "--noglob-pathspecs",
                "--icase-pathspecs", "--no-optional-locks", "--version", "--help", "--html-path", "--man-path",
                "--info-path"}


def _git_risk(args: list[str]) -> Risk:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        a = args[i]
        if a.split("=", 1)[0] not in _GIT_GLOBALS:
            return "execute"  # -c, --exec-path, --config-env: config on the command line names pagers, hooks
        i += 2 if a in ("-C", "--git-dir", "--work-tree", "--namespace") else 1
    if i >= len(args):
        return "read"
    sub, rest = args[i], args[i + 1:]
    short, long = _shorts(rest), _longs(rest)
    # git's option parser takes abbreviations too (--upload=...): these run a program on any subcommand
    if _long_like(rest, "upload-pack", "receive-pack", "exec") or \
            (sub in ("ls-remote", "clone", "fetch", "pull", "archive") and "u" in short):
        return "execute"
    if sub in _GIT_READ:
        if _long_like(rest, "output"):
            return "destructive"  # --output=FILE overwrites FILE
        if _long_like(rest, "ext-diff") or (sub == "grep" and ("O" in short
                                                               or _long_like(rest, "open-files-in-pager"))):
            return "execute"
        if sub == "ls-remote" and any("::" in a for a in rest):
            return "execute"  # ext::CMD transports run CMD
        return "read"
    if sub == "reflog":
        return "destructive" if rest[:1] in (["expire"], ["delete"]) else "read"
    if sub == "branch":
        if short & {"D", "d", "f", "M", "C"} or _long_like(rest, "delete", "force"):
            return "destructive"
        if short & {"m", "c", "u"} or _long_like(rest, "move", "copy", "set-upstream-to", "unset-upstream",
                                                 "edit-description"):
            return "write"
        listing = short & {"l", "a", "r", "v"} or long & {"list", "show-current", "contains", "merged",
                                                          "no-merged", "points-at"}
        return "read" if listing or not _positionals(rest) else "write"
    if sub == "tag":
        if short & {"d", "f"} or _long_like(rest, "delete", "force"):
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
        return "destructive" if _long_like(rest, "hard", "merge", "keep") else "write"
    if sub == "clean":  # without -f it usually refuses, unless clean.requireForce is off: only a dry run reads
        return "read" if ("n" in short or "dry-run" in long) and not ("f" in short or "force" in long) \
            else "destructive"
    if sub == "restore":  # restoring the work tree discards changes; --staged alone only unstages
        staged_only = ("S" in short or "staged" in long) and not ("W" in short or "worktree" in long)
        return "write" if staged_only else "destructive"
    if sub == "push" and (short & {"f", "d"} or _long_like(rest, "force", "force-with-lease", "mirror", "delete",
                                                              "prune")
                          or any(a.startswith("+") for a in rest)):
        return "destructive"
    if sub in ("checkout", "switch") and ("--" in rest or "." in rest or "f" in short
                                          or _long_like(rest, "force", "discard-changes")):
        return "destructive"
    if sub == "rm" and ("f" in short or _long_like(rest, "force")):
        return "destructive"
    if sub == "rebase" and (short & {"x", "i"} or _long_like(rest, "exec", "interactive")):
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
    if head.dynamic or head.opaque:
        return "execute"  # $CMD, "$(which x)": the program is not known
    if "/" in head.text:  # ./ls, bin/x: whatever that file is; /bin/rm still counts as rm
        return _worst("execute", _command_risk([_Word(head.text.rsplit("/", 1)[-1])] + words[1:], depth))
    if any(w.opaque for w in words[1:]):
        return _worst("execute", _command_risk([w for w in words if not w.opaque], depth))
    cmd = head.text
    args = [w.text for w in words[1:]]
    if cmd in _WRAPPERS:
        rest = _strip_options(words[1:], _WRAPPERS[cmd])
        own = words[1:len(words) - len(rest)]
        if (cmd == "sudo" and (not rest or {"e", "s", "i"} & _shorts([w.text for w in own])
                               or _long_like([w.text for w in own], "edit", "shell", "login"))):
            return _worst("execute", _command_risk(rest, depth))  # a root shell or an editor
        floor: Risk = "execute" if any(w.dynamic or w.split for w in own) else "read"
        return _worst(floor, _command_risk(rest, depth))
    if cmd == "env":
        if "S" in _shorts(args) or _long_like(args, "split-string"):
            return "execute"
        rest = _strip_options(words[1:], {"-u", "-C", "--unset", "--chdir"})
        own = words[1:len(words) - len(rest)]
        floor = "execute" if any(w.dynamic or w.split for w in own) else "read"
        while rest and (m := _ASSIGN.match(rest[0].text)):
            if _dangerous_name(m.group(1)):
                floor = "execute"
            rest = rest[1:]
        return _worst(floor, _command_risk(rest, depth))
    if cmd in _WORD_CHECKS:
        return _WORD_CHECKS[cmd](words[1:])
    if cmd not in _ARGS_FREE and any(w.dynamic or w.split for w in words[1:]):
        # an expansion or glob may become an option (-delete, -o FILE) or a subscript evaluated as arithmetic
        return _worst("execute", _command_risk([w for w in words if not (w.dynamic or w.split)], depth))
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
        return "destructive" if "R" in _shorts(args) or _long_like(args, "recursive") else "write"
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
        return "execute" if r.opaque else "read"
    if r.op == ">&" and re.fullmatch(r"\d+-?|-", r.target):
        return "read"  # 2>&1: a descriptor, not a file
    if r.opaque:
        return "execute"  # cat < ${x@P}: expanding the target runs code
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
        if words[0].text != "case" and (len(words) < 2 or not _names_ok([words[1].text]) or "=" in words[1].text
                                         or any(w.opaque for w in words)):
            return _worst(risk, "execute")  # for PATH in .; do ls; done
        return risk
    while words and (m := _ASSIGN.match(words[0].text)):
        if _dangerous_name(m.group(1)) or words[0].opaque:
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
