"""The ODCS section of contract loading: a document is first checked against the Open Data Contract Standard
itself — the JSON Schema shipped with the ``open-data-contract-standard`` package (under the draft it
declares), then the package's Pydantic model. What the framework needs beyond ODCS is checked by the section
parsers above this (mesh_assets.contract.loader).
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


@functools.cache
def _odcs_validator() -> Any:
    """The JSON Schema of ODCS shipped with ``open-data-contract-standard``, under the draft it declares,
    compiled by ``jsonschema-rs`` (about 200 times faster than the pure-Python validator: 1,000 contracts in
    well under a second)."""
    schema = json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text())
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
    problems = [doc.problem(list(err.instance_path), _schema_message(err)) for err in _schema_errors(data)]
    if problems:
        raise ContractError(doc.path, problems)
    try:
        return OpenDataContractStandard.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ContractError(doc.path, [doc.problem(list(e["loc"]), e["msg"]) for e in exc.errors()]) from None


def _schema_errors(data: dict[str, Any]) -> list[Any]:
    """JSON Schema errors, one per field: "unevaluated properties" errors that only follow from another
    error at the same field are dropped."""
    errors = sorted(_odcs_validator().iter_errors(data), key=lambda e: list(map(str, e.instance_path)))
    unevaluated = jsonschema_rs.ValidationErrorKind.UnevaluatedProperties
    primary = {tuple(e.instance_path) for e in errors if not isinstance(e.kind, unevaluated)}
    return [e for e in errors if not isinstance(e.kind, unevaluated) or tuple(e.instance_path) not in primary]


def _schema_message(err: Any) -> str:
    kind = err.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        return f"'{kind.property}' is a required property (ODCS v3.1 requires it)"
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        return f"{err.instance!r} is not allowed; use one of {', '.join(map(str, kind.options))}"
    if (isinstance(kind, jsonschema_rs.ValidationErrorKind.OneOfNotValid) and "quality" in err.instance_path
            and not any(op in err.instance for op in OPERATORS)):
        return f"a quality rule needs exactly one operator: {', '.join(OPERATORS)} (e.g. mustBe: 0)"
    return err.message
