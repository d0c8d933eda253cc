"""Rapport's Python client: the messages and stubs generated from
``proto/`` (``rapport.contacts.v1``, ``rapport.feedback.v1``, ...) and a
thin layer over them (:class:`Client`, :class:`RapportError`)."""

from .client import RETRY_POLICY, Client
from .errors import FieldViolation, RapportError

__all__ = ["Client", "FieldViolation", "RapportError", "RETRY_POLICY"]
