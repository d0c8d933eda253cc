"""Errors a client can act on: the gRPC status of a failed call with its
google.rpc details read out (ErrorInfo's reason as the service package's
``ErrorReason`` value, BadRequest's field violations, RetryInfo's delay)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, such as ``events[3].contact_id``."""

    field: str
    description: str


def _reason_enum(package: str, reason: str) -> Optional[int]:
    """The value of ``reason`` in ``rapport.<package>.v1.ErrorReason`` or,
    failing that, in the gateway's (every call passes it) or in the reasons
    every service shares."""
    for module in (
        f"rapport.{package}.v1.errors_pb2",
        "rapport.gateway.v1.errors_pb2",
        "rapport.common.v1.errors_pb2",
    ):
        try:
            errors = importlib.import_module(module)
        except ImportError:
            continue
        try:
            return errors.ErrorReason.Value(reason)
        except ValueError:
            continue
    return None


class RapportError(Exception):
    """A call that failed.

    ``code`` is its ``grpc.StatusCode``; ``reason`` the ErrorInfo reason
    (such as ``CONTACT_NOT_FOUND``; README's table says what to do about
    each) and ``reason_value`` its number in the service's ``ErrorReason``
    enum; ``field_violations`` name bad fields; ``retry_delay`` is how long
    to wait, in seconds, when the service says."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        reason_value: Optional[int] = None,
        metadata: Optional[dict[str, str]] = None,
        field_violations: tuple[FieldViolation, ...] = (),
        retry_delay: Optional[float] = None,
        request_id: str = "",
    ) -> None:
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.reason_value = reason_value
        self.metadata = metadata or {}
        self.field_violations = field_violations
        self.retry_delay = retry_delay
        self.request_id = request_id

    @classmethod
    def from_call(cls, error: grpc.RpcError, method: str) -> "RapportError":
        """Reads a failed call (`method` is its full name, such as
        ``/rapport.contacts.v1.ContactsService/GetContact``)."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        message = error.details() if hasattr(error, "details") else str(error)
        reason, metadata, violations, delay = "", {}, [], None
        status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
        for detail in status.details if status else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
        request_id = ""
        if hasattr(error, "trailing_metadata"):
            for key, value in (error.initial_metadata() or ()) + (error.trailing_metadata() or ()):
                if key == "x-request-id":
                    request_id = value
        package = method.lstrip("/").split(".")[1] if method.count(".") >= 2 else ""
        return cls(
            code,
            message,
            reason=reason,
            reason_value=_reason_enum(package, reason) if reason else None,
            metadata=metadata,
            field_violations=tuple(violations),
            retry_delay=delay,
            request_id=request_id,
        )
