"""Tool calls valid by construction: the catalogue, schema checks, risk labels, constrained extraction."""

from .catalogue import SEED_TOOLS, resolve_tools
from .extract import extract_tool_calls, extraction_schema
from .risk import risk_of
from .schema import token_bound, validate_definition

__all__ = ["SEED_TOOLS", "resolve_tools", "extract_tool_calls", "extraction_schema", "risk_of", "token_bound",
           "validate_definition"]
