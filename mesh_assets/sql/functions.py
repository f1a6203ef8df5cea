"""The functions SQL in the mesh may call: an allow-list of pure functions, checked on sqlglot's parse tree.

Every query a person writes — SQL transforms, dbt models, contract ``sql`` rules, ``mesh sql`` reader queries —
and every query the Spark engine translates is walked before it runs; any function call (scalar, aggregate,
window or table function) whose name is not in :data:`ALLOWED_FUNCTIONS` is refused. The list holds functions
that compute on their arguments only: arithmetic, string, date/time, conditional, casts, aggregates, window
functions, hashing, JSON, list, map and struct functions. It deliberately leaves out everything that reaches
outside the query: files (``read_csv``, ``read_parquet``, ``read_json``, ``read_text``, ``read_blob``,
``glob``, ``parquet_scan``, ``sniff_csv``…), other queries and catalogs (``query``, ``query_table``,
``duckdb_*``), settings and variables (``current_setting``, ``getvariable``), the JVM and host on Spark
(``reflect``, ``java_method``, ``try_reflect``) and the mesh's own masking function. A function missing from the
list is refused, so a new engine function is closed until someone adds it here on purpose.

Table functions allowed: ``range``, ``generate_series`` and ``unnest`` (they read nothing). A file named as a
table (``FROM 'x.csv'``, which DuckDB reads as ``read_csv('x.csv')``) is refused too. The list is repeated in
docs/governance.md (a test keeps the two equal).
"""

from __future__ import annotations

import functools
import re

import sqlglot
from sqlglot import exp

# DuckDB spellings, lower case. Keep it to functions that read nothing but their arguments.
ALLOWED_FUNCTIONS = frozenset("""
    abs acos add age and any_value apply approx_count_distinct approx_quantile arg_max arg_min argmax argmin
    array array_agg array_concat array_contains array_distinct array_extract array_filter array_has array_length
    array_position array_reverse_sort array_slice array_sort array_to_string array_transform array_value ascii
    asin atan atan2 avg base64 bin bit_and bit_count bit_length bit_or bit_xor bool_and bool_or btrim
    cardinality case cast cbrt ceil ceiling century char_length character_length chr coalesce concat concat_ws
    contains corr cos count count_if countif covar_pop covar_samp cume_dist current_date current_time
    current_timestamp date date_add date_diff date_part date_sub date_trunc datediff datepart datesub datetrunc
    day dayname dayofmonth dayofweek dayofyear decade decode degrees dense_rank divide element_at encode
    ends_with entropy epoch epoch_ms epoch_ns epoch_us era even exists exp extract factorial favg first
    first_value flatten floor fmod format from_base64 fsum gcd generate_series geomean geometric_mean
    get_current_time get_current_timestamp greatest group_concat hamming hash hex histogram hour if ifnull iif
    ilike instr isfinite isinf isnan isodow isoyear jaccard jaro_similarity jaro_winkler_similarity json
    json_array json_array_length json_contains json_exists json_extract json_extract_path json_extract_path_text
    json_extract_string json_group_array json_group_object json_keys json_merge_patch json_object json_quote
    json_structure json_type json_valid json_value kahan_sum kurtosis kurtosis_pop lag last last_day last_value
    lcase lcm lead least left len length levenshtein like list list_aggregate list_any_value list_apply list_avg
    list_cat list_concat list_contains list_count list_distinct list_element list_extract list_filter list_has
    list_has_all list_has_any list_max list_min list_pack list_position list_reduce list_reverse
    list_reverse_sort list_slice list_sort list_sum list_transform list_unique list_value list_zip listagg ln
    log log10 log2 lower lpad ltrim make_date make_time make_timestamp make_timestamptz map map_concat
    map_entries map_extract map_from_entries map_keys map_values max max_by md5 md5_number mean median
    microsecond millisecond min min_by minute mod mode month monthname multiply nanosecond nextafter
    nfc_normalize not now nth_value ntile nullif octet_length or ord percent_rank percentile_cont
    percentile_disc pi position pow power prefix printf product quantile quantile_cont quantile_disc quarter
    radians range rank reduce regexp_extract regexp_extract_all regexp_full_match regexp_like regexp_matches
    regexp_replace regexp_split_to_array regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope
    regr_sxx regr_sxy regr_syy repeat replace reverse right round round_even row row_number rpad rtrim second
    sha1 sha256 sign signbit sin skewness split split_part sqrt starts_with stddev stddev_pop stddev_samp
    str_split str_split_regex strftime string_agg string_split string_split_regex strip_accents strlen strpos
    strptime struct struct_extract struct_insert struct_pack substr substring subtract suffix sum tan
    time_bucket timezone timezone_hour timezone_minute to_base64 to_days to_hours to_json to_microseconds
    to_milliseconds to_minutes to_months to_seconds to_timestamp to_weeks to_years today translate trim trunc
    try_cast try_strptime typeof ucase unhex unicode unnest upper var_pop var_samp variance week weekday
    weekofyear xor year yearweek
""".split())

# A table name with one of these reads a file (DuckDB's replacement scans); names of ports never hold them.
_PATH_LIKE = re.compile(r"[./\\:*?~]")
_FIX = "read a port or table by name; declare a source for landing files"


class FunctionNotAllowed(ValueError):
    """A query calls a function that is not on the allow-list, or names a file as a table. ``what`` says
    which (``function read_csv()``), ``line`` is its line in the query when sqlglot reports it."""

    def __init__(self, what: str, line: int | None, origin: str | None = None):
        self.what, self.line, self.origin = what, line, origin
        where = "".join(part for part in (f"{origin}: " if origin else "", f"line {line}: " if line else ""))
        super().__init__(f"{where}{what} is not allowed in mesh SQL; {_FIX} (docs/governance.md lists the "
                         "functions allowed)")


@functools.cache
def _allowed_classes() -> frozenset[type[exp.Func]]:
    """The sqlglot classes each allowed name parses into (``range`` → ``GenerateSeries``, ``json_object`` →
    ``JSONObject``), tried with up to three arguments: typed calls are matched by class, so a name sqlglot
    rewrites on parsing is still recognised."""
    classes: set[type[exp.Func]] = set()
    for name in ALLOWED_FUNCTIONS:
        for args in ("", "a", "a, b", "a, b, c", "'day', a"):
            try:
                tree = sqlglot.parse_one(f"SELECT {name}({args})", dialect="duckdb")
            except (sqlglot.errors.SqlglotError, TypeError, ValueError):
                continue
            classes.update(type(f) for f in tree.find_all(exp.Func) if not isinstance(f, exp.Anonymous))
    return frozenset(classes)


def function_name(node: exp.Func) -> str:
    """The name of a function call: as written for a function sqlglot does not know, else sqlglot's name of
    its class (``READ_CSV``), lower case."""
    if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
        return str(node.name).lower()
    return node.sql_name().lower()


def allowed(node: exp.Func) -> bool:
    """Whether the call ``node`` is on the allow-list."""
    if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
        return str(node.name).lower() in ALLOWED_FUNCTIONS
    return (any(name.lower() in ALLOWED_FUNCTIONS for name in type(node).sql_names())
            or type(node) in _allowed_classes())


def check_functions(tree: exp.Expression, origin: str | None = None) -> None:
    """Refuse the first call in ``tree`` (a parsed query, DuckDB dialect) that is not on the allow-list, and
    any table named like a file (DuckDB reads ``FROM 'x.csv'`` as ``read_csv('x.csv')``). ``origin`` names the
    file (or rule, or command) in the message.

    Raises:
        FunctionNotAllowed: naming the function (or file), the origin, the line when known, and the fix.
    """
    for node in tree.find_all(exp.Func, exp.Table):
        if isinstance(node, exp.Table):  # DuckDB scans a file for an unqualified name only
            if not node.db and isinstance(node.this, exp.Identifier) and _PATH_LIKE.search(node.name):
                raise FunctionNotAllowed(f"reading the file '{node.name}'", _line(node.this), origin)
        elif not allowed(node):
            raise FunctionNotAllowed(f"function {function_name(node)}()", _line(node), origin)


def _line(node: exp.Expression) -> int | None:
    """The line sqlglot recorded for ``node`` (for a call: of its name), if any."""
    line = (node.meta or {}).get("line")
    if line is None and isinstance(node.this, exp.Expression):
        line = (node.this.meta or {}).get("line")
    return line


def check_sql(sql: str, origin: str | None = None) -> None:
    """Parse ``sql`` (DuckDB dialect, one or more statements) and refuse any call not on the allow-list.

    Raises:
        FunctionNotAllowed: see :func:`check_functions`.
        sqlglot.errors.SqlglotError: ``sql`` does not parse.
    """
    for tree in sqlglot.parse(sql, dialect="duckdb"):
        if tree is not None:
            check_functions(tree, origin)
