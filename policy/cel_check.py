"""A small type checker for rule expressions over cel-python's parse tree.

cel-go, which the original used, type-checks an expression against its declared variables at
compile time; cel-python only parses. Without a check, ``history.burst_exec > 3`` (a bool
compared with an int) quietly evaluates, ``capability.dangerous_count == true`` is an evaluation
error at every event (no match, counted), and ``execution.memfd_exec`` (a field that does not
exist) never matches: each a rule that silently never fires. :func:`check_types` walks the tree
once and returns one message per problem; ``policy.schema`` makes them errors naming the rule.

Types are CEL's: bool, int, uint, double, string, bytes, null, list, map, plus ``dyn`` for
anything the checker cannot know (a macro's loop variable, a function it does not model). A
``dyn`` operand is accepted everywhere, so the checker never rejects what it does not understand.
cel-python has no implicit numeric conversion (``1 < 1.5`` is an evaluation error), so numeric
operands must have the same type too.
"""

from __future__ import annotations

import difflib
from lark import Token, Tree

__all__ = ["check_types"]

DYN, BOOL, INT, UINT, DOUBLE, STRING, BYTES, NULL, LIST, MAP = (
    "dyn", "bool", "int", "uint", "double", "string", "bytes", "null", "list", "map")
_NUMERIC = frozenset({INT, UINT, DOUBLE})
_ORDERED = _NUMERIC | {STRING, BYTES, BOOL}
_LITERALS = {"INT_LIT": INT, "UINT_LIT": UINT, "FLOAT_LIT": DOUBLE, "STRING_LIT": STRING,
             "MLSTRING_LIT": STRING, "BYTES_LIT": BYTES, "BOOL_LIT": BOOL, "NULL_LIT": NULL}
_FUNCTIONS = {"size": INT, "int": INT, "uint": UINT, "double": DOUBLE, "string": STRING,
              "bytes": BYTES, "has": BOOL, "matches": BOOL, "bool": BOOL}
_METHODS = {"contains": BOOL, "startsWith": BOOL, "endsWith": BOOL, "matches": BOOL, "size": INT,
            "all": BOOL, "exists": BOOL, "exists_one": BOOL, "map": LIST, "filter": LIST}
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_RELATIONS = {"relation_lt": "<", "relation_le": "<=", "relation_gt": ">", "relation_ge": ">=",
              "relation_eq": "==", "relation_ne": "!=", "relation_in": "in"}
_ARITHMETIC = {"addition_add": "+", "addition_sub": "-", "multiplication_mul": "*",
               "multiplication_div": "/", "multiplication_mod": "%"}

Typed = tuple[str, str]          # (type, how to name the operand in a message)


def _a(t: str) -> str:
    return "an int" if t == INT else f"a {t}"


class _Checker:
    def __init__(self, features: dict[str, dict[str, str]]) -> None:
        self.features = features
        self.bound: set[str] = set()
        self.errors: list[str] = []
        self.all_fields = [f"{g}.{f}" for g, fs in features.items() for f in fs]

    # ---------------------------------------------------------------- dispatch

    def check(self, t: Tree | Token) -> Typed:
        if isinstance(t, Token):
            return DYN, str(t)
        handler = getattr(self, "_" + t.data, None)
        if handler is not None:
            return handler(t)
        if len(t.children) == 1:            # pass-through levels (addition, multiplication, ...)
            return self.check(t.children[0])
        for child in t.children:
            self.check(child)
        return DYN, "an expression"

    def _expr(self, t: Tree) -> Typed:
        if len(t.children) == 1:
            return self.check(t.children[0])
        cond, then, other = (self.check(c) for c in t.children)
        self._want_bool(cond, "the condition of ?:")
        if DYN not in (then[0], other[0]) and then[0] != other[0] and NULL not in (then[0], other[0]):
            self.errors.append(f"?: gives {_a(then[0])} ({then[1]}) or {_a(other[0])} ({other[1]})")
            return DYN, "a ?: expression"
        return (then[0] if then[0] != DYN else other[0]), "a ?: expression"

    def _conditionalor(self, t: Tree) -> Typed:
        return self._logic(t, "||")

    def _conditionaland(self, t: Tree) -> Typed:
        return self._logic(t, "&&")

    def _logic(self, t: Tree, op: str) -> Typed:
        if len(t.children) == 1:
            return self.check(t.children[0])
        for side in (self.check(c) for c in t.children):
            self._want_bool(side, f"{op}")
        return BOOL, f"a {op} expression"

    def _want_bool(self, side: Typed, where: str) -> None:
        if side[0] not in (BOOL, DYN):
            self.errors.append(f"{where} needs a bool, but {side[1]} is {_a(side[0])}")

    # ---------------------------------------------------------------- operators

    def _operands(self, t: Tree, names: dict[str, str]) -> tuple[str, Typed, Typed]:
        """A binary node's operator (its name in ``names``) and its two sides, checked. The
        grammar nests the left side inside the operator's node."""
        op_node, right_node = t.children
        return names.get(op_node.data, "?"), self.check(op_node.children[0]), self.check(right_node)

    def _relation(self, t: Tree) -> Typed:
        if len(t.children) == 1:
            return self.check(t.children[0])
        op, left, right = self._operands(t, _RELATIONS)
        if op == "in":
            if right[0] not in (LIST, MAP, DYN):
                self.errors.append(f"'in' needs a list or map on its right, but {right[1]} is {_a(right[0])}")
            return BOOL, "an 'in' test"
        lt, rt = left[0], right[0]
        if DYN in (lt, rt) or (op in ("==", "!=") and NULL in (lt, rt)):
            return BOOL, "a comparison"
        if lt != rt or (op not in ("==", "!=") and lt not in _ORDERED):
            self.errors.append(f"compares {left[1]} ({_a(lt)}) with {right[1]} ({_a(rt)}) using "
                               f"'{op}'; both sides must have the same type")
        return BOOL, "a comparison"

    def _addition(self, t: Tree) -> Typed:
        return self._arithmetic(t)

    def _multiplication(self, t: Tree) -> Typed:
        return self._arithmetic(t)

    def _arithmetic(self, t: Tree) -> Typed:
        if len(t.children) == 1:
            return self.check(t.children[0])
        op, left, right = self._operands(t, _ARITHMETIC)
        if DYN in (left[0], right[0]):
            return DYN, "an arithmetic expression"
        allowed = _NUMERIC | ({STRING, BYTES, LIST} if op == "+" else set())
        if left[0] != right[0] or left[0] not in allowed:
            self.errors.append(f"'{op}' of {left[1]} ({_a(left[0])}) and {right[1]} ({_a(right[0])})"
                               " is not defined")
            return DYN, "an arithmetic expression"
        return left[0], "an arithmetic expression"

    def _unary(self, t: Tree) -> Typed:
        if len(t.children) == 1:
            return self.check(t.children[0])
        op, operand = t.children[0], self.check(t.children[1])
        if op.data == "unary_not":
            self._want_bool(operand, "'!'")
            return BOOL, "a negation"
        if operand[0] not in _NUMERIC | {DYN}:
            self.errors.append(f"'-' needs a number, but {operand[1]} is {_a(operand[0])}")
        return operand[0], "a negated number"

    # ---------------------------------------------------------------- members and primaries

    def _group(self, t: Tree) -> str | None:
        """The feature group ``t`` (a member) names, if it is one bare identifier."""
        if t.data == "member" and len(t.children) == 1:
            t = t.children[0]
        if isinstance(t, Tree) and t.data == "primary" and isinstance(t.children[0], Tree) \
                and t.children[0].data == "ident":
            name = str(t.children[0].children[0])
            if name in self.features and name not in self.bound:
                return name
        return None

    def field(self, group: str, name: str) -> Typed:
        fields = self.features[group]
        if name in fields:
            return fields[name], f"{group}.{name}"
        close = difflib.get_close_matches(f"{group}.{name}", self.all_fields, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        self.errors.append(f"names {group}.{name}, which is not a context field{hint}; "
                           f"{group} has: {', '.join(fields)}")
        return DYN, f"{group}.{name}"

    def _member_dot(self, t: Tree) -> Typed:
        base, name = t.children
        group = self._group(base)
        if group is not None:
            return self.field(group, str(name))
        btype = self.check(base)
        if btype[0] not in (MAP, DYN):
            self.errors.append(f"selects .{name} of {btype[1]}, which is {_a(btype[0])}")
        return DYN, f"{btype[1]}.{name}"

    def _member_index(self, t: Tree) -> Typed:
        base, index = t.children
        group = self._group(base)
        key = self._string_literal(index)
        if group is not None and key is not None:
            return self.field(group, key)
        btype, itype = self.check(base), self.check(index)
        if btype[0] not in (LIST, MAP, DYN, STRING, BYTES):
            self.errors.append(f"indexes {btype[1]}, which is {_a(btype[0])}")
        return DYN, "an indexed value"

    def _member_dot_arg(self, t: Tree) -> Typed:
        base, name = t.children[0], str(t.children[1])
        args = t.children[2].children if len(t.children) > 2 and isinstance(t.children[2], Tree) else []
        receiver = self.check(base)
        if receiver[0] in (BOOL, INT, UINT, DOUBLE, NULL):
            self.errors.append(f"calls .{name}() on {receiver[1]}, which is {_a(receiver[0])}")
        if name in _MACROS and args:
            var = self._bound_var(args[0])
            added = var is not None and var not in self.bound
            if added:
                self.bound.add(var)
            for a in args[1:]:
                self.check(a)
            if added:
                self.bound.discard(var)
        else:
            for a in args:
                self.check(a)
        return _METHODS.get(name, DYN), f".{name}()"

    def _bound_var(self, t: Tree) -> str | None:
        first = next((s for s in t.iter_subtrees_topdown() if s.data == "ident"), None)
        return str(first.children[0]) if first is not None else None

    def _string_literal(self, t: Tree | Token) -> str | None:
        """The text of ``t`` when it is nothing but one (plain) string literal."""
        while isinstance(t, Tree) and len(t.children) == 1 and t.data != "literal":
            t = t.children[0]
        if not isinstance(t, Tree) or t.data != "literal" or not isinstance(t.children[0], Token):
            return None
        tok = t.children[0]
        raw = str(tok)
        if tok.type != "STRING_LIT" or raw[:1] not in "\"'" or "\\" in raw:
            return None
        return raw[1:-1]

    def _literal(self, t: Tree) -> Typed:
        tok = t.children[0]
        kind = _LITERALS.get(tok.type, DYN) if isinstance(tok, Token) else DYN
        return kind, str(tok)

    def _ident(self, t: Tree) -> Typed:
        name = str(t.children[0])
        if name in self.bound:
            return DYN, name
        if name == "session_id":
            return INT, name
        if name in self.features:
            return MAP, name
        return DYN, name

    def _paren_expr(self, t: Tree) -> Typed:
        return self.check(t.children[0])

    def _list_lit(self, t: Tree) -> Typed:
        for c in t.children:
            self.check(c)
        return LIST, "a list"

    def _map_lit(self, t: Tree) -> Typed:
        for c in t.children:
            self.check(c)
        return MAP, "a map"

    def _exprlist(self, t: Tree) -> Typed:
        for c in t.children:
            self.check(c)
        return DYN, "a list of expressions"

    def _ident_arg(self, t: Tree) -> Typed:
        name = str(t.children[0])
        args = t.children[1].children if len(t.children) > 1 and isinstance(t.children[1], Tree) else []
        for a in args:
            self.check(a)
        return _FUNCTIONS.get(name, DYN), f"{name}()"


def check_types(tree: Tree, features: dict[str, dict[str, str]]) -> list[str]:
    """Problems of one parsed expression: unknown context fields, operands of the wrong type, and
    a result that is not a bool (a rule matches only when its expression is exactly true)."""
    checker = _Checker(features)
    result = checker.check(tree)
    if result[0] not in (BOOL, DYN):
        checker.errors.append(f"is {_a(result[0])} ({result[1]}), but a rule matches only when its "
                              "expression is true: compare it (e.g. >= 1)")
    return list(dict.fromkeys(checker.errors))
