"""Ordering schemes (semantic source coding policies), registered by name. See SCHEMES.md."""

from lsc.schemes.base import Plan, Scheme, SchemeInfo, check_capabilities, get_scheme, list_schemes, scheme_names

__all__ = ["Plan", "Scheme", "SchemeInfo", "check_capabilities", "get_scheme", "list_schemes", "scheme_names"]
