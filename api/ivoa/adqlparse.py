"""Reading an ADQL query safely: the limits checked before parsing, and queryparser's ADQL
grammar run in SLL prediction mode.

The grammar's default (full-context) prediction takes seconds on a long chain of ORs and
deep nesting crashes it; SLL parses the same queries in milliseconds, and the limits bound
what is left. Errors name the line and column, and never carry a Python traceback.
"""

from __future__ import annotations

import re
import threading

import antlr4
from antlr4.atn.PredictionMode import PredictionMode
from antlr4.error.ErrorListener import ErrorListener
from antlr4.ListTokenSource import ListTokenSource
from antlr4.Token import CommonToken
from queryparser.adql import adqltranslator
from queryparser.adql.ADQLLexer import ADQLLexer as L
from queryparser.adql.ADQLParser import ADQLParser as P

MAX_CHARACTERS = 20_000
MAX_NESTING = 32  # parentheses: bounds the parser's recursion and the SQL writer's
# Words, numbers and symbols: parsing time grows faster than the query (a FROM list of a
# thousand tables takes seconds, under the lock every parse in the process waits on).
MAX_TOKENS = 2500

_EXPONENT = re.compile(r"\d+[eE][+-]?\d+")
# ANTLR's Python runtime shares its prediction cache between parsers, without a lock.
_PARSING = threading.Lock()


def _no_eval(*_args, **_kwargs):
    raise NameError("eval is disabled")


# queryparser's translator evaluates geometry arguments with eval(). Nothing here calls it,
# but any code in this process that does gets a NameError, which it takes for a column name.
adqltranslator.eval = _no_eval


class AdqlError(ValueError):
    """A query the service refuses; str(error) is the message for the user (no SQL internals leaked, no Python traceback)."""


class _Refuse(ErrorListener):
    """Turns the first lexer or parser error into an AdqlError naming where and what."""

    def __init__(self, length: int):
        self.length = length

    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):
        if offendingSymbol is None:  # the lexer: msg is "token recognition error at: '...'"
            near = msg.rpartition(": ")[2]
        elif offendingSymbol.type == antlr4.Token.EOF or offendingSymbol.start >= self.length:
            raise AdqlError("syntax error: the query ends too early") from None
        else:
            near = repr(offendingSymbol.text)
        raise AdqlError(f"syntax error at line {line}, column {column + 1}, near {near}") from None


def parse(adql: str):
    """The parse tree of `adql` (its `query` rule), or AdqlError."""
    if len(adql) > MAX_CHARACTERS:
        raise AdqlError(f"the query is longer than the limit of {MAX_CHARACTERS} characters")
    if "\x00" in adql:
        raise AdqlError("the query contains a NUL character")
    try:
        adql.encode("utf-8")
    except UnicodeEncodeError:
        raise AdqlError("the query is not valid Unicode text") from None
    refuse = _Refuse(len(adql))
    with _PARSING:
        lexer = L(antlr4.InputStream(adql))
        lexer.removeErrorListeners()
        lexer.addErrorListener(refuse)
        tokens = _check_tokens(lexer.getAllTokens(), len(adql))
        parser = P(antlr4.CommonTokenStream(ListTokenSource(tokens)))
        parser.removeErrorListeners()
        parser.addErrorListener(refuse)
        # The default (full-context) prediction takes seconds on a long chain of ORs.
        parser._interp.predictionMode = PredictionMode.SLL
        return parser.query()


def _check_tokens(tokens: list, length: int) -> list:
    """The tokens, ending in the one semicolon the grammar wants, within the nesting limit."""
    tokens = _join_exponents(tokens)
    visible = [t for t in tokens if t.channel == antlr4.Token.DEFAULT_CHANNEL]
    if not visible:
        raise AdqlError("the query is empty")
    for token in visible[:-1]:
        if token.type == L.SEMI:
            raise AdqlError(f"only one statement is allowed: ';' at line {token.line}, column {token.column + 1}")
    depth = unary = 0  # ~~~x nests like parentheses
    for token in visible:
        depth += {L.LPAREN: 1, L.RPAREN: -1}.get(token.type, 0)
        unary = unary + 1 if token.type == L.TILDE else 0
        if depth + unary > MAX_NESTING:
            raise AdqlError(f"the query nests parentheses (or ~) deeper than the limit of {MAX_NESTING} "
                            f"(line {token.line}, column {token.column + 1})")
    if len(visible) > MAX_TOKENS:
        raise AdqlError(f"the query has more than the limit of {MAX_TOKENS} names, numbers and symbols")
    if visible[-1].type != L.SEMI:
        end = CommonToken(visible[-1].source, L.SEMI)
        end.text, end.start, end.stop = ";", length, length
        end.line, end.column = visible[-1].line, visible[-1].column + len(visible[-1].text)
        tokens = tokens + [end]
    return tokens


def _join_exponents(tokens: list) -> list:
    """1e-3 and 1E3 as one number: the lexer knows exponents only after a decimal point."""
    joined, i = [], 0
    while i < len(tokens):
        for width in (4, 2):
            group = tokens[i:i + width]
            if (tokens[i].type == L.INT and len(group) == width
                    and all(a.stop + 1 == b.start for a, b in zip(group, group[1:]))
                    and _EXPONENT.fullmatch("".join(t.text for t in group))):
                number = tokens[i].clone()
                number.type, number.text, number.stop = L.REAL, "".join(t.text for t in group), group[-1].stop
                joined.append(number)
                i += width
                break
        else:
            joined.append(tokens[i])
            i += 1
    return joined
