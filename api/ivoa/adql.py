"""ADQL to PostgreSQL with pg_sphere: the gate between strangers' queries and the database.

adqlparse.py parses the query within its limits; the SQL is then written here, node by node,
never copied from the query's text. Every table, column and function must be on an
allow-list, identifiers are quoted anew, literals rebuilt, and any token this module does
not know stops the translation. queryparser's own translator is not used: it evaluates
geometry arguments with Python's eval and rejoins tokens by text replacement.

The SQL keeps % as itself (LIKE patterns, modulo): run it without query parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

from antlr4.tree.Tree import TerminalNode
from queryparser.adql.ADQLLexer import ADQLLexer as L
from queryparser.adql.ADQLParser import ADQLParser as P
from sqlalchemy.dialects import postgresql

from .adqlparse import MAX_CHARACTERS, MAX_NESTING, AdqlError, parse

__all__ = ["AdqlError", "MAX_CHARACTERS", "MAX_NESTING", "Published", "translate"]

# ADQL schemas that PostgreSQL names differently (migration 0007: a schema named like the
# ADQL role's login would come first in its search path).
SQL_SCHEMAS = {"archive": "archive_tap"}
# Published views with a hidden GiST-indexed spoint of two of their columns: POINT of those
# columns becomes that column, so that cones on the view use the index.
INDEXED_POINTS = {"ivoa.obscore": ("s_ra", "s_dec"), "archive.files": ("ra", "dec")}
INDEXED_POINT_COLUMN = "archive_point"
# Published footprint columns (pg_sphere polygons) and the views' hidden GiST-indexed circle
# that holds each one (migration 0009): a condition on a footprint asks the circle first, so
# the index answers it, then the polygon.
INDEXED_REGIONS = {"ivoa.obscore": "s_region", "archive.files": "footprint"}
INDEXED_REGION_CIRCLE = "archive_circle"

_quote = postgresql.dialect().identifier_preparer.quote
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Published:
    """What queries may read: {qualified lower-case table name: tuple of lower-case column names}."""
    tables: Mapping[str, tuple[str, ...]]


def translate(adql: str, published: Published) -> str:
    """PostgreSQL for one ADQL SELECT, or AdqlError. No trailing semicolon."""
    try:
        tree = parse(adql)
        return _Writer(published, adql).emit(tree.query_expression())
    except AdqlError:
        raise
    except RecursionError:
        raise AdqlError("could not translate this query: it nests too deeply") from None
    except Exception as error:  # a fault of the parser or of this module, not of the user
        raise AdqlError(f"could not translate this query: internal error ({type(error).__name__})") from None


# --- the parse tree --------------------------------------------------------------------

def _collapse(node):
    """`node` or the first node below it that has a handler or more than one child."""
    while not isinstance(node, TerminalNode) and type(node) not in _HANDLERS and node.getChildCount() == 1:
        node = node.children[0]
    return node


def _children(node) -> list:
    """The children of `node`, with left recursion (a OR b OR c as ((a OR b) OR c)) flattened."""
    tails = []
    while node.getChildCount() > 1 and type(node.children[0]) is type(node):
        tails.append(node.children[1:])
        node = node.children[0]
    if not tails:
        return list(node.children or ())
    flat = [node]
    for tail in reversed(tails):
        flat.extend(tail)
    return flat


def _join(parts) -> str:
    """SQL pieces separated by spaces, except after '(', before ',' and ')', and in f(x)."""
    sql = ""
    for part in parts:
        call = part == "(" and sql.rpartition(" ")[2] in _CALLS
        if sql and not sql.endswith("(") and part not in (",", ")") and not call:
            sql += " "
        sql += part
    return sql


def _number(text: str) -> str:
    if not _NUMBER.fullmatch(text):
        raise AdqlError(f"{text!r} is not a number")
    return text


def _string(token_text: str) -> str:
    """A PostgreSQL literal for an ADQL one: an E'' form for backslashes, whatever the
    server's standard_conforming_strings says."""
    value = token_text[1:-1].replace("''", "'")
    if "\\" in value:
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + value.replace("'", "''") + "'"


# Tokens that reach SQL as they are (keywords in capitals); any other stops the translation.
_TOKENS = {getattr(L, name): name for name in (
    "DISTINCT ALL FROM WHERE GROUP BY HAVING ORDER ASC DESC AND OR NOT IS NULL IN EXISTS BETWEEN "
    "LIKE ILIKE TRUE FALSE JOIN INNER LEFT RIGHT FULL OUTER ON "
    "COUNT AVG MIN MAX SUM LOWER ACOS ASIN ATAN ATAN2 COS COT SIN TAN").split()}
_TOKENS.update({L.LPAREN: "(", L.RPAREN: ")", L.COMMA: ",", L.ASTERISK: "*", L.PLUS: "+", L.MINUS: "-",
                L.SOLIDUS: "/", L.MOD_SYM: "%", L.CONCAT: "||", L.EQ: "=", L.NOT_EQ: "<>", L.LTH: "<",
                L.GTH: ">", L.LEET: "<=", L.GRET: ">=", L.AMPERSAND: "&", L.VERTBAR: "|", L.TILDE: "~",
                L.CIRCUMFLEX: "#"})  # ADQL's bitwise xor is PostgreSQL's #

_CALLS = {"COUNT", "AVG", "MIN", "MAX", "SUM", "LOWER", "ACOS", "ASIN", "ATAN", "ATAN2", "COS", "COT", "SIN", "TAN"}
_MATH = {"LOG": "ln", "LOG10": "log"}  # ADQL's LOG is the natural one
_ROUNDING = {"ROUND": "round", "TRUNCATE": "trunc"}  # PostgreSQL has them with digits for numeric only
_GEOMETRY_NAMES = {P.PointContext: "point", P.CircleContext: "circle", P.BoxContext: "box",
                   P.PolygonContext: "polygon", P.DistanceContext: "distance", P.AreaContext: "area",
                   P.ContainsContext: "contains", P.IntersectsContext: "intersects"}
# What a geometry argument may hold: numbers, columns and arithmetic.
_ARITHMETIC = (P.Numeric_value_expressionContext, P.TermContext, P.FactorContext, P.SignContext,
               P.Numeric_primaryContext, P.Value_expression_primaryContext, P.Value_expressionContext,
               P.String_value_expressionContext, P.Character_value_expressionContext,
               P.Unsigned_value_specificationContext, P.Unsigned_literalContext, P.Unsigned_numeric_literalContext,
               P.Exact_numeric_literalContext, P.Approximate_numeric_literalContext, P.Unsigned_decimalContext,
               P.Unsigned_hexadecimalContext, P.Coordinate1Context, P.Coordinate2Context, P.RadiusContext)
_ARITHMETIC_TOKENS = {L.PLUS, L.MINUS, L.ASTERISK, L.SOLIDUS, L.LPAREN, L.RPAREN, L.INT, L.REAL, L.HEX_DIGIT, L.DOT}


@dataclass
class _Source:
    """A table in a FROM clause: the qualifiers the query may use, the one SQL uses."""
    names: set[tuple[str, ...]]
    sql: str
    columns: tuple[str, ...]
    table: str | None  # the published table; None for a subquery


@dataclass
class _Scope:
    """One SELECT: its tables, and the names of its output columns once written."""
    sources: list[_Source] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


_HANDLERS: dict[type, Callable] = {}


def _handles(*contexts):
    def register(method):
        for context in contexts:
            _HANDLERS[context] = method
        return method
    return register


class _Writer:
    """Writes the SQL of one parse tree, refusing what is not published."""

    def __init__(self, published: Published, text: str):
        self.tables = {tuple(name.split(".", 1)): name for name in published.tables}
        self.columns = published.tables
        self.text = text
        self.scopes: list[_Scope] = []
        self.outputs: dict = {}  # select_query node: its output column names

    def emit(self, node) -> str:
        node = _collapse(node)
        if isinstance(node, TerminalNode):
            return self.token(node)
        handler = _HANDLERS.get(type(node))
        if handler is not None:
            return handler(self, node)
        return _join(self.emit(child) for child in _children(node))

    def token(self, node) -> str:
        token = node.symbol
        if token.type in _TOKENS:
            return _TOKENS[token.type]
        raise AdqlError(f"{token.text!r} is not supported here (line {token.line}, column {token.column + 1})")

    def source_text(self, node, limit: int = 60) -> str:
        text = self.text[node.start.start:node.stop.stop + 1]
        return text if len(text) <= limit else text[:limit] + "..."

    # names

    def name(self, node) -> str:
        """The name an identifier stands for: regular ones fold to lower case, delimited ones are exact."""
        text = node.getText()
        if not text.startswith('"'):
            return text.lower()
        name = text[1:-1]
        if not name or any(c == '"' or ord(c) < 32 for c in name):
            raise AdqlError(f"identifier {text} is empty or holds a quote or control character")
        return name

    def qualifier(self, node) -> tuple[str, ...]:
        child = node.children[0]
        if isinstance(child, P.Table_nameContext) and child.schema_name() is not None:
            return self.name(child.schema_name()), self.name(child.identifier())
        return (self.name(child),)

    def find_source(self, qualifier: tuple[str, ...], scopes) -> _Source | None:
        for scope in reversed(scopes):
            for source in scope.sources:
                if qualifier in source.names:
                    return source
        return None

    def resolve(self, node) -> tuple[str, _Source | None, str]:
        """SQL for a column reference, the source it belongs to (None when unsure) and its name."""
        name = self.name(node.column_name())
        if node.qualifier() is not None:
            qualifier = self.qualifier(node.qualifier())
            source = self.find_source(qualifier, self.scopes)
            if source is None:
                raise AdqlError(f"{'.'.join(qualifier)} is neither a table in FROM nor an alias of one")
            if name not in source.columns:
                raise AdqlError(f"column {name} is not published in {source.table or '.'.join(qualifier)}")
            return f"{source.sql}.{_quote(name)}", source, name
        for scope in reversed(self.scopes):
            matches = [source for source in scope.sources if name in source.columns]
            if len(matches) == 1:  # qualified, so that nothing hidden nearer can answer to the name
                return f"{matches[0].sql}.{_quote(name)}", matches[0], name
            if matches and scope is not self.scopes[-1]:
                raise AdqlError(f"column {name} is ambiguous here: qualify it with its table or alias")
            if matches:  # several tables of this SELECT: PostgreSQL merges them if joined by USING
                return _quote(name), None, name
        tables = ", ".join(s.table or "a subquery" for scope in self.scopes for s in scope.sources)
        raise AdqlError(f"column {name} is not published in {tables}")

    @_handles(P.Column_referenceContext)
    def column_reference(self, node) -> str:
        return self.resolve(node)[0]

    # queries

    @_handles(P.Query_expressionContext, P.Non_join_query_expressionContext, P.Query_termContext,
              P.Non_join_query_termContext)
    def query_expression(self, node) -> str:
        children = _children(node)
        if len(children) == 1:
            return self.emit(children[0])
        parts = []
        for child in children:
            if isinstance(child, TerminalNode) and child.symbol.type in (L.UNION, L.EXCEPT, L.ALL):
                parts.append(child.getText().upper())
            else:  # each branch in brackets, so that its TOP and ORDER BY stay its own
                parts.append(f"({self.emit(child)})")
        return " ".join(parts)

    @_handles(P.Select_queryContext)
    def select_query(self, node) -> str:
        self.scopes.append(_Scope())
        try:
            expression = node.table_expression()
            tables = self.emit(expression.from_clause())  # first: the select list refers to it
            parts = ["SELECT"]
            if node.set_quantifier() is not None:
                parts.append(self.emit(node.set_quantifier()))
            parts += [self.emit(node.select_list()), tables]
            parts += [self.emit(clause) for clause in (expression.where_clause(), expression.group_by_clause(),
                                                       expression.having_clause(), expression.order_by_clause())
                      if clause is not None]
            if node.set_limit() is not None:
                parts.append(f"LIMIT {int(node.set_limit().unsigned_decimal().getText())}")
            if expression.offset_clause() is not None:
                parts.append(f"OFFSET {int(expression.offset_clause().unsigned_decimal().getText())}")
            self.outputs[node] = self.scopes[-1].outputs
            return " ".join(parts)
        finally:
            self.scopes.pop()

    @_handles(P.Select_listContext)
    def select_list(self, node) -> str:
        parts = []
        for child in node.children:
            if isinstance(child, TerminalNode) and child.symbol.type == L.ASTERISK:
                parts.extend(self.star(None))
            elif not isinstance(child, TerminalNode):
                parts.append(self.emit(child))
        return ", ".join(parts)

    @_handles(P.Select_sublistContext)
    def select_sublist(self, node) -> str:
        if node.qualifier() is None:
            return self.emit(node.derived_column())
        return ", ".join(self.star(self.qualifier(node.qualifier())))

    def star(self, qualifier: tuple[str, ...] | None) -> list[str]:
        """`*` as the published columns (never the hidden point), in published order."""
        scope = self.scopes[-1]
        sources = scope.sources
        if qualifier is not None:
            source = self.find_source(qualifier, [scope])
            if source is None:
                raise AdqlError(f"{'.'.join(qualifier)}.* names no table in FROM")
            sources = [source]
        parts = []
        for source in sources:
            scope.outputs.extend(source.columns)
            if source.table is None:
                parts.append(f"{source.sql}.*")
            else:
                parts.extend(f"{source.sql}.{_quote(column)}" for column in source.columns)
        return parts

    @_handles(P.Derived_columnContext)
    def derived_column(self, node) -> str:
        value = node.value_expression()
        sql = self.emit(value)
        if node.as_clause() is not None:
            name = self.name(node.as_clause().column_name())
        else:  # name what PostgreSQL would call "?column?" or after an internal function
            inner = _collapse(value)
            name = _GEOMETRY_NAMES.get(type(inner))
            if isinstance(inner, P.User_defined_functionContext):
                name = inner.user_defined_function_name().getText().lower()
            if name is None:
                if isinstance(inner, P.Column_referenceContext):
                    self.scopes[-1].outputs.append(self.name(inner.column_name()))
                return sql
        self.scopes[-1].outputs.append(name)
        return f"{sql} AS {_quote(name)}"

    @_handles(P.Sort_keyContext)
    def sort_key(self, node) -> str:
        inner = _collapse(node.children[0])
        if (isinstance(inner, P.Column_referenceContext) and inner.qualifier() is None
                and self.name(inner.column_name()) in self.scopes[-1].outputs):
            return _quote(self.name(inner.column_name()))  # an output column, as ORDER BY allows
        return _join(self.emit(child) for child in node.children)

    # tables

    @_handles(P.Table_referenceContext, P.Joined_tableContext)
    def table_reference(self, node) -> str:
        first = node.children[0]
        if isinstance(first, P.Table_nameContext):
            return self.published_table(first, node.correlation_specification())
        if isinstance(first, P.Derived_tableContext):
            return self.derived_table(first, node.correlation_specification())
        return self.joins(_children(node))

    def joins(self, parts: list) -> str:
        """A chain of JOINs. Their columns are the published ones only: NATURAL becomes USING
        of the published columns both sides share (PostgreSQL would match hidden ones too)."""
        sources = self.scopes[-1].sources
        start = len(sources)
        sql, natural, sides = [self.emit(parts[0])], False, []
        for i, part in enumerate(parts[1:], 1):
            if isinstance(part, TerminalNode) and part.symbol.type == L.NATURAL:
                natural = True
            elif isinstance(part, P.Join_specificationContext):
                sql.append(self.join_specification(part, sides))
            elif isinstance(part, (P.Table_referenceContext, P.Joined_tableContext)):
                middle = len(sources)
                sql.append(self.emit(part))
                sides = [{c for s in side for c in s.columns} for side in (sources[start:middle], sources[middle:])]
                if natural:
                    shared = [c for s in sources[start:middle] for c in s.columns if c in sides[1]]
                    sql.append("USING (" + ", ".join(map(_quote, dict.fromkeys(shared))) + ")" if shared else "ON TRUE")
                    natural = False
                elif i + 1 == len(parts) or not isinstance(parts[i + 1], P.Join_specificationContext):
                    raise AdqlError("a JOIN needs ON or USING, or NATURAL")
            else:  # JOIN and its type
                sql.append(self.emit(part))
        return _join(sql)

    def join_specification(self, node, sides: list[set[str]]) -> str:
        using = node.named_columns_join()
        if using is None:
            return self.emit(node)  # ON a condition
        names = [self.name(c) for c in using.join_column_list().column_name_list().column_name()]
        for name in names:
            if not all(name in side for side in sides):
                raise AdqlError(f"column {name} in USING is not published on both sides of the JOIN")
        return "USING (" + ", ".join(map(_quote, names)) + ")"

    def published_table(self, node, correlation) -> str:
        parts = tuple(self.name(child) for child in (node.schema_name(), node.identifier()) if child is not None)
        table = self.tables.get(parts)
        if table is None:
            raise AdqlError(f"table {self.source_text(node)} is not published; the published tables are "
                            + ", ".join(sorted(self.columns)))
        schema, name = table.split(".", 1)
        sql = f"{_quote(SQL_SCHEMAS.get(schema, schema))}.{_quote(name)}"
        if correlation is None:
            self.scopes[-1].sources.append(_Source({(name,), (schema, name)}, sql, self.columns[table], table))
            return sql
        alias = self.name(correlation.correlation_name())
        self.scopes[-1].sources.append(_Source({(alias,)}, _quote(alias), self.columns[table], table))
        return f"{sql} AS {_quote(alias)}"

    def derived_table(self, node, correlation) -> str:
        sql = self.emit(node)
        first = _collapse(node.table_subquery().subquery().query_expression())
        while not isinstance(first, P.Select_queryContext):  # the first branch names the columns
            first = next(c for c in first.children if not isinstance(c, TerminalNode))
            first = _collapse(first)
        alias = self.name(correlation.correlation_name())
        self.scopes[-1].sources.append(_Source({(alias,)}, _quote(alias), tuple(self.outputs[first]), None))
        return f"{sql} AS {_quote(alias)}"

    # literals

    @_handles(P.Unsigned_decimalContext, P.Approximate_numeric_literalContext, P.Exact_numeric_literalContext)
    def number(self, node) -> str:
        return _number("".join(child.getText() for child in node.getChildren()))

    @_handles(P.Unsigned_hexadecimalContext)
    def hexadecimal(self, node) -> str:
        return str(int(node.getText(), 16))

    @_handles(P.Character_string_literalContext)
    def string(self, node) -> str:
        return _string(node.getText())

    # functions

    @_handles(P.Math_functionContext)
    def math_function(self, node) -> str:
        name = node.children[0].getText().upper()
        args = [self.emit(child) for child in node.children if not isinstance(child, TerminalNode)]
        if name == "RAND":
            if args:
                raise AdqlError("RAND with a seed is not supported")
            return "random()"
        if name in _ROUNDING and len(args) == 2:
            return f"{_ROUNDING[name]}(CAST({args[0]} AS NUMERIC), {args[1]})"
        if name == "MOD":
            return f"mod(CAST({args[0]} AS NUMERIC), CAST({args[1]} AS NUMERIC))"
        return f"{_MATH.get(name, _ROUNDING.get(name, name.lower()))}({', '.join(args)})"

    @_handles(P.User_defined_functionContext)
    def function(self, node) -> str:
        """The ADQL functions this grammar knows only by name: CENTROID, COORD1, COORD2, COORDSYS."""
        written = node.user_defined_function_name().getText()
        name = written.upper()
        params = node.user_defined_function_param()
        if name not in ("CENTROID", "COORD1", "COORD2", "COORDSYS"):
            raise AdqlError(f"function {written} is not supported: ADQL's functions only")
        if len(params) != 1:
            raise AdqlError(f"{name} takes one argument")
        if name == "CENTROID" and isinstance(_collapse(params[0]), (P.BoxContext, P.PolygonContext)):
            raise AdqlError("CENTROID is supported for circles only")
        arg = self.emit(params[0])
        return {"CENTROID": f"(@@ {arg})", "COORD1": f"DEGREES(long({arg}))", "COORD2": f"DEGREES(lat({arg}))",
                "COORDSYS": "'ICRS'"}[name]

    # geometry: pg_sphere works in radians, ADQL in degrees

    def frame(self, node) -> None:
        if node is None:
            return
        literal = _collapse(node)
        if not isinstance(literal, P.Character_string_literalContext):
            raise AdqlError(f"the coordinate system must be a string such as 'ICRS', not {self.source_text(node)}")
        frame = literal.getText()[1:-1].replace("''", "'")
        if frame.strip() and frame.split()[0].upper() != "ICRS":
            raise AdqlError(f"coordinate system {frame!r} is not supported: positions here are ICRS")

    def coordinate(self, node) -> str:
        """A geometry argument, which may be only numbers, published columns and arithmetic."""
        pending = [node]
        while pending:
            current = pending.pop()
            if isinstance(current, TerminalNode):
                allowed = current.symbol.type in _ARITHMETIC_TOKENS
            else:
                allowed = isinstance(current, _ARITHMETIC + (P.Column_referenceContext,))
                if not isinstance(current, P.Column_referenceContext):
                    pending.extend(current.getChildren())
            if not allowed:
                raise AdqlError("a geometry argument must be a number, a published column or arithmetic "
                                f"of those, not {self.source_text(node)}")
        return self.emit(node)

    def spoint(self, ra, dec) -> tuple[str, bool]:
        """SQL for the point (ra, dec) in degrees, and whether it is a table's indexed point."""
        columns = [_collapse(ra), _collapse(dec)]
        if all(isinstance(c, P.Column_referenceContext) for c in columns):
            (_, source, ra_name), (_, other, dec_name) = self.resolve(columns[0]), self.resolve(columns[1])
            if source is not None and source is other and INDEXED_POINTS.get(source.table) == (ra_name, dec_name):
                return f"{source.sql}.{INDEXED_POINT_COLUMN}", True
        return f"spoint(RADIANS({self.coordinate(ra)}), RADIANS({self.coordinate(dec)}))", False

    def point(self, node) -> tuple[str, bool]:
        self.frame(node.coord_sys())
        return self.spoint(node.coordinates().coordinate1(), node.coordinates().coordinate2())

    def point_value(self, node) -> tuple[str, bool]:
        """A point given as POINT(...), or any other point-valued expression."""
        inner = _collapse(node)
        if isinstance(inner, P.PointContext):
            return self.point(inner)
        return self.emit(node), False

    @_handles(P.PointContext)
    def point_sql(self, node) -> str:
        return self.point(node)[0]

    @_handles(P.CircleContext)
    def circle(self, node) -> str:
        self.frame(node.coord_sys())
        center = node.circle_center()
        if center.coordinates() is not None:
            point = self.spoint(center.coordinates().coordinate1(), center.coordinates().coordinate2())[0]
        else:
            point = self.point_value(center.coord_value())[0]
        return f"scircle({point}, RADIANS({self.coordinate(node.radius())}))"

    @_handles(P.BoxContext)
    def box(self, node) -> str:
        self.frame(node.coord_sys())
        ra, dec = (self.coordinate(c) for c in (node.coordinates().coordinate1(), node.coordinates().coordinate2()))
        width, height = (self.coordinate(c) for c in node.numeric_value_expression())
        return (f"sbox(spoint(RADIANS(({ra}) - ({width}) / 2.0), RADIANS(({dec}) - ({height}) / 2.0)), "
                f"spoint(RADIANS(({ra}) + ({width}) / 2.0), RADIANS(({dec}) + ({height}) / 2.0)))")

    @_handles(P.PolygonContext)
    def polygon(self, node) -> str:
        # pg_sphere 1.2 builds polygons from text only: the vertices must be numbers, written anew.
        self.frame(node.coord_sys())
        vertices = []
        for pair in node.coordinates():
            values = [self.literal_number(c) for c in (pair.coordinate1(), pair.coordinate2())]
            if None in values:
                raise AdqlError(f"POLYGON takes numbers only, not {self.source_text(pair)}")
            vertices.append("({!r}d, {!r}d)".format(*values))
        return "spoly '{" + ", ".join(vertices) + "}'"

    def literal_number(self, node) -> float | None:
        text = re.sub(r"\s+", "", self.source_text(node, limit=100))
        if not _NUMBER.fullmatch(text):
            return None
        value = float(text)
        return value if abs(value) < 1e300 else None

    def relation(self, node) -> str:
        """CONTAINS or INTERSECTS as a pg_sphere boolean, a footprint's circle asked first."""
        first, second = node.geometry_value_expression()
        a, b = self.emit(first), self.emit(second)
        if isinstance(node, P.ContainsContext):
            exact = f"{a} @ {b}"
        # pg_sphere has no spoint && scircle; a point intersects what contains it
        elif isinstance(_collapse(first), P.PointContext):
            exact = f"{a} @ {b}"
        elif isinstance(_collapse(second), P.PointContext):
            exact = f"{b} @ {a}"
        else:
            exact = f"{a} && {b}"
        # Either relation holds only where the footprint's circle meets the other shape.
        first_tests = [test for test in (self.circle_meets(first, second, b), self.circle_meets(second, first, a))
                       if test is not None]
        return "(" + " AND ".join(first_tests + [exact]) + ")" if first_tests else exact

    def region_circle(self, node) -> str | None:
        """The hidden circle about a published footprint column, or None for anything else."""
        column = _collapse(node)
        if isinstance(column, P.Column_referenceContext):
            _, source, name = self.resolve(column)
            if source is not None and INDEXED_REGIONS.get(source.table) == name:
                return f"{source.sql}.{INDEXED_REGION_CIRCLE}"
        return None

    def circle_meets(self, region, other, other_sql: str) -> str | None:
        """`region`'s circle meets `other` (SQL other_sql), when region is a footprint column
        and other a shape pg_sphere compares circles with; else None."""
        circle = self.region_circle(region)
        if circle is None:
            return None
        shape = _collapse(other)
        if isinstance(shape, P.PointContext):
            return f"{circle} @> {other_sql}"
        if isinstance(shape, (P.CircleContext, P.BoxContext, P.PolygonContext)) or self.region_circle(shape):
            return f"{circle} && {other_sql}"
        return None

    @_handles(P.Contains_predicateContext, P.Intersects_predicateContext)
    def geometry_predicate(self, node) -> str:
        function = node.contains() if isinstance(node, P.Contains_predicateContext) else node.intersects()
        value = node.INT().getText()
        if value not in ("0", "1"):
            raise AdqlError(f"{function.children[0].getText().upper()} can be compared with 0 or 1 only")
        sql = self.relation(function)
        return sql if value == "1" else f"NOT ({sql})"

    @_handles(P.ContainsContext, P.IntersectsContext)
    def geometry_function(self, node) -> str:
        return f"CAST(({self.relation(node)}) AS INTEGER)"

    def distance_points(self, node) -> list[tuple[str, bool]]:
        if node.coord_value():
            return [self.point_value(value) for value in node.coord_value()]
        ra1, dec1, ra2, dec2 = node.numeric_value_expression()
        return [self.spoint(ra1, dec1), self.spoint(ra2, dec2)]

    @_handles(P.DistanceContext)
    def distance(self, node) -> str:
        (a, _), (b, _) = self.distance_points(node)
        return f"DEGREES({a} <-> {b})"

    @_handles(P.AreaContext)
    def area(self, node) -> str:
        return f"DEGREES(DEGREES(area({self.emit(node.geometry_value_expression())})))"

    @_handles(P.Comparison_predicateContext)
    def comparison(self, node) -> str:
        """DISTANCE(p, q) < r on an indexed point as p @ scircle(q, r), which the index serves
        (the circle holds its rim: the two differ only on it)."""
        left, operator, right = node.children
        symbol = _collapse(operator).symbol.type
        distance, radius = {L.LTH: (left, right), L.LEET: (left, right),
                            L.GTH: (right, left), L.GRET: (right, left)}.get(symbol, (None, None))
        if distance is not None and isinstance(_collapse(distance), P.DistanceContext):
            bound = self.literal_number(radius)
            if bound is not None and 0 <= bound <= 90:  # pg_sphere's circles go up to 90 degrees
                (a, a_indexed), (b, b_indexed) = self.distance_points(_collapse(distance))
                if a_indexed or b_indexed:
                    point, center = (a, b) if a_indexed else (b, a)
                    return f"{point} @ scircle({center}, RADIANS({bound!r}))"
        return _join(self.emit(child) for child in node.children)

