"""A client of the Rapport gateway: one channel; the API key on every call;
a request id on every mutation that takes one (so a retry is answered from
the first attempt); a default deadline; UNAVAILABLE retried with
exponential backoff by gRPC's own retry policy; and a failed call raised as
:class:`rapport.RapportError`."""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterator, NamedTuple, Optional

import grpc

from rapport.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from rapport.feedback.v1 import feedback_pb2, feedback_pb2_grpc
from rapport.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from rapport.segmentation.v1 import segmentation_pb2, segmentation_pb2_grpc

from .errors import RapportError

#: gRPC's retry policy for the calls safe to repeat (see
#: :func:`retry_safe_methods`): UNAVAILABLE (a service restarting, a
#: connection lost) is tried again, up to five attempts, waiting 0.1 s,
#: then up to twice as long each time, at most 2 s.
RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def retry_safe_methods() -> list[dict[str, str]]:
    """The methods UNAVAILABLE may be retried for, as service-config names.
    The gateway also answers UNAVAILABLE when a service failed midway, so
    only reads (declared without side effects, or idempotent) and
    mutations a request id makes safe are made again."""
    names = []
    for module in (contacts_pb2, feedback_pb2, gateway_pb2, segmentation_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                declared = method.GetOptions().idempotency_level
                if declared or "request_id" in method.input_type.fields_by_name:
                    names.append({"service": service.full_name, "method": method.name})
    return names


class _Details(NamedTuple):
    method: str
    timeout: Optional[float]
    metadata: Optional[list]
    credentials: Any
    wait_for_ready: Optional[bool]
    compression: Any


def _with_request_id(request: Any) -> Any:
    """`request` with a fresh `request_id` if it has that field, empty."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    if descriptor is None or "request_id" not in descriptor.fields_by_name:
        return request
    if request.request_id:
        return request
    stamped = type(request)()
    stamped.CopyFrom(request)
    stamped.request_id = str(uuid.uuid4())
    return stamped


class _Calls(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, api_key: Optional[str], timeout: float) -> None:
        self._api_key = api_key
        self._timeout = timeout

    def _details(self, details: grpc.ClientCallDetails) -> _Details:
        metadata = list(details.metadata or [])
        if self._api_key:
            metadata.append(("authorization", f"Bearer {self._api_key}"))
        timeout = details.timeout if details.timeout is not None else self._timeout
        return _Details(
            details.method,
            timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        call = continuation(self._details(client_call_details), _with_request_id(request))
        error = call.exception()
        if error is not None:
            raise RapportError.from_call(error, client_call_details.method) from None
        return call

    def intercept_unary_stream(self, continuation, client_call_details, request):
        call = continuation(self._details(client_call_details), _with_request_id(request))
        return _Stream(call, client_call_details.method)


class _Stream:
    """A server stream whose failure is raised as RapportError."""

    def __init__(self, call: Any, method: str) -> None:
        self._call = call
        self._method = method

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as error:
            raise RapportError.from_call(error, self._method) from None

    def cancel(self) -> bool:
        return self._call.cancel()


class Client:
    """Rapport through its gateway at `endpoint` (``host:port``).

    `api_key` goes with every call (``None`` for the public methods, such as
    SubmitResponse); `timeout` (seconds) is the deadline of calls that set
    none; `secure` uses TLS with the system's roots. The stubs are
    ``contacts``, ``feedback``, ``segmentation`` and ``admin`` (the
    gateway's tenants and keys, for the operator key)."""

    def __init__(
        self,
        endpoint: str,
        api_key: Optional[str] = None,
        *,
        timeout: float = 10.0,
        secure: bool = False,
        retry_policy: Optional[dict] = None,
    ) -> None:
        config = {
            "methodConfig": [
                {"name": retry_safe_methods(), "retryPolicy": retry_policy or RETRY_POLICY}
            ]
        }
        options = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(config)),
        ]
        channel = (
            grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(), options=options)
            if secure
            else grpc.insecure_channel(endpoint, options=options)
        )
        self._raw = channel
        self.channel = grpc.intercept_channel(channel, _Calls(api_key, timeout))
        self.contacts = contacts_pb2_grpc.ContactsServiceStub(self.channel)
        self.feedback = feedback_pb2_grpc.FeedbackServiceStub(self.channel)
        self.segmentation = segmentation_pb2_grpc.SegmentationServiceStub(self.channel)
        self.admin = gateway_pb2_grpc.GatewayAdminServiceStub(self.channel)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
