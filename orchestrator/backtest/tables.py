"""Recorded files read through DuckDB: CSV, JSON/JSONL and Parquet, one file or a glob.

DuckDB parses the files, evaluates the source's SQL (`query`, `filter`, value and time
expressions) and hands numpy arrays back; hashpivot then checks every row and turns
local times into UTC. Each row keeps the file and the row it came from, so an error
names the file, the line and the column. Nothing is written to disk.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import numpy as np
import numpy.typing as npt

from orchestrator.errors import ConfigError, DataError
from orchestrator.models.sources import BUNDLED_PREFIX, TableSource

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

Format = Literal["csv", "jsonl", "json", "parquet"]
_SUFFIX: dict[str, Format] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_NUMERIC = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL",
}  # fmt: skip
_NAIVE_TIME = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATE"}
_MIN_TIME_S = -62135596800.0 + 86400.0  # 0001-01-02, so a zone offset stays in range
_MAX_TIME_S = 253402300799.0 - 86400.0


def resolve_path(path: str, base_dir: Path) -> Path:
    """A config path: `bundled:…` (shipped with hashpivot) or relative to the config file."""
    if path.startswith(BUNDLED_PREFIX):
        ref = resources.files("orchestrator") / "data" / path[len(BUNDLED_PREFIX) :]
        return Path(str(ref))
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def resolve_files(path: str, base_dir: Path, what: str) -> tuple[str, list[Path]]:
    """The files a source reads (a glob is expanded, sorted) and how to name them."""
    full = resolve_path(path, base_dir)
    if any(c in str(full) for c in "*?["):
        files = [Path(p) for p in sorted(glob.glob(str(full), recursive=True))]
        files = [p for p in files if p.is_file()]
        if not files:
            raise DataError(f"no file matches ({what})", source=str(full))
        return str(full), files
    if full.is_dir():
        raise DataError(f"a folder, not a file ({what}; a glob such as folder/*.csv reads "
                        "the files in it)", source=str(full))
    if not full.is_file():
        raise DataError(f"file not found ({what})", source=str(full))
    return str(full), [full]


def zone_of(name: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}", field=field) from None


def ident(name: str) -> str:
    """A column name quoted for SQL."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


#: Longest DuckDB message passed on (a bad row is quoted, cut to its first 120 characters).
_MESSAGE_CHARS = 500


def duck_message(exc: BaseException) -> str:
    """DuckDB's message on one line, without its hints (they name DuckDB's own options,
    which a site file cannot set): its first paragraph, or with a CSV error the row as
    read (after an unterminated quote, the rest of the file: its first line is kept) and
    the line after it, what is wrong with the row."""
    text = str(exc).strip()
    for hints in ("\nPossible fix", "\n\tCandidate functions:", "\nCandidate functions:",
                  " Candidate functions:"):
        if hints in text:
            text = text[: text.index(hints)]
    if "Original Line:" not in text:
        text = text.split("\n\n")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    quoted = next((k for k, line in enumerate(lines) if line.startswith("Original Line:")), -1)
    if quoted >= 0:
        row = lines[quoted].removeprefix("Original Line:").strip()
        row = row if len(row) <= 120 else row[:120] + "…"
        why = lines[-1] if len(lines) - 1 > quoted else ""
        lines = [*lines[:quoted], why, f"(the row as read: {row})"]
    message = " ".join(line for line in lines if line)
    return message if len(message) <= _MESSAGE_CHARS else message[:_MESSAGE_CHARS] + "…"


def one_select(sql: str, source: str, field: str) -> None:
    """Refuse SQL that is more than one SELECT: a site file's SQL reads its data, and never
    runs a second statement (writing a file, changing a setting)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ConfigError(duck_message(exc), source=source, field=field) from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ConfigError("must be one SQL expression or SELECT query", source=source,
                          field=field)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of a source after its query and filter: where each came from, and a database
    cursor holding them (view `rows`) for the caller's expressions."""

    name: str
    files: list[Path]
    fmt: Format
    con: duckdb.DuckDBPyConnection
    columns: dict[str, str]  # name -> DuckDB type, of the source (or query result)
    skip_rows: int
    located: bool  # rows carry __file and __row (not after a query that drops them)
    #: Stamps without a zone are wall time in a zone other than UTC (`timezone`).
    local_wall_time: bool = True
    #: Columns kept as text though mostly numbers, each with one of its other cells.
    text_in_numbers: dict[str, str] = field(default_factory=dict)
    _lines: dict[int, I64] = field(default_factory=dict, compare=False, repr=False)

    def where(self, file_idx: int, row: int) -> tuple[str, int | None, str]:
        """(file, line, note) of a data row, as the user sees it in the file."""
        if not self.located or row < 0:
            return self.name, None, " (in the query's result)" if row >= 0 else ""
        path = str(self.files[file_idx])
        if self.fmt in ("csv", "jsonl"):
            return path, self._line(file_idx, row), ""
        return path, None, f" (record {row + 1})"

    def _line(self, file_idx: int, row: int) -> int:
        """Line number of data row `row`: the reader skips blank lines, so they are counted
        here (on error paths only; each file's lines are numbered once)."""
        if file_idx not in self._lines:
            try:
                text = self.files[file_idx].read_bytes()
            except OSError:
                text = b""
            numbers = [i + 1 for i, line in enumerate(text.split(b"\n")) if line.strip()]
            header = 1 if self.fmt == "csv" else 0
            data = [n for n in numbers if n > self.skip_rows][header:]
            self._lines[file_idx] = np.array(data, dtype=np.int64)
        lines = self._lines[file_idx]
        if row < lines.shape[0]:
            return int(lines[row])
        return row + 1 + (1 + self.skip_rows if self.fmt == "csv" else 0)

    def require(self, column: str, field: str) -> None:
        if column in self.columns:
            return
        shown = ", ".join(c for c in self.columns if not c.startswith("__")) or "nothing"
        path, line = (str(self.files[0]), 1) if len(self.files) == 1 else (self.name, None)
        if self.fmt != "csv":
            line = None
        raise DataError(f"missing column (has {shown}; {field})", source=path, line=line,
                        column=column)  # fmt: skip

    def close(self) -> None:
        self.con.close()


_DB: dict[int, duckdb.DuckDBPyConnection] = {}


def _database() -> duckdb.DuckDBPyConnection:
    """One in-memory database per process; each read takes its own cursor (a connection
    of its own, whose temporary tables vanish when it closes): opening a database costs
    tens of milliseconds, a cursor almost nothing. A forked child opens its own."""
    pid = os.getpid()
    if pid not in _DB:
        _DB.clear()
        _DB[pid] = duckdb.connect(":memory:")
    return _DB[pid]


def _format(files: Sequence[Path], fmt: str | None) -> Format:
    if fmt is not None:
        return fmt  # type: ignore[return-value]
    return _SUFFIX.get(files[0].suffix.lower(), "csv")


def _reader(spec: TableSource, files: Sequence[Path], fmt: Format) -> str:
    paths = "[" + ", ".join(literal(str(p)) for p in files) + "]"
    extra = ", filename='__filename', union_by_name=true" if len(files) > 1 else ""
    if fmt == "csv":
        # Every cell as text: `_typed_csv_columns` then types the columns from all rows.
        return (
            f"read_csv({paths}, header=true, delim={literal(spec.separator)}, "
            f"skip={spec.skip_rows}, quote='\"', escape='\"', null_padding=true, "
            f"all_varchar=true{extra})"
        )
    if fmt == "parquet":
        return f"read_parquet({paths}{extra})"
    style = "newline_delimited" if fmt == "jsonl" else "auto"
    return f"read_json({paths}, format='{style}'{extra})"


def open_table(spec: TableSource, base_dir: Path, what: str, text_columns: Sequence[str],
               *, type_every_column: bool = False) -> Table:
    """Read a source's files into an in-memory table `rows` (after `query` and `filter`).

    CSV cells are text, and hashpivot (not a guess from sampled rows) decides what a time
    stamp or a number is and can name a bad row. Columns the source's SQL reads are
    typed from every row (`_typed_csv_columns`; every column with `type_every_column`),
    except `text_columns`, which hashpivot parses itself.
    """
    name, files = resolve_files(spec.path, base_dir, what)
    fmt = _format(files, spec.format)
    con = _database().cursor()
    try:
        con.execute("SET TimeZone='UTC'")  # a cursor's own session: set it, never assume
        return _load(con, spec, name, files, fmt, text_columns, type_every_column)
    except duckdb.Error as exc:
        con.close()
        found = _csv_row_problem(spec, files) if fmt == "csv" else None
        if found is not None:
            # The reader's guess at the file's layout failed on a row it does not name.
            path, line, problem = found
            raise DataError(f"cannot read as csv: {problem}", source=str(path),
                            line=line) from None
        raise DataError(f"cannot read as {fmt}: {duck_message(exc)}", source=name) from None
    except BaseException:
        con.close()
        raise


def _csv_column_types(
    con: duckdb.DuckDBPyConnection, text_columns: Sequence[str], decimal: str,
    sql: str | None,
) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Types for the text cells of table `raw`, from every row rather than a sample: a
    column whose every cell is a number (or empty) is a number column, integer where
    every number is a whole one that fits; one of only true/false is a flag; any other
    column stays text, so SQL that cleans text ('N/A', thousands separators) works on
    it. Only columns named in `sql` (the source's own SQL, lower case; None: every
    column) are looked at; `text_columns` (the stamp and value hashpivot parses itself,
    naming a bad cell's text) stay text: a date is never guessed.

    Returns column -> (type, SQL casting its text), and the columns kept as text that
    are mostly numbers, each with one of its other cells (for `text_hint`)."""
    names = [str(r[0]) for r in con.execute("DESCRIBE raw").fetchall()]
    candidates = [c for c in names if c not in text_columns and c != "__filename"
                  and (sql is None or c.lower() in sql)]
    if not candidates:
        return {}, {}

    def number(c: str) -> str:
        text = f"trim({ident(c)})"
        return f"replace(replace({text}, '.', ''), ',', '.')" if decimal == "," else text

    counts = ", ".join(
        f"count(NULLIF(trim({ident(c)}), '')), count(TRY_CAST({number(c)} AS DOUBLE)), "
        # Whole numbers as written that fit 64 bits (a cast alone rounds 27.96 to 28).
        f"count(*) FILTER (WHERE regexp_full_match(trim({ident(c)}), '[+-]?[0-9]+') "
        f"AND TRY_CAST(trim({ident(c)}) AS BIGINT) IS NOT NULL), "
        f"count(*) FILTER (WHERE lower(trim({ident(c)})) IN ('true', 'false')), "
        f"min(trim({ident(c)})) FILTER (WHERE TRY_CAST({number(c)} AS DOUBLE) IS NULL "
        f"AND trim({ident(c)}) <> '')"
        for c in candidates
    )
    got = con.execute(f"SELECT {counts} FROM raw").fetchone()
    assert got is not None
    types: dict[str, tuple[str, str]] = {}
    mixed: dict[str, str] = {}
    for k, c in enumerate(candidates):
        cells, numbers, integers, flags = (int(x) for x in got[5 * k : 5 * k + 4])
        if cells and flags == cells:
            types[c] = ("BOOLEAN", f"TRY_CAST(trim({ident(c)}) AS BOOLEAN)")
        elif cells and numbers == cells:
            typ = "BIGINT" if integers == numbers else "DOUBLE"
            types[c] = (typ, f"TRY_CAST({number(c)} AS {typ})")
        elif numbers * 2 > cells:
            mixed[c] = str(got[5 * k + 4])
    return types, mixed


def text_hint(text_in_numbers: Mapping[str, str], sql: str) -> str:
    """For an error in `sql`: the columns it names that are numbers but for some cells
    of text, and how to read those as empty."""
    named = [c for c in text_in_numbers if c.lower() in sql.lower()]
    return "".join(
        f" (column {c!r} holds text in some rows, e.g. {text_in_numbers[c]!r}: "
        f"TRY_CAST({c} AS DOUBLE) reads those as empty)" for c in named)


def _csv_row_problem(spec: TableSource, files: Sequence[Path]) -> tuple[Path, int, str] | None:
    """The first row of `files` with more fields than its header, or whose quote never
    closes: (file, line, what), or None when every row splits cleanly."""
    for path in files:
        try:
            with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
                for _ in range(spec.skip_rows):
                    handle.readline()
                reader = csv.reader(handle, delimiter=spec.separator, strict=True)
                start = 1
                header = next(reader, None)
                if header is None:
                    continue
                start = reader.line_num + 1
                for row in reader:
                    if len(row) > len(header):
                        return (path, spec.skip_rows + start,
                                f"{len(row)} fields, the header has {len(header)}")
                    start = reader.line_num + 1
        except csv.Error:
            return path, spec.skip_rows + start, "a quote that is never closed"
        except OSError:
            return None
    return None


def _load(
    con: duckdb.DuckDBPyConnection,
    spec: TableSource,
    name: str,
    files: list[Path],
    fmt: Format,
    text_columns: Sequence[str],
    type_every_column: bool,
) -> Table:
    reader = _reader(spec, files, fmt)
    # A materialized table keeps the files' row order, so rowid is the row number; plain
    # scans of it (and views over them) keep that order too, so nothing is sorted.
    if fmt == "csv":
        con.execute(f"CREATE TEMP TABLE raw AS SELECT * FROM {reader}")
        sql = " ".join(spec.expressions()).lower()
        types, mixed = _csv_column_types(
            con, text_columns, spec.decimal, None if type_every_column else sql)
        for column, (typ, cast) in types.items():
            con.execute(f"ALTER TABLE raw ALTER {ident(column)} SET DATA TYPE {typ} "
                        f"USING {cast}")
    else:
        mixed = {}
        con.execute(f"CREATE TEMP TABLE raw AS SELECT * FROM {reader}")
    if len(files) > 1:
        con.execute(
            "CREATE TEMP TABLE src AS SELECT raw.* EXCLUDE (__filename), f.i AS __file, "
            "raw.rowid - f.first AS __row FROM raw JOIN (SELECT __filename, "
            "min(rowid) AS first, dense_rank() OVER (ORDER BY min(rowid)) - 1 AS i "
            "FROM raw GROUP BY __filename) f USING (__filename) ORDER BY raw.rowid"
        )
    else:
        con.execute("CREATE TEMP VIEW src AS SELECT *, 0 AS __file, rowid AS __row FROM raw")
    source = "src"
    if spec.query is not None:
        one_select(spec.query, name, "query")
        try:
            con.execute(f"CREATE TEMP VIEW q AS {spec.query}")
            con.execute("DESCRIBE SELECT * FROM q")
        except duckdb.Error as exc:
            raise ConfigError(duck_message(exc) + text_hint(mixed, spec.query), source=name,
                              field="query") from None
        source = "q"
    described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    cols = {str(r[0]): str(r[1]) for r in described}
    located = "__file" in cols and "__row" in cols
    where = ""
    if spec.filter is not None:
        one_select(f"SELECT * FROM src WHERE ({spec.filter})", name, "filter")
        where = f" WHERE ({spec.filter})"
        try:
            con.execute(f"DESCRIBE SELECT * FROM {source}{where}")
        except duckdb.Error as exc:
            raise ConfigError(duck_message(exc) + text_hint(mixed, spec.filter), source=name,
                              field="filter") from None
    locate = "" if located else ", 0 AS __file, -1 AS __row"
    con.execute(f"CREATE TEMP VIEW rows AS SELECT *{locate} FROM {source}{where}")
    return Table(name, files, fmt, con, cols, spec.skip_rows, located,
                 local_wall_time=spec.timezone != "UTC", text_in_numbers=mixed)


@dataclass(frozen=True, slots=True)
class Column:
    """One evaluated expression per row: numbers (NaN where absent), and why not."""

    values: F64
    null: B  # empty cell / SQL NULL
    bad: B  # present but not a number / not a time stamp
    naive: B  # time stamps only: wall time in the source's zone, not UTC yet


Kind = Literal["number", "time", "text", "flag"]


def evaluate(
    table: Table, exprs: Mapping[str, tuple[str, Kind]],
    *, decimal: str = ".", time_format: str | None = None, field_of: Mapping[str, str],
) -> tuple[dict[str, Column], dict[str, npt.NDArray[Any]], I64, I64]:
    """Evaluate SQL expressions over every row: numbers, time stamps (epoch s), text, or
    flags (SQL conditions; NULL is false).

    Returns the number and time columns, the text and flag columns, and each row's file
    index and row number.
    """
    con = table.con
    parts = []
    for key, (expr, _) in exprs.items():
        one_select(f"SELECT ({expr})", table.name, field_of.get(key, key))
        parts.append(f"({expr}) AS {ident('__e_' + key)}")
    try:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW ev AS SELECT __file, __row, "
            + ", ".join(parts) + " FROM rows"
        )  # fmt: skip
    except duckdb.Error as exc:
        culprit = _which_expression(con, exprs)
        hint = text_hint(table.text_in_numbers, exprs[culprit][0]) if culprit in exprs else ""
        raise ConfigError(duck_message(exc) + hint, source=table.name,
                          field=field_of.get(culprit, culprit)) from None  # fmt: skip
    types = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE ev").fetchall()}
    inner = ["__file::BIGINT AS __file", "__row::BIGINT AS __row"]
    prelude: list[str] = []
    outer = ["__file", "__row"]
    for key, (_, kind) in exprs.items():
        col = ident("__e_" + key)
        typ = types["__e_" + key]
        v, n, b, z = (ident(p + key) for p in ("v_", "n_", "b_", "z_"))
        if kind == "text":
            inner.append(f"COALESCE(CAST({col} AS VARCHAR), '') AS {v}")
            outer.append(v)
            continue
        if kind == "flag":
            inner.append(f"COALESCE(TRY_CAST({col} AS BOOLEAN), false) AS {v}")
            outer.append(v)
            continue
        inner.append(f"{_null_sql(col, typ)} AS {n}")
        if kind == "number":
            inner.append(f"{_number_sql(col, typ, decimal)} AS {v}")
            inner.append(f"false AS {z}")
        else:
            first, epoch, naive = _time_sql(col, typ, time_format, key,
                                            table.local_wall_time)
            prelude += first
            inner.append(f"{epoch} AS {v}")
            inner.append(f"COALESCE({naive}, false) AS {z}")
        # Computed once in the inner query, then split into value and "unreadable".
        outer += [f"COALESCE({v}, 'NaN'::DOUBLE) AS {v}", f"{v} IS NULL AS {b}", n, z]
    # Three levels, so each costly cast runs once per row (DuckDB does not share
    # repeated subexpressions across a projection).
    first_level = f"SELECT *{''.join(', ' + p for p in prelude)} FROM ev"
    query = f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM ({first_level}))"
    try:
        out = con.execute(query).fetchnumpy()
    except duckdb.Error as exc:  # a cell the source's SQL cannot convert
        hint = text_hint(table.text_in_numbers, " ".join(table.text_in_numbers))
        raise DataError(duck_message(exc) + hint, source=table.name) from None
    cols: dict[str, Column] = {}
    texts: dict[str, npt.NDArray[Any]] = {}
    for key, (_, kind) in exprs.items():
        if kind == "text":
            texts[key] = np.asarray(out["v_" + key], dtype=object)
            continue
        if kind == "flag":
            texts[key] = np.asarray(out["v_" + key], dtype=bool)
            continue
        null = np.asarray(out["n_" + key], dtype=bool)
        values = np.asarray(out["v_" + key], dtype=np.float64)
        bad = np.asarray(out["b_" + key], dtype=bool)
        if kind == "time":  # years 1..9999 only: what a calendar (and an error) can show
            bad |= ~((values > _MIN_TIME_S) & (values < _MAX_TIME_S))
        cols[key] = Column(values, null, bad & ~null, np.asarray(out["z_" + key], dtype=bool))
    return cols, texts, np.asarray(out["__file"], np.int64), np.asarray(out["__row"], np.int64)


def raw_text(table: Table, expr: str, file_idx: int, row: int) -> str:
    """The text of one expression in one row, for an error message."""
    try:
        got = table.con.execute(
            f"SELECT CAST(({expr}) AS VARCHAR) FROM rows WHERE __file = ? AND __row = ? LIMIT 1",
            [file_idx, row],
        ).fetchone()
    except duckdb.Error:
        return "?"
    return "" if got is None or got[0] is None else str(got[0])


def raw_texts(table: Table, expr: str, files: I64, rows: I64) -> dict[tuple[int, int], str]:
    """The text of one expression in many rows, by (file, row), in one query."""
    if not files.size:
        return {}
    try:
        got = table.con.execute(
            f"SELECT r.__file, r.__row, CAST(({expr}) AS VARCHAR) FROM rows r JOIN "
            "(SELECT unnest(?::BIGINT[]) AS f, unnest(?::BIGINT[]) AS w) p "
            "ON r.__file = p.f AND r.__row = p.w",
            [files.tolist(), rows.tolist()],
        ).fetchall()
    except duckdb.Error:
        return {}
    return {(int(f), int(w)): "" if t is None else str(t) for f, w, t in got}


def _which_expression(
    con: duckdb.DuckDBPyConnection, exprs: Mapping[str, tuple[str, str]]
) -> str:
    for key, (expr, _) in exprs.items():
        try:
            con.execute(f"DESCRIBE SELECT ({expr}) FROM rows")
        except duckdb.Error:
            return key
    return next(iter(exprs), "")


def _null_sql(col: str, typ: str) -> str:
    if typ == "JSON":
        text = _text_of(col, typ, trim=False)
        return f"({text}) IS NULL OR ({text}) = ''"
    if typ == "VARCHAR":  # spaces only: "not a number", not "missing" (no trim: 1M rows)
        return f"{col} IS NULL OR {col} = ''"
    return f"{col} IS NULL"


def _text_of(col: str, typ: str, *, trim: bool = True) -> str:
    text = f"({col} ->> '$')" if typ == "JSON" else f"CAST({col} AS VARCHAR)"
    return f"trim({text})" if trim else text


def _number_sql(col: str, typ: str, decimal: str) -> str:
    if typ in _NUMERIC or typ.startswith("DECIMAL"):
        return f"CAST({col} AS DOUBLE)"
    if typ == "BOOLEAN":
        return f"CAST(CAST({col} AS INTEGER) AS DOUBLE)"
    text = _text_of(col, typ)
    if decimal == ",":
        text = f"replace(replace({text}, '.', ''), ',', '.')"
    return f"TRY_CAST({text} AS DOUBLE)"


def _time_sql(
    col: str, typ: str, time_format: str | None, key: str, local_wall_time: bool = True
) -> tuple[list[str], str, str]:
    """SQL for a time stamp column of type `typ`: columns computed first (each cast once),
    then (epoch seconds, is wall time) over them. Without `local_wall_time` (the source's
    zone is UTC) a wall time is its UTC instant: no stamp is told apart as one."""
    if typ.startswith("TIMESTAMP WITH TIME ZONE") or typ == "TIMESTAMPTZ":
        return [], f"epoch({col})", "false"
    if typ in _NAIVE_TIME:
        return [], f"epoch(CAST({col} AS TIMESTAMP))", "true"
    if typ in _NUMERIC or typ.startswith("DECIMAL"):
        return [], f"CAST({col} AS DOUBLE)", "false"
    s = _text_of(col, typ, trim=False)
    if time_format is not None:
        fmt = literal(time_format)
        absolute = "%z" in time_format or "%Z" in time_format
        return [], f"epoch(TRY_STRPTIME({s}, {fmt}))", "false" if absolute else "true"
    # One cast does the work: with the session in UTC, a stamp with an offset or a zone
    # (Z, +05:30, UTC, America/Chicago, CET) becomes its UTC instant and one without
    # becomes its wall time as if UTC (read in the source's zone later); text that is no
    # stamp may be epoch seconds. A stamp names its zone when anything after the date
    # and the date-time separator is a letter or a sign: the one test for every way of
    # naming it, so no stamp is moved into the source's zone a second time.
    text, tz = ident("__s_" + key), ident("__tz_" + key)
    prelude = [f"{s} AS {text}", f"epoch(TRY_CAST({s} AS TIMESTAMPTZ)) AS {tz}"]
    epoch = f"CASE WHEN {tz} IS NULL THEN TRY_CAST({text} AS DOUBLE) ELSE {tz} END"
    if not local_wall_time:
        return prelude, epoch, "false"
    # After an ISO date (10 characters) and its separator.
    naive = f"{tz} IS NOT NULL AND NOT regexp_matches(substr(ltrim({text}), 12), '[A-Za-z+-]')"
    return prelude, epoch, naive


# --- local time ------------------------------------------------------------------------

_BUCKET_S = 900.0  # zone offsets change on quarter hours at the finest
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Localized:
    utc: F64
    problem: npt.NDArray[np.object_]  # per row: None or why the wall time has no UTC time


def localize(
    wall_s: F64,
    zone: ZoneInfo,
    ambiguous: Literal["infer", "earlier", "later", "error"],
) -> Localized:
    """UTC seconds of wall-clock times (given as if UTC) in `zone`, in the file's row order.

    Times the spring change skips are refused. Times the autumn change repeats are the
    earlier or the later one as asked; 'infer' reads the file's row order: of two equal
    wall times the first is the earlier when the file runs forward (the later when it
    runs backward, newest first).
    """
    n = wall_s.shape[0]
    problem = np.full(n, None, dtype=object)
    if n == 0 or zone.key in {"UTC", "Etc/UTC", "Etc/GMT", "GMT"}:
        return Localized(wall_s.copy(), problem)
    finite = np.isfinite(wall_s)
    safe = np.where(finite, wall_s, 0.0)
    # Offsets per day first: a day whose two midnights agree (both readings) has no
    # clock change, so one offset serves all its stamps. Only the few days with a
    # change are looked up per quarter hour.
    days, day_of = np.unique(np.floor(safe / 86_400.0), return_inverse=True)
    start0, start1 = _offsets(days * 86_400.0, zone)
    end0, end1 = _offsets((days + 1) * 86_400.0, zone)
    plain = (start0 == start1) & (start0 == end0) & (end0 == end1)
    o0, o1 = start0[day_of], start0[day_of]
    changing = ~plain[day_of]
    if changing.any():
        buckets, inv = np.unique(np.floor(safe[changing] / _BUCKET_S), return_inverse=True)
        b0, b1 = _offsets(buckets * _BUCKET_S, zone)
        o0, o1 = o0.copy(), o1.copy()
        o0[changing], o1[changing] = b0[inv], b1[inv]
    utc = wall_s - o0
    skipped = finite & (o0 < o1)
    repeated = finite & (o0 > o1)
    for i in np.flatnonzero(skipped).tolist():
        problem[i] = "local time skipped by the clock change (it does not exist)"
    if repeated.any():
        later = _later(wall_s, repeated, ambiguous, problem, (wall_s - o0, wall_s - o1))
        utc = np.where(later, wall_s - o1, utc)
    return Localized(utc, problem)


def to_utc(
    col: Column,
    idx: npt.NDArray[np.intp],
    zone: ZoneInfo,
    ambiguous: Literal["infer", "earlier", "later", "error"],
    fail: Callable[[int, str], DataError],
    shift_s: float = 0.0,
) -> F64:
    """UTC seconds of the rows `idx` of a time column: wall times (shifted by `shift_s`
    first) are read in `zone`; a wall time with no UTC time fails on its row."""
    out = col.values[idx] + shift_s
    naive = col.naive[idx]
    if naive.any():
        local = localize(out[naive], zone, ambiguous)
        wrong = np.flatnonzero(local.problem != None)  # noqa: E711 (object array)
        if wrong.size:
            j = int(np.flatnonzero(naive)[int(wrong[0])])
            raise fail(int(idx[j]), str(local.problem[int(wrong[0])]))
        out[naive] = local.utc
    return out


def _offsets(wall_s: F64, zone: ZoneInfo) -> tuple[F64, F64]:
    """The zone's UTC offset (s) at each wall time, read as the earlier and the later."""
    off0 = np.empty(wall_s.shape[0])
    off1 = np.empty(wall_s.shape[0])
    for j, w in enumerate(wall_s.tolist()):
        try:
            wall = _EPOCH + timedelta(seconds=w)
        except OverflowError:
            off0[j] = off1[j] = 0.0
            continue
        for fold, out in ((0, off0), (1, off1)):
            delta = wall.replace(tzinfo=zone, fold=fold).utcoffset()
            out[j] = 0.0 if delta is None else delta.total_seconds()
    return off0, off1


def _later(
    wall_s: F64,
    repeated: B,
    ambiguous: str,
    problem: npt.NDArray[np.object_],
    utc: tuple[F64, F64],
) -> B:
    """Which repeated wall times are the later instant (`utc`: both readings of each)."""
    later = np.zeros(wall_s.shape[0], dtype=bool)
    idx = np.flatnonzero(repeated)
    if ambiguous == "later":
        later[idx] = True
        return later
    if ambiguous == "earlier":
        return later
    if ambiguous == "error":
        for i in idx.tolist():
            problem[i] = "local time repeated by the clock change (ambiguous; ambiguous: error)"
        return later
    clear = ~repeated & np.isfinite(wall_s)
    steps = np.diff(wall_s[clear])
    forward = int(np.sum(steps > 0)) >= int(np.sum(steps < 0))
    step = float(np.median(np.abs(steps))) if steps.size else 0.0
    seen: dict[float, list[int]] = {}
    for i in idx.tolist():
        seen.setdefault(float(wall_s[i]), []).append(i)
    for rows in seen.values():
        if len(rows) == 2:
            later[rows[1] if forward else rows[0]] = True
            continue
        # Alone (daily stamps at a midnight that repeats, a half-hour change): the
        # reading one usual step after the row before it in time, when there is one.
        i = rows[0]
        before = i - 1 if forward else i + 1
        if len(rows) == 1 and 0 <= before < wall_s.shape[0] and clear[before] and step > 0:
            ref = utc[0][before]
            gaps = [abs(abs(c[i] - ref) - step) for c in utc]
            later[i] = gaps[1] < gaps[0]
            continue
        for i in rows:
            problem[i] = (
                f"local time repeated by the clock change appears {len(rows)} time(s), "
                "so which one is meant cannot be inferred: set ambiguous: earlier|later, "
                "or read a UTC column"
            )
    return later
