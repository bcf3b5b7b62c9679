"""Ordering schemes (semantic source coding policies), registered by name; defined in docs/SCHEMES.md.

Importing this package registers every scheme family; `base` holds the registry and imports none of them.
"""

from lsc.protocol.context import Plan
from lsc.schemes import attention, grounding, learned, linguistic, perceptual, random_order  # noqa: F401  (registers them)
from lsc.schemes.base import Scheme, SchemeInfo, check_capabilities, get_scheme, list_schemes, scheme_class, scheme_names

__all__ = ["Plan", "Scheme", "SchemeInfo", "check_capabilities", "get_scheme", "list_schemes", "scheme_class", "scheme_names"]
