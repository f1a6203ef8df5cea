"""The ODCS section of contract loading: a document is first checked against the Open Data Contract Standard
itself — the JSON Schema of the ODCS version the contract declares in ``apiVersion`` — then the
``open-data-contract-standard`` package's Pydantic model. What the framework needs beyond ODCS is checked by the
section parsers above this (mesh_assets.contract.loader).

The schemas: v3.2.0 is the one shipped with ``open-data-contract-standard``; v3.1.0 is the standard's published
schema (bitol-io/open-data-contract-standard, Apache-2.0), kept unchanged in ``schemas/odcs-v3.1.0.schema.json``
as datacontract-cli 1.2.8 ships it, because the package ships only its own version. A contract is held to the
version it declares, so a v3.1.0 contract using what only v3.2.0 allows (a cross-contract reference
``domain.table.column`` in ``relationships[].to``) is refused, as datacontract-cli's ``lint`` refuses it.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema_rs
import pydantic
from open_data_contract_standard.model import OpenDataContractStandard

from mesh_assets.contract.rules import OPERATORS
from mesh_assets.errors import ContractError
from mesh_assets.yaml_source import YamlDocument

SUPPORTED_API_VERSIONS = ("v3.1.0", "v3.2.0")
# Where each supported version's JSON Schema lives: (package, file).
_SCHEMAS = {"v3.1.0": ("mesh_assets.contract", "schemas/odcs-v3.1.0.schema.json"),
            "v3.2.0": ("open_data_contract_standard", "schema.json")}


@functools.cache
def _odcs_validator(api_version: str) -> Any:
    """The JSON Schema of ODCS ``api_version`` (one of :data:`SUPPORTED_API_VERSIONS`), under the draft it
    declares, compiled by ``jsonschema-rs`` (about 200 times faster than the pure-Python validator: 1,000
    contracts in well under a second)."""
    package, name = _SCHEMAS[api_version]
    schema = json.loads(resources.files(package).joinpath(name).read_text())
    return jsonschema_rs.validator_for(schema)


def validate_odcs(doc: YamlDocument) -> OpenDataContractStandard:
    """The ODCS model of the contract ``doc``, once the document passes the ODCS JSON Schema and Pydantic model.

    Raises:
        ContractError: the document is not a mapping, or breaks the schema (every problem at once, each with
            its field and line), or the Pydantic model refuses it.
    """
    data = doc.data
    if not isinstance(data, dict):
        raise ContractError(doc.path, ["(top level): expected an ODCS data contract (a mapping with apiVersion, "
                                       "kind, id, name, version, domain, schema)"])
    declared = data.get("apiVersion")
    if declared not in SUPPORTED_API_VERSIONS:
        raise ContractError(doc.path, [doc.problem(["apiVersion"], f"is {str(declared)[:40]!r}; this mesh reads ODCS "
                                                   f"{' or '.join(SUPPORTED_API_VERSIONS)}: set apiVersion: v3.1.0")])
    problems = [doc.problem(list(err.instance_path), _schema_message(err, declared))
                for err in _schema_errors(data, declared)]
    if problems:
        raise ContractError(doc.path, problems)
    try:
        return OpenDataContractStandard.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ContractError(doc.path, [doc.problem(list(e["loc"]), e["msg"]) for e in exc.errors()]) from None


def _schema_errors(data: dict[str, Any], api_version: str) -> list[Any]:
    """JSON Schema errors against ODCS ``api_version``, one per field: "unevaluated properties" errors that only
    follow from another error (at the same field, or inside each property they call unexpected) are dropped."""
    errors = sorted(_odcs_validator(api_version).iter_errors(data), key=lambda e: list(map(str, e.instance_path)))
    unevaluated = jsonschema_rs.ValidationErrorKind.UnevaluatedProperties
    primary = [tuple(e.instance_path) for e in errors if not isinstance(e.kind, unevaluated)]

    def follows(error: Any) -> bool:  # every property it calls unexpected is, or holds, a field with an error
        at = tuple(error.instance_path)
        return at in primary or all(any(p[:len(at) + 1] == (*at, name) for p in primary)
                                    for name in error.kind.unexpected)

    return [e for e in errors if not isinstance(e.kind, unevaluated) or not follows(e)]


def _schema_message(err: Any, api_version: str) -> str:
    kind = err.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        return f"'{kind.property}' is a required property (ODCS {api_version} requires it)"
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        return f"{err.instance!r} is not allowed; use one of {', '.join(map(str, kind.options))}"
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.UnevaluatedProperties) and "severity" in kind.unexpected:
        return (f"{err.message}: ODCS gives severity to quality rules only. Give a property's constraints or a "
                "relationship theirs with customProperties: [{property: severity, value: warning}] "
                "(docs/contracts.md, \"Severity of every rule\")")
    if (isinstance(kind, jsonschema_rs.ValidationErrorKind.OneOfNotValid) and "quality" in err.instance_path
            and not any(op in err.instance for op in OPERATORS)):
        return f"a quality rule needs exactly one operator: {', '.join(OPERATORS)} (e.g. mustBe: 0)"
    path = list(map(str, err.instance_path))
    if api_version == "v3.1.0" and "relationships" in path and path[-1] in ("to", "from") and str(
            err.instance).count(".") >= 2:
        return (f"{err.instance!r}: a reference to another contract's column (domain.table.column) is ODCS v3.2.0; "
                "set apiVersion: v3.2.0 in this contract, or reference a column of this contract (table.column)")
    return err.message
