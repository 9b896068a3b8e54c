"""What the request asks the host to do, read from its words: files to write, files to read, things to run,
find or search. Pure functions over the prompt; no model.

Each reader returns facts with the evidence that found them (the matched words), so a decision built on them can
say why. The readers are deliberately narrow: a request they do not understand yields no fact, and the model
chooser (candidates.py) or no call at all takes over.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from .grounding import file_names

__all__ = ["Intent", "read_intent", "is_question", "is_how_to", "EDIT_VERBS"]

_F = r"[`'\"]?(?P<file>{file})[`'\"]?"
# Verbs that put new content somewhere, and the preposition that names the place.
_SAVE = (r"\b(?:save|saves|saved|saving|write|writes|writing|put|puts|putting|store|stores|storing|place|output|"
         r"dump|export|keep|persist|implement|implements|define|code|build)\b")
_PLACE = r"\b(?:to|into|in|inside|as|at|under|on)\s+(?:a\s+|the\s+)?(?:new\s+)?(?:file\s+|module\s+|script\s+)?" \
         r"(?:called\s+|named\s+)?"
_CREATE = r"\b(?:create|creates|creating|make|generate|add|start|new)\b"
_APPEND = r"\b(?:add|append|insert)\s"
_RUN = r"\b(?:run|runs|execute|exec|launch)\b"
_READ = (r"\b(?:read|show|open|display|print|cat|view|look\s+at|see|inspect|check|dump|summari[sz]e|explain|"
         r"describe|review|analy[sz]e)\b")
_QUESTION = re.compile(r"^\s*(?:what|why|how|when|which|who|where|is|are|can|could|should|does|do|explain|"
                       r"describe|compare|summari[sz]e|review|analy[sz]e|outline|walk\s+me\s+through|tell\s+me|"
                       r"give\s+me\s+an?\s+(?:overview|explanation|summary))\b", re.IGNORECASE)
EDIT_VERBS = re.compile(
    r"\b(?:fix|fixes|fixed|change|changes|update|updates|modify|edit|rename|refactor|add|adds|remove|replace|make|"
    r"improve|optimi[sz]e|rewrite|correct|handle|support|convert|implement|set|use|swap|extend|simplify|clean|"
    r"patch|adjust|bump|raise|lower|increase|decrease|return|should)\b", re.IGNORECASE)
_LANG_GLOBS = {
    "python": "**/*.py", "py": "**/*.py", "javascript": "**/*.js", "js": "**/*.js", "typescript": "**/*.ts",
    "ts": "**/*.ts", "markdown": "**/*.md", "md": "**/*.md", "json": "**/*.json", "yaml": "**/*.yaml",
    "yml": "**/*.yml", "toml": "**/*.toml", "html": "**/*.html", "css": "**/*.css", "shell": "**/*.sh",
    "rust": "**/*.rs", "go": "**/*.go", "java": "**/*.java", "c": "**/*.c", "c++": "**/*.cpp", "text": "**/*.txt",
    "csv": "**/*.csv", "sql": "**/*.sql", "test": "**/test_*.py", "notebook": "**/*.ipynb", "jupyter": "**/*.ipynb",
}
_GLOB_TOKEN = re.compile(r"(?<![\w/])[`'\"]?((?:[\w.\-/]*\*[\w.*?\-/{},]*))[`'\"]?")
_FIND_FILES = re.compile(
    r"\b(?:find|list|show|locate|glob|get|give\s+me|which|enumerate)\b[^.\n?]{0,30}?\b(?:all\s+|every\s+|the\s+)?"
    r"(?P<lang>python|py|javascript|js|typescript|ts|markdown|md|json|yaml|yml|toml|html|css|shell|rust|go|java|"
    r"c\+\+|c|text|csv|sql|test|notebook|jupyter)\s+(?:source\s+)?(?:files?|scripts?|modules?|documents?|docs|"
    r"notebooks?)\b", re.IGNORECASE)
_DIR_WORDS = re.compile(r"\b(?:in|under|inside|within|from)\s+(?:the\s+)?[`'\"]?(?P<dir>[\w.\-]+(?:/[\w.\-]+)*/?)"
                        r"[`'\"]?(?:\s+(?:directory|folder|dir|package))?", re.IGNORECASE)
_GREP = [
    re.compile(r"\b(?:search|grep|look)\s+(?:the\s+\w+\s+|through\s+the\s+\w+\s+|in\s+the\s+\w+\s+)?"
               r"(?:for|up)\s+(?:the\s+(?:word|string|text|term|name|identifier|pattern)\s+|all\s+)?"
               r"(?P<q>[`'\"][^`'\"\n]+[`'\"]|[\w.:$@#-]+)", re.IGNORECASE),
    re.compile(r"\bgrep\s+(?!for\b)(?P<q>[`'\"][^`'\"\n]+[`'\"]|[\w.:$@#-]+)", re.IGNORECASE),
    re.compile(r"\b(?:find|show|list|locate)\s+(?:me\s+)?(?:all\s+|every\s+|the\s+)?(?:occurrences|uses|usages|"
               r"references|mentions|calls|instances|lines\s+(?:containing|with|mentioning))\s+(?:of\s+|to\s+)?"
               r"(?:the\s+(?:function|class|variable|word|string|name)\s+)?"
               r"(?P<q>[`'\"][^`'\"\n]+[`'\"]|[\w.:$@#-]+)", re.IGNORECASE),
    re.compile(r"\b(?:where|which\s+files?|what\s+files?|find\s+where|find\s+which\s+files?)\s+(?:is\s+|are\s+|do\s+|"
               r"does\s+)?(?:the\s+(?:function|class|variable|constant|method|name)\s+)?"
               r"(?P<q>[`'\"][^`'\"\n]+[`'\"]|[\w.:$@#-]+)\s+(?:is\s+|are\s+|gets?\s+)?"
               r"(?:used|defined|called|referenced|imported|declared|set|mentioned|raised)\b", re.IGNORECASE),
    re.compile(r"\b(?:which|what)\s+files?\s+(?:contain|mention|use|import|reference|call|define)s?\s+"
               r"(?:the\s+(?:function|class|word|string|name)\s+)?"
               r"(?P<q>[`'\"][^`'\"\n]+[`'\"]|[\w.:$@#-]+)", re.IGNORECASE),
    re.compile(r"\b(?i:find|list|show)\s+(?i:all\s+|every\s+)?(?i:the\s+)?(?P<q>TODO|FIXME|XXX|HACK)s?\b"),
]
_STOP_QUERY = frozenset({"the", "a", "an", "it", "this", "that", "all", "files", "file", "code", "where", "how"})
_PROGRAMS = frozenset("""
python python3 pytest pip pip3 uv poetry npm npx node yarn pnpm make cargo go git ls cat head tail wc grep rg find
ruff mypy black isort flake8 pylint tox nox docker bash sh zsh ./configure cmake ctest java javac mvn gradle rustc
gcc g++ clang deno bun jest vitest tsc eslint prettier echo pwd tree du df env which
""".split())
_QUOTED_CMD = re.compile(r"`([^`\n]+)`|\"([^\"\n]+)\"")
_TEST_FILE = re.compile(r"(?:^|/)(?:test_[\w.-]+\.py|[\w.-]+_test\.py|tests?\.py)$")
_DELETE = re.compile(r"\b(?:delete|remove|rm|erase|wipe)\s+(?:the\s+)?[`'\"]?(?P<name>[\w.\-/]+)[`'\"]?"
                     r"(?:\s+(?P<kind>directory|folder|dir))?", re.IGNORECASE)
_INSTALL = re.compile(r"\binstall\s+(?:the\s+)?(?:python\s+)?(?:package\s+|library\s+|module\s+)?"
                      r"[`'\"]?(?P<pkg>[A-Za-z][\w.\-\[\]]*)[`'\"]?(?:\s+(?:package|library|module))?"
                      r"(?:\s+with\s+pip)?", re.IGNORECASE)
_INSTALL_DEPS = re.compile(r"\binstall\s+(?:the\s+|all\s+(?:the\s+)?)?(?:dependencies|requirements|deps)\b",
                           re.IGNORECASE)
_LIST_DIR = re.compile(r"\b(?:list|show)\s+(?:me\s+)?(?:the\s+|all\s+(?:the\s+)?)?(?:files|contents|entries)\s+"
                       r"(?:in|of|under|inside)\s+(?:the\s+)?[`'\"]?(?P<dir>[\w.\-]+(?:/[\w.\-]+)*/?)[`'\"]?"
                       r"(?:\s+(?:directory|folder|dir))?", re.IGNORECASE)
_GIT = re.compile(r"\bgit\s+(?P<sub>status|diff|log)\b|\b(?P<word>status|diff|log|history)\s+of\s+the\s+(?:git\s+)?"
                  r"repo(?:sitory)?\b|\bgit\s+(?P<word2>status|diff|log|history)\b", re.IGNORECASE)


class Intent(BaseModel):
    """The request's asks, each with the words that showed it."""

    model_config = ConfigDict(extra="forbid")
    destinations: list[str] = Field(default_factory=list, description="files to write new content to")
    unnamed_destination: bool = Field(False, description="'save it to a file' without a name")
    append_targets: list[str] = Field(default_factory=list, description="existing files to add to (not shown)")
    run_files: list[str] = Field(default_factory=list, description="files the request says to run")
    run_it: bool = Field(False, description="'run it' / 'execute it': run what was written or shown")
    run_tests: bool = False
    test_files: list[str] = Field(default_factory=list)
    commands: list[str] = Field(default_factory=list, description="commands quoted in the request, verbatim")
    reads: list[str] = Field(default_factory=list, description="files to read")
    globs: list[tuple[str, str | None]] = Field(default_factory=list, description="(pattern, directory)")
    greps: list[tuple[str, str | None]] = Field(default_factory=list, description="(pattern, directory)")
    deletes: list[tuple[str, bool]] = Field(default_factory=list, description="(name, is a directory)")
    installs: list[str] = Field(default_factory=list, description="pip packages to install")
    install_deps: bool = False
    list_dirs: list[str] = Field(default_factory=list)
    git: list[str] = Field(default_factory=list, description="git status / diff / log")
    edit_verbs: list[str] = Field(default_factory=list)
    question: bool = False
    how_to: bool = Field(False, description="'how do I ...': an explanation, not the action, is asked for")
    evidence: list[str] = Field(default_factory=list)


_HOW_TO = re.compile(r"^\s*(?:how|what|why|when|where|which|should|can|could|is|are|does|do)\b[^.\n]{0,40}?"
                     r"\b(?:do|does|would|should|can|could|to)\s+(?:i|you|we|one|someone|install|run|use|make)\b|"
                     r"^\s*how\s+to\b", re.IGNORECASE)


def is_how_to(prompt: str) -> bool:
    """"How do I install numpy?": the request asks how, not for the action itself."""
    return bool(_HOW_TO.match(prompt))


def is_question(prompt: str) -> bool:
    """The request asks to be told something rather than to have something done."""
    return bool(_QUESTION.match(prompt)) or prompt.rstrip().endswith("?")


def _file_rx(files: list[str]) -> str:
    return "|".join(re.escape(f) for f in sorted(files, key=len, reverse=True))


def _is_command(text: str) -> bool:
    first = text.strip().split(" ", 1)[0]
    return first in _PROGRAMS or first.startswith("./") or first.startswith("python")


def _query(raw: str) -> str | None:
    q = raw.strip().strip("`'\"").rstrip(".,;:!?")
    return None if not q or q.lower() in _STOP_QUERY else q


def _directory(prompt: str) -> str | None:
    for m in _DIR_WORDS.finditer(prompt):
        d = m.group("dir")
        if d.lower() in {"project", "repo", "repository", "codebase", "code", "current", "this", "whole", "root",
                         "it", "them", "a", "file", "files"}:
            continue
        if "." in d.rsplit("/", 1)[-1] and "/" not in d:  # a file name, not a directory
            continue
        if "/" in d or m.group(0).rstrip().lower().endswith(("directory", "folder", "dir", "package")):
            return d.rstrip("/") or d
    return None


def read_intent(prompt: str) -> Intent:
    """Every ask the request's words show; see the module docstring."""
    it = Intent(question=is_question(prompt), how_to=is_how_to(prompt))
    files = file_names(prompt)
    _file_asks(it, prompt, files)
    _action_asks(it, prompt, files)
    return _finish(it, prompt)


def _file_asks(it: Intent, prompt: str, files: list[str]) -> None:
    """Files to write, add to, run and read, by the verb before each name the request gives."""
    frx = _file_rx(files) if files else None
    low = prompt
    if frx:
        for m in re.finditer(_SAVE + r"[^.\n;]{0,80}?" + _PLACE + _F.format(file=frx), low, re.IGNORECASE):
            it.destinations.append(m.group("file"))
            it.evidence.append(m.group(0))
        for m in re.finditer(_CREATE + r"[^.\n;]{0,40}?(?:\bfile\b|\bscript\b|\bmodule\b)?\s*(?:called\s+|named\s+)?"
                             + _F.format(file=frx), low, re.IGNORECASE):
            verb = m.group(0).split()[0].lower()
            if verb == "add" and not re.search(r"\bnew\b", m.group(0), re.IGNORECASE):
                continue  # "add X to utils.py": an existing file, handled below
            it.destinations.append(m.group("file"))
            it.evidence.append(m.group(0))
        for m in re.finditer(r"\b(?:write|writes|writing)\s+(?:a\s+|an\s+|the\s+)?(?:[\w-]+\s+){0,3}?"
                             r"(?:script|module|program|file|config)?\s*" + _F.format(file=frx), low, re.IGNORECASE):
            it.destinations.append(m.group("file"))
            it.evidence.append(m.group(0))
        for m in re.finditer(_F.format(file=frx) + r"\s+(?:should|must|will)\s+(?:contain|hold|have|define)",
                             low, re.IGNORECASE):
            it.destinations.append(m.group("file"))
            it.evidence.append(m.group(0))
        for m in re.finditer(_APPEND + r"[^.\n;]{0,60}?\b(?:to|into|in)\s+(?:the\s+(?:file\s+)?)?"
                             + _F.format(file=frx), low, re.IGNORECASE):
            it.append_targets.append(m.group("file"))
            it.evidence.append(m.group(0))
        for m in re.finditer(_RUN + r"\s+(?:the\s+(?:script|file|program|module)\s+)?(?:python3?\s+)?"
                             + _F.format(file=frx), low, re.IGNORECASE):
            it.run_files.append(m.group("file"))
            it.evidence.append(m.group(0))
        for m in re.finditer(_READ + r"[^.\n;]{0,40}?" + _F.format(file=frx), low, re.IGNORECASE):
            it.reads.append(m.group("file"))
            it.evidence.append(m.group(0))
        for m in re.finditer(r"\b(?:what(?:'s|\s+is)\s+in|contents?\s+of|what\s+does)\s+(?:the\s+file\s+)?"
                             + _F.format(file=frx), low, re.IGNORECASE):
            it.reads.append(m.group("file"))
            it.evidence.append(m.group(0))
    elif re.search(_SAVE + r"[^.\n;]{0,60}?" + r"\b(?:to|into|in|as)\s+(?:a|an|its\s+own|a\s+new)\s+(?:\w+\s+)?"
                   r"file\b", low, re.IGNORECASE):
        it.unnamed_destination = True
        it.evidence.append("save to an unnamed file")


def _action_asks(it: Intent, prompt: str, files: list[str]) -> None:
    """Runs, tests, quoted commands, finds, searches, deletes, installs, listings and git."""
    low = prompt
    it.test_files = [f for f in files if _TEST_FILE.search(f)]
    if re.search(_RUN + r"\b[^.\n;]{0,30}?\b(?:tests?|test\s+suite|unit\s+tests?|pytest)\b|\btest\s+it\b|"
                 r"\bpytest\b", low, re.IGNORECASE):
        it.run_tests = True
        it.evidence.append("run the tests")
    if re.search(_RUN + r"\s+(?:it|this|that|them|the\s+(?:script|program|file|code|module|app|function))\b|"
                 r"\b(?:and|then)\s+run\b(?!\s+the\s+tests?)", low, re.IGNORECASE):
        it.run_it = True
        it.evidence.append("run it")
    for m in _QUOTED_CMD.finditer(prompt):
        cmd = (m.group(1) or m.group(2)).strip()
        if _is_command(cmd):
            it.commands.append(cmd)
            it.evidence.append(f"quoted command `{cmd}`")
    for m in _FIND_FILES.finditer(prompt):
        it.globs.append((_LANG_GLOBS[m.group("lang").lower()], _directory(prompt)))
        it.evidence.append(m.group(0))
    if not it.globs and re.search(r"\b(?:find|list|show|locate|glob|match)\b", prompt, re.IGNORECASE):
        for m in _GLOB_TOKEN.finditer(prompt):
            it.globs.append((m.group(1), _directory(prompt)))
            it.evidence.append(m.group(0))
    for rx in _GREP:
        for m in rx.finditer(prompt):
            q = _query(m.group("q"))
            if q is not None and (q, _directory(prompt)) not in it.greps:
                it.greps.append((q, _directory(prompt)))
                it.evidence.append(m.group(0))
    for m in _DELETE.finditer(prompt):
        name = m.group("name")
        is_dir = bool(m.group("kind"))
        if name.lower() in _STOP_QUERY or name.lower() in {"bug", "line", "function", "comment", "unused"}:
            continue
        if is_dir or name in files:
            it.deletes.append((name, is_dir))
            it.evidence.append(m.group(0))
    if _INSTALL_DEPS.search(prompt):
        it.install_deps = True
        it.evidence.append("install the dependencies")
    else:
        for m in _INSTALL.finditer(prompt):
            pkg = m.group("pkg")
            if pkg.lower() not in {"it", "the", "them", "this", "dependencies", "requirements", "python", "a"}:
                it.installs.append(pkg)
                it.evidence.append(m.group(0))
    for m in _LIST_DIR.finditer(prompt):
        if file_names(m.group("dir")):
            continue  # "the contents of main.py": a file to read, not a directory to list
        it.list_dirs.append(m.group("dir").rstrip("/") or m.group("dir"))
        it.evidence.append(m.group(0))
    for m in _GIT.finditer(prompt):
        sub = (m.group("sub") or m.group("word") or m.group("word2")).lower()
        sub = "log" if sub == "history" else sub
        if sub not in it.git:
            it.git.append(sub)
            it.evidence.append(m.group(0))


def _finish(it: Intent, prompt: str) -> Intent:
    it.edit_verbs = sorted({v.lower() for v in EDIT_VERBS.findall(prompt)})
    for name in ("destinations", "append_targets", "run_files", "reads", "test_files"):
        setattr(it, name, list(dict.fromkeys(getattr(it, name))))
    # A file the request writes to is not also one it reads; a file it appends to is not a new file.
    it.append_targets = [f for f in it.append_targets if f not in it.destinations]
    it.reads = [f for f in it.reads if f not in it.destinations and f not in it.append_targets]
    return it
