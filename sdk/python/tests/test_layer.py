"""The hand-written layer against a gRPC server of the test's own on
loopback: UNAVAILABLE retried with backoff, the key and a request id sent,
a default deadline, and a failure's details read into RapportError."""

from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import rapport
from rapport.contacts.v1 import contacts_pb2, contacts_pb2_grpc, errors_pb2


class Flaky(contacts_pb2_grpc.ContactsServiceServicer):
    """UNAVAILABLE for the first `failures` GetContact calls, then a contact;
    CreateContact echoes what it was sent; anything else a rich error."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.seen = []
        self.deadlines = []
        self.request_ids = []
        self.create_failures = 0
        self.merges = 0

    def MergeContacts(self, request, context):
        self.merges += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "failed midway")

    def GetContact(self, request, context):
        self.attempts += 1
        self.seen.append(dict(context.invocation_metadata()))
        if self.attempts <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return contacts_pb2.GetContactResponse(contact=contacts_pb2.Contact(id=request.id))

    def CreateContact(self, request, context):
        self.seen.append(dict(context.invocation_metadata()))
        self.deadlines.append(context.time_remaining())
        self.request_ids.append(request.request_id)
        if len(self.request_ids) <= self.create_failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return contacts_pb2.CreateContactResponse(
            contact=contacts_pb2.Contact(id=request.request_id, email=request.contact.email)
        )

    def UpdateContact(self, request, context):
        details = []
        for message in (
            error_details_pb2.ErrorInfo(
                reason="CONTACT_NOT_FOUND", domain="rapport", metadata={"contact_id": "c1"}
            ),
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field="contact.email", description="must be an email address"
                    )
                ]
            ),
            error_details_pb2.RetryInfo(retry_delay={"seconds": 1, "nanos": 500_000_000}),
        ):
            packed = any_pb2.Any()
            packed.Pack(message)
            details.append(packed)
        context.abort_with_status(
            rpc_status.to_status(
                status_pb2.Status(code=code_pb2.NOT_FOUND, message="no such contact", details=details)
            )
        )


@pytest.fixture
def served():
    def serve(failures: int):
        servicer = Flaky(failures)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        contacts_pb2_grpc.add_ContactsServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        started.append(server)
        return servicer, f"127.0.0.1:{port}"

    started = []
    yield serve
    for server in started:
        server.stop(None)


def test_unavailable_is_retried_with_backoff(served):
    servicer, endpoint = served(failures=2)
    with rapport.Client(endpoint, "rk_test") as client:
        answer = client.contacts.GetContact(contacts_pb2.GetContactRequest(id="c1"))
    assert answer.contact.id == "c1"
    assert servicer.attempts == 3
    assert all(seen["authorization"] == "Bearer rk_test" for seen in servicer.seen)


def test_retries_give_up_after_five_attempts(served):
    servicer, endpoint = served(failures=10)
    with rapport.Client(endpoint, "rk_test") as client:
        with pytest.raises(rapport.RapportError) as failed:
            client.contacts.GetContact(contacts_pb2.GetContactRequest(id="c1"))
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts == 5


def test_mutations_get_a_request_id_and_calls_a_deadline(served):
    servicer, endpoint = served(failures=0)
    with rapport.Client(endpoint, "rk_test", timeout=7.0) as client:
        created = client.contacts.CreateContact(
            contacts_pb2.CreateContactRequest(contact=contacts_pb2.Contact(email="a@example.com"))
        ).contact
        given = client.contacts.CreateContact(
            contacts_pb2.CreateContactRequest(request_id="mine"), timeout=3.0
        ).contact
    assert len(created.id) == 36 and created.email == "a@example.com"
    assert given.id == "mine"
    default, explicit = servicer.deadlines
    assert 6.0 < default < 7.5 and 2.0 < explicit < 3.5


def test_a_failure_carries_its_reason_fields_and_retry_delay(served):
    _, endpoint = served(failures=0)
    with rapport.Client(endpoint, "rk_test") as client:
        with pytest.raises(rapport.RapportError) as failed:
            client.contacts.UpdateContact(contacts_pb2.UpdateContactRequest())
    error = failed.value
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.message == "no such contact"
    assert error.reason == "CONTACT_NOT_FOUND"
    assert error.reason_value == errors_pb2.CONTACT_NOT_FOUND
    assert error.metadata == {"contact_id": "c1"}
    assert error.field_violations == (
        rapport.FieldViolation("contact.email", "must be an email address"),
    )
    assert error.retry_delay == 1.5


def test_a_retried_mutation_keeps_its_request_id(served):
    servicer, endpoint = served(failures=0)
    servicer.create_failures = 1
    with rapport.Client(endpoint, "rk_test") as client:
        client.contacts.CreateContact(contacts_pb2.CreateContactRequest())
    first, retried = servicer.request_ids
    assert first and retried == first


def test_a_mutation_without_a_request_id_is_not_made_twice(served):
    servicer, endpoint = served(failures=0)
    with rapport.Client(endpoint, "rk_test") as client:
        with pytest.raises(rapport.RapportError) as failed:
            client.contacts.MergeContacts(contacts_pb2.MergeContactsRequest())
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert servicer.merges == 1
