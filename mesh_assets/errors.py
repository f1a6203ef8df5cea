"""Errors the mesh raises for bad input: each names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path


class MeshError(Exception):
    """Base class of every error caused by the mesh's own files or data (never a bug in the framework)."""


class ContractError(MeshError):
    """A data contract, domain descriptor or ``mesh.yaml`` is malformed.

    Args:
        path: the file at fault.
        problems: one line per problem, each ``<field>: <what is wrong>. <fix>``; a field is written as a
            JSON-path-like location (``schema[0].properties[2].logicalType``), with ``(line N)`` when known.
    """

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{self.path}: invalid\n{body}")


class ContractsError(MeshError):
    """One or more data contracts of a domain are malformed; ``errors`` holds each one's :class:`ContractError`
    (``mesh validate`` reports each problem with its file, field and line)."""

    def __init__(self, errors: list[ContractError]):
        self.errors = errors
        super().__init__("\n\n".join(str(e) for e in errors))


class PortError(MeshError):
    """An output port cannot be read or written (no published snapshot, unknown port or snapshot, a port of the
    layout before Iceberg, a commit that lost to other writers)."""


class TransformError(MeshError):
    """A transform (ingestion or SQL) failed on its data; the message names the table, the file and the fix."""


class TransientError(TransformError):
    """A transform failed on I/O (a file system or object store error, a lost connection) rather than on its
    data or SQL: the step's retry policy (``mesh.yaml`` ``retries``) runs it again."""


# The one classification of failures, for every stage (ingestion, transform, checks, profile, publish) and every
# engine (DuckDB, Spark, dbt); docs/operations.md "Failures and retries". Classes are matched by name along the
# exception's MRO, most specific first, so neither pyspark nor py4j has to be imported to classify.
TRANSIENT_ERRORS = frozenset({
    "TransientError",
    # DuckDB: the file system, an object store or the network failed; memory ran out (steps running in parallel
    # share it: the retry's backoff lets them finish); the query was interrupted.
    "IOException", "HTTPException", "ConnectionException", "OutOfMemoryException", "InterruptException",
    # py4j: the connection to Spark's JVM was lost.
    "Py4JNetworkError",
    # Python's I/O (the local file system, fsspec object stores); PermissionError is permanent below.
    "OSError", "ConnectionError", "TimeoutError",
})
PERMANENT_ERRORS = frozenset({
    "MeshError",  # the mesh's own files or data (a TransformError unless it is a TransientError)
    # DuckDB: the data, the SQL or the sandbox is at fault; the same input fails the same way again.
    "InvalidInputException", "ConversionException", "BinderException", "ParserException", "CatalogException",
    "ConstraintException", "PermissionException", "OutOfRangeException", "InvalidTypeException",
    "NotImplementedException", "DependencyException", "InternalException", "SyntaxException",
    "TypeMismatchException",
    # Spark (pyspark.errors): the SQL or the data (ParseException is an AnalysisException).
    "AnalysisException", "ParseException", "IllegalArgumentException", "ArithmeticException",
    "NumberFormatException", "ArrayIndexOutOfBoundsException", "DateTimeException", "SparkUpgradeException",
    "PythonException", "UnsupportedOperationException",
    "PermissionError",
})
# The cause of an error known only by its text (a dbt model's failure, a Java exception Spark did not convert):
# DuckDB's message prefixes and Java's exception classes that mean a transient failure.
TRANSIENT_MARKERS = (
    "IO Error:", "HTTP Error:", "Connection Error:", "Out of Memory Error:", "INTERRUPT Error:",
    "java.io.IOException", "java.io.FileNotFoundException", "java.io.EOFException", "java.net.",
    "java.util.concurrent.TimeoutException", "java.lang.OutOfMemoryError", "FetchFailedException",
    "ExecutorLostFailure",
)


def is_transient(error: BaseException | str) -> bool:
    """Whether ``error`` may pass on a second try (the step's retry policy runs it again) rather than fail the
    same way (the step fails at once). ``error`` is an exception, or the text of one (dbt reports a model's
    failure as text only).

    An exception is classified by the first class along its MRO named in :data:`TRANSIENT_ERRORS` or
    :data:`PERMANENT_ERRORS`; one of neither (py4j's ``Py4JJavaError``, Spark's ``SparkRuntimeException``) and
    a text are transient when their message names a transient cause (:data:`TRANSIENT_MARKERS`). Anything else
    is permanent: a bug, a Python transform's exception or an unknown error gives the same answer again.
    """
    if isinstance(error, BaseException):
        for cls in type(error).__mro__:
            if cls.__name__ in TRANSIENT_ERRORS:
                return True
            if cls.__name__ in PERMANENT_ERRORS:
                return False
        error = str(error)
    return any(marker in error for marker in TRANSIENT_MARKERS)


def failure_class(error: BaseException | str) -> type[TransformError]:
    """:class:`TransientError` when :func:`is_transient` says so, else :class:`TransformError`: what a step
    raises, with a message for people, for an engine's error."""
    return TransientError if is_transient(error) else TransformError


_LONG_LINE = 500  # characters of one line of an error message kept (DuckDB quotes a whole bad CSV record)


def error_message(exc: BaseException) -> str:
    """An engine's message on one line, for people: without DuckDB's CSV sniffer advice (the file is kept) and
    its hint to file a bug report, each line cut to 500 characters (a CSV error quotes the whole record, which
    may be megabytes); at most 2,000 characters."""
    text = str(exc).strip()
    if "Possible solutions" in text:  # CSV errors: keep the line and the file, drop DuckDB's sniffer advice
        head, tail = text.split("Possible solutions", 1)
        file = next((ln.strip() for ln in tail.splitlines() if ln.strip().startswith("file =")), "")
        text = f"{head.strip()} {file}"
    lines = [ln.strip() if len(ln.strip()) <= _LONG_LINE else f"{ln.strip()[:_LONG_LINE]}… ({len(ln.strip()):,} "
             "characters)" for ln in text.splitlines() if ln.strip()]
    return " ".join(lines)[:2000] or type(exc).__name__
