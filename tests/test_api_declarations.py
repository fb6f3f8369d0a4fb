"""pyiocp/_engine_api.pxd restates engine/pyiocp.h (and pyiocp/dispatch_queue.h)
by hand, as Cython requires.  The C compiler catches only part of a drift: a
member declared with the wrong type, a function-pointer typedef with other
parameters or a raw int where the header now says piocp_file compile without
a word and are wrong at run time.  This test parses both sides (enough of C
for these headers: prototypes, typedefs, struct members, extern variables,
macros) and fails, naming the item, when a declaration in the .pxd does not
match its header.  The .pxd may declare less than the header (Cython allows
partial declarations); it may not declare anything different.

Types are compared after normalising whitespace, parameter names, the
`struct`/`enum` keywords and `(void)`; typedef names (piocp_file, ssize_t)
are compared as written, never resolved, so that the .pxd keeps using the
header's handle types."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pytest

# Reads the checkout's headers and .pxd (not installed with the package).
pytestmark = pytest.mark.source_tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PXD = os.path.join(ROOT, "pyiocp", "_engine_api.pxd")
HEADERS = {
    "pyiocp.h": os.path.join(ROOT, "engine", "pyiocp.h"),
    "dispatch_queue.h": os.path.join(ROOT, "pyiocp", "dispatch_queue.h"),
    "write_flow.h": os.path.join(ROOT, "pyiocp", "write_flow.h"),
}

C_TYPE_WORDS = {"void", "char", "short", "int", "long", "float", "double", "signed",
                "unsigned", "const", "volatile", "struct", "enum", "union", "_Bool"}


@dataclass
class Declarations:
    """What one side declares, every type already normalised."""
    functions: Dict[str, str] = field(default_factory=dict)       # name -> signature
    structs: Dict[str, Optional[Dict[str, str]]] = field(default_factory=dict)  # None: opaque
    typedefs: Dict[str, str] = field(default_factory=dict)        # name -> type
    variables: Dict[str, str] = field(default_factory=dict)       # name -> type
    constants: set = field(default_factory=set)                   # macros, enumerators


# ------------------------------------------------------- normalising --

def _split_top(text: str, separator: str) -> List[str]:
    """Splits on `separator` outside parentheses and braces."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "({":
            depth += 1
        elif char in ")}":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _tokens(text: str) -> List[str]:
    return re.findall(r"[A-Za-z_]\w*|\*|\(|\)|,|\.\.\.", text)


def _drop_qualifiers(tokens: List[str]) -> List[str]:
    # Cython names structs and enums without the keyword; `noexcept nogil`
    # and `except ...` are Cython's, not C's
    return [t for t in tokens if t not in ("struct", "enum", "noexcept", "nogil")]


def normalise_declarator(text: str) -> Tuple[str, str]:
    """'const struct sockaddr *addr' -> ('addr', 'const sockaddr*');
    'void (*fn)(int x)' -> ('fn', 'void(*)(int)'); a nameless parameter
    ('unsigned int', 'void') -> ('', type)."""
    text = re.sub(r"\bexcept\b.*$", "", text.strip())
    pointer_to_function = re.match(r"^(.*?)\(\s*\*\s*(\w+)\s*\)\s*\((.*)\)\s*[\w\s]*$", text, re.S)
    if pointer_to_function:
        returns, name, params = pointer_to_function.groups()
        _, return_type = normalise_declarator(returns + " _")
        return name, f"{return_type}(*)({normalise_parameters(params)})"
    tokens = _drop_qualifiers(_tokens(text))
    name = ""
    if len(tokens) > 1 and re.match(r"[A-Za-z_]", tokens[-1]) and tokens[-1] not in C_TYPE_WORDS:
        name = tokens.pop()
    return name, _join(tokens)


def _join(tokens: List[str]) -> str:
    out = ""
    for token in tokens:
        if out and token != "*" and not out.endswith("*"):
            out += " "
        out += token
    return out


def normalise_parameters(params: str) -> str:
    params = params.strip()
    if params in ("", "void"):
        return ""
    return ",".join(normalise_declarator(p)[1] for p in _split_top(params, ","))


def normalise_function(returns: str, params: str) -> str:
    _, return_type = normalise_declarator(returns + " _")
    return f"{return_type}({normalise_parameters(params)})"


# ------------------------------------------------------------- C side --

def _strip_c(text: str, declarations: Declarations) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"#\s*ifdef\s+__cplusplus.*?#\s*endif", " ", text, flags=re.S)
    text = re.sub(r"\\\n", " ", text)
    for name in re.findall(r"^\s*#\s*define\s+(\w+)", text, flags=re.M):
        declarations.constants.add(name)
    return re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)


def _c_statements(text: str):
    """Top-level statements; a function definition yields its signature
    only (its body is skipped)."""
    depth, start, i = 0, 0, 0
    while i < len(text):
        char = text[i]
        if char == "{":
            if depth == 0 and text[start:i].rstrip().endswith(")"):
                signature = text[start:i]
                end = i
                while True:                       # skip the function body
                    end += 1
                    if text[end] == "{":
                        depth += 1
                    elif text[end] == "}":
                        if depth == 0:
                            break
                        depth -= 1
                yield signature.strip()
                i = start = end + 1
                continue
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == ";" and depth == 0:
            yield text[start:i].strip()
            start = i + 1
        i += 1


def _c_members(body: str) -> Dict[str, str]:
    members = {}
    for statement in _split_top(body, ";"):
        statement = statement.strip()
        if not statement:
            continue
        nested = re.match(r"^(?:struct|union)\s*\{.*\}\s*(\w+)$", statement, re.S)
        if nested:                                # an anonymous struct or union member
            members[nested.group(1)] = "<nested>"
            continue
        first, *more = _split_top(statement, ",")
        name, type_ = normalise_declarator(first)
        members[name] = type_
        for extra in more:                        # `dispatch_node *head, *tail`
            members[extra.replace("*", "").strip()] = type_.rstrip("*") + "*" * extra.count("*")
    return members


def parse_c_header(path: str) -> Declarations:
    declarations = Declarations()
    text = _strip_c(open(path).read(), declarations)
    for statement in _c_statements(text):
        statement = re.sub(r"\s+", " ", statement).strip()
        statement = re.sub(r"^(static inline|static|inline) ", "", statement)
        if not statement:
            continue
        match = re.match(r"^typedef (struct|union|enum) (\w+) \{(.*)\} (\w+)$", statement)
        if match:
            kind, tag, body, name = match.groups()
            if kind == "struct":
                declarations.structs[name] = declarations.structs[tag] = _c_members(body)
            else:
                declarations.typedefs[name] = kind
            if kind == "enum":                    # enumerators are constants, like macros
                declarations.constants.update(
                    item.split("=")[0].strip() for item in body.split(",") if item.strip())
            continue
        match = re.match(r"^typedef (struct|union|enum) (\w+) (\w+)$", statement)
        if match:
            declarations.structs.setdefault(match.group(3), None)
            continue
        match = re.match(r"^struct (\w+) \{(.*)\}$", statement)
        if match:
            declarations.structs[match.group(1)] = _c_members(match.group(2))
            continue
        if statement.startswith("typedef "):
            name, type_ = normalise_declarator(statement[len("typedef "):])
            declarations.typedefs[name] = type_
            continue
        if statement.startswith("extern "):
            name, type_ = normalise_declarator(statement[len("extern "):])
            declarations.variables[name] = type_
            continue
        match = re.match(r"^(.*?)\b(\w+) ?\((.*)\)$", statement)
        if match:
            returns, name, params = match.groups()
            declarations.functions[name] = normalise_function(returns, params)
    return declarations


# -------------------------------------------------------- Cython side --

def parse_pxd_blocks(path: str) -> Dict[str, Declarations]:
    """The declarations of every `cdef extern from "header"` block."""
    blocks: Dict[str, Declarations] = {}
    lines = open(path).read().splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r'^cdef extern from "([^"]+)"', lines[i])
        i += 1
        if not match:
            continue
        body = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
            body.append(lines[i])
            i += 1
        blocks[match.group(1)] = _parse_pxd_body(body)
    return blocks


def _logical_lines(body: List[str]) -> List[Tuple[int, str]]:
    """(indent, text) with comments dropped and parenthesised
    continuations joined."""
    out = []
    pending = None
    for raw in body:
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if pending is not None:
            pending = (pending[0], pending[1] + " " + line.strip())
        else:
            pending = (len(line) - len(line.lstrip()), line.strip())
        if pending[1].count("(") == pending[1].count(")"):
            out.append(pending)
            pending = None
    return out


def _parse_pxd_body(body: List[str]) -> Declarations:
    declarations = Declarations()
    lines = _logical_lines(body)
    base_indent = min((indent for indent, _ in lines), default=0)
    i = 0
    while i < len(lines):
        indent, text = lines[i]
        i += 1
        match = re.match(r"^(?:ctypedef |cpdef |cdef )?enum (\w+):$", text)
        if match:                                 # a named enum: its enumerators follow
            declarations.typedefs[match.group(1)] = "enum"
            while i < len(lines) and lines[i][0] > base_indent:
                declarations.variables[lines[i][1].split("=")[0].strip()] = "enumerator"
                i += 1
            continue
        match = re.match(r"^(?:ctypedef )?(?:struct|union) (\w+):$", text)
        if match:
            members: Dict[str, str] = {}
            opaque = False
            while i < len(lines) and lines[i][0] > base_indent:
                member = lines[i][1]
                i += 1
                if member == "pass":
                    opaque = True
                    continue
                name, type_ = normalise_declarator(member)
                members[name] = type_
            declarations.structs[match.group(1)] = None if opaque and not members else members
            continue
        if text.startswith("ctypedef "):
            name, type_ = normalise_declarator(text[len("ctypedef "):])
            declarations.typedefs[name] = type_
            continue
        match = re.match(r"^(.*?)\b(\w+) ?\((.*)\)(?: noexcept)?(?: nogil)?(?: except .*)?$", text)
        if match and "(*" not in text:
            returns, name, params = match.groups()
            declarations.functions[name] = normalise_function(returns, params)
            continue
        name, type_ = normalise_declarator(text)
        declarations.variables[name] = type_
    return declarations


# ------------------------------------------------------------ compare --

def mismatches(header: Declarations, pxd: Declarations, header_name: str) -> List[str]:
    problems = []
    for name, signature in pxd.functions.items():
        if name not in header.functions:
            problems.append(f"function {name}: declared in the .pxd, not in {header_name}")
        elif header.functions[name] != signature:
            problems.append(f"function {name}: .pxd says {signature}, "
                            f"{header_name} says {header.functions[name]}")
    for name, members in pxd.structs.items():
        if name not in header.structs:
            problems.append(f"struct {name}: declared in the .pxd, not in {header_name}")
            continue
        if members is None:
            continue                                      # opaque on the Cython side: fine
        c_members = header.structs[name]
        if c_members is None:
            problems.append(f"struct {name}: the .pxd declares members, {header_name} "
                            "keeps it opaque")
            continue
        for member, type_ in members.items():
            if member not in c_members:
                problems.append(f"struct {name}: member {member} is not in {header_name}")
            elif c_members[member] != type_:
                problems.append(f"struct {name}: member {member} is {type_} in the .pxd, "
                                f"{c_members[member]} in {header_name}")
    for name, type_ in pxd.typedefs.items():
        if name in header.typedefs:
            if header.typedefs[name] != type_:
                problems.append(f"typedef {name}: .pxd says {type_}, "
                                f"{header_name} says {header.typedefs[name]}")
        elif name not in header.structs:
            problems.append(f"typedef {name}: declared in the .pxd, not in {header_name}")
    for name, type_ in pxd.variables.items():
        if name in header.variables:
            if header.variables[name] != type_:
                problems.append(f"variable {name}: .pxd says {type_}, "
                                f"{header_name} says {header.variables[name]}")
        elif name not in header.constants:                # a macro's type is not checked
            problems.append(f"{name}: declared in the .pxd, neither a variable nor a "
                            f"constant of {header_name}")
    return problems


@pytest.mark.parametrize("header_name", sorted(HEADERS))
def test_pxd_matches_header(header_name):
    blocks = parse_pxd_blocks(PXD)
    assert header_name in blocks, f"the .pxd has no cdef extern block for {header_name}"
    pxd = blocks[header_name]
    header = parse_c_header(HEADERS[header_name])
    # the parsers must have understood both sides, or an empty comparison passes
    assert pxd.functions and header.functions and pxd.structs and header.structs
    problems = mismatches(header, pxd, header_name)
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_divergence():
    """The comparison itself: each kind of drift is reported by name."""
    header = Declarations(
        functions={"f": normalise_function("int", "piocp_file fd, const struct sockaddr *a")},
        structs={"s": {"fd": "piocp_file", "cb": normalise_declarator("void (*cb)(void *u)")[1]},
                 "o": None},
        typedefs={"piocp_file": "int"},
        variables={"v": "const s"},
        constants={"M"})
    same = Declarations(
        functions={"f": normalise_function("int", "piocp_file f, const sockaddr *addr")},
        structs={"s": {"fd": "piocp_file",
                       "cb": normalise_declarator("void (*cb)(void *x) noexcept nogil")[1]},
                 "o": None},
        typedefs={"piocp_file": "int"}, variables={"v": "const s", "M": "uint64_t"})
    assert mismatches(header, same, "h") == []
    drifted = Declarations(
        functions={"f": normalise_function("int", "int fd, const sockaddr *addr"),
                   "gone": "void()"},
        structs={"s": {"fd": "int", "cb": "void(*)()", "extra": "int"}, "o": {"x": "int"}},
        typedefs={"piocp_file": "long"}, variables={"v": "s", "N": "int"})
    problems = "\n".join(mismatches(header, drifted, "h"))
    for expected in ("function f:", "function gone:", "member fd is int",
                     "member cb is void(*)()", "member extra is not", "struct o:",
                     "typedef piocp_file:", "variable v:", "N: declared"):
        assert expected in problems, problems
