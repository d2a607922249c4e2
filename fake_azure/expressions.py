"""A parser and evaluator for the expression syntax shared by ARM templates (``"[concat(...)]"``) and the
Logic Apps Workflow Definition Language (``"@body('X')?['data']"``, ``"text @{expr} text"``).

Grammar (the subset both languages share; Learn ``azure-resource-manager/templates/template-expressions`` and
``logic-apps/logic-apps-workflow-definition-language``, "Expressions"):

    expr     := primary accessor*
    primary  := string | number | true | false | null | name '(' [expr (',' expr)*] ')'
    accessor := '.' name | '[' expr ']' | '?' '[' expr ']' | '?' '.' name

Strings are single-quoted, a doubled quote escapes one. ``?[...]`` and ``?.`` are null-safe (WDL); a plain
``[...]`` on a missing key raises :class:`ExpressionError`, as Logic Apps fails the action ("The template language
expression ... cannot be evaluated because property ... doesn't exist"). Functions are supplied by the caller as a
dict name -> callable; a name not in it is an error (unknown functions must not pass silently).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_$][A-Za-z0-9_$]*)|(?P<op>\?\[|\?\.|[()\[\],.]))")


class ExpressionError(Exception):
    """An expression that does not parse or cannot be evaluated."""


@dataclass
class Call:
    name: str
    args: List[Any]


@dataclass
class Literal:
    value: Any


@dataclass
class Access:
    target: Any
    key: Any  # a node
    safe: bool


def _tokens(text: str) -> List[Tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot parse {text!r} at {pos}: {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> Tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self, value: str = "") -> Tuple[str, str]:
        tok = self.peek()
        if value and tok[1] != value:
            raise ExpressionError(f"expected {value!r} in {self.text!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        node = self.expr()
        if self.peek()[0] != "end":
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")
        return node

    def expr(self) -> Any:
        node = self.primary()
        while True:
            kind, tok = self.peek()
            if tok in ("[", "?["):
                self.take()
                key = self.expr()
                self.take("]")
                node = Access(node, key, tok == "?[")
            elif tok in (".", "?."):
                self.take()
                _, name = self.take()
                node = Access(node, Literal(name), tok == "?.")
            else:
                return node

    def primary(self) -> Any:
        kind, tok = self.take()
        if kind == "str":
            return Literal(tok[1:-1].replace("''", "'"))
        if kind == "num":
            return Literal(float(tok) if "." in tok else int(tok))
        if kind == "name":
            if tok in ("true", "false", "null") and self.peek()[1] != "(":
                return Literal({"true": True, "false": False, "null": None}[tok])
            self.take("(")
            args = []
            if self.peek()[1] != ")":
                args.append(self.expr())
                while self.peek()[1] == ",":
                    self.take()
                    args.append(self.expr())
            self.take(")")
            return Call(tok, args)
        raise ExpressionError(f"unexpected {tok!r} in {self.text!r}")


def parse(text: str) -> Any:
    """The syntax tree of one expression (without its ``@`` or brackets)."""
    return _Parser(text).parse()


def evaluate(node: Any, functions: Dict[str, Callable[..., Any]]) -> Any:
    """Evaluate a tree from :func:`parse` with ``functions`` (case-insensitive names, as both languages)."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Call):
        fn = functions.get(node.name.lower())
        if fn is None:
            raise ExpressionError(f"the function '{node.name}' is not supported here")
        return fn(*[evaluate(a, functions) for a in node.args])
    if isinstance(node, Access):
        target = evaluate(node.target, functions)
        key = evaluate(node.key, functions)
        if target is None:
            if node.safe:
                return None
            raise ExpressionError(f"cannot select {key!r} of null")
        if isinstance(target, list) and isinstance(key, int):
            if 0 <= key < len(target):
                return target[key]
        elif isinstance(target, dict):
            for k, v in target.items():  # property names are case-insensitive in both languages
                if isinstance(key, str) and k.lower() == key.lower():
                    return v
        if node.safe:
            return None
        raise ExpressionError(f"property {key!r} does not exist")
    raise ExpressionError(f"not an expression node: {node!r}")
