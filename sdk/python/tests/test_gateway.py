"""A client team's first day, through the real gateway and services on
loopback (started by tests/e2e/tests/sdk.rs, which hands the gateway's
address and operator key over in RAPPORT_ENDPOINT and
RAPPORT_OPERATOR_KEY): a key, contacts created and updated, events
recorded, a survey answered with no key and summarised, a typed error
with its field violations, and a server stream."""

import os
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

import rapport
from rapport.common.v1 import common_pb2
from rapport.contacts.v1 import contacts_pb2
from rapport.contacts.v1 import errors_pb2 as contact_errors
from rapport.feedback.v1 import feedback_pb2
from rapport.gateway.v1 import gateway_pb2


def now():
    moment = timestamp_pb2.Timestamp()
    moment.GetCurrentTime()
    return moment


@pytest.fixture(scope="module")
def endpoint():
    if "RAPPORT_ENDPOINT" not in os.environ:
        pytest.fail("run through `cargo test -p rapport-e2e --test sdk`, which starts the suite")
    return os.environ["RAPPORT_ENDPOINT"]


@pytest.fixture(scope="module")
def key(endpoint):
    with rapport.Client(endpoint, os.environ["RAPPORT_OPERATOR_KEY"]) as operator:
        tenant = operator.admin.CreateTenant(
            gateway_pb2.CreateTenantRequest(tenant=gateway_pb2.Tenant(display_name="Python SDK"))
        ).tenant
        created = operator.admin.CreateApiKey(
            gateway_pb2.CreateApiKeyRequest(
                tenant_id=tenant.id,
                display_name="python",
                scopes=["contacts:write", "feedback:write"],
            )
        )
    return created.secret


@pytest.fixture
def client(endpoint, key):
    with rapport.Client(endpoint, key) as client:
        yield client


def test_contacts_are_created_updated_and_their_events_recorded(client):
    contact = client.contacts.CreateContact(
        contacts_pb2.CreateContactRequest(
            contact=contacts_pb2.Contact(email="ada@example.com", first_name="Ada")
        )
    ).contact
    updated = client.contacts.UpdateContact(
        contacts_pb2.UpdateContactRequest(
            contact=contacts_pb2.Contact(id=contact.id, last_name="Lovelace"),
            update_mask=field_mask_pb2.FieldMask(paths=["last_name"]),
            etag=contact.etag,
        )
    ).contact
    assert (updated.first_name, updated.last_name) == ("Ada", "Lovelace")

    recorded = client.contacts.RecordEvents(
        contacts_pb2.RecordEventsRequest(
            events=[
                contacts_pb2.Event(
                    contact_id=contact.id,
                    type="order.placed",
                    channel=common_pb2.CHANNEL_WEB,
                    occur_time=now(),
                ),
                contacts_pb2.Event(
                    contact_id=contact.id,
                    type="page.viewed",
                    channel=common_pb2.CHANNEL_WEB,
                    occur_time=now(),
                ),
            ]
        )
    )
    assert recorded.recorded_count == 2

    # The export is a server stream.
    exported = list(client.contacts.ExportContact(contacts_pb2.ExportContactRequest(id=contact.id)))
    assert exported, "the export streams at least one message"
    assert "ada@example.com" in str(exported)


def test_errors_are_typed_with_their_reason_and_fields(client):
    missing = str(uuid.uuid4())
    with pytest.raises(rapport.RapportError) as failed:
        client.contacts.GetContact(contacts_pb2.GetContactRequest(id=missing))
    assert failed.value.code == grpc.StatusCode.NOT_FOUND
    assert failed.value.reason == "CONTACT_NOT_FOUND"
    assert failed.value.reason_value == contact_errors.CONTACT_NOT_FOUND

    with pytest.raises(rapport.RapportError) as failed:
        client.contacts.RecordEvents(
            contacts_pb2.RecordEventsRequest(
                events=[
                    contacts_pb2.Event(
                        contact_id=missing,
                        type="order.placed",
                        channel=common_pb2.CHANNEL_WEB,
                        occur_time=now(),
                    )
                ]
            )
        )
    assert failed.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in failed.value.field_violations] == ["events[0].contact_id"]


def test_a_survey_is_answered_without_a_key_and_summarised(endpoint, client):
    english = lambda text: {"en": text}  # noqa: E731
    survey = client.feedback.CreateSurvey(
        feedback_pb2.CreateSurveyRequest(
            survey=feedback_pb2.Survey(
                name="After purchase",
                touchpoint="post-purchase",
                channel=common_pb2.CHANNEL_EMAIL,
                languages=["en"],
                title=english("Thanks for your order"),
                questions=[
                    feedback_pb2.Question(
                        id="nps",
                        kind=feedback_pb2.QUESTION_KIND_NPS,
                        required=True,
                        text=english("How likely are you to recommend us?"),
                    )
                ],
            )
        )
    ).survey
    client.feedback.ActivateSurvey(feedback_pb2.ActivateSurveyRequest(id=survey.id))
    contact = client.contacts.CreateContact(
        contacts_pb2.CreateContactRequest(contact=contacts_pb2.Contact(email="grace@example.com"))
    ).contact
    invited = client.feedback.CreateInvitations(
        feedback_pb2.CreateInvitationsRequest(survey_id=survey.id, contact_ids=[contact.id])
    )
    token = invited.invitations[0].token

    with rapport.Client(endpoint) as respondent:
        respondent.feedback.SubmitResponse(
            feedback_pb2.SubmitResponseRequest(
                token=token,
                answers=[feedback_pb2.Answer(question_id="nps", score=10)],
                complete=True,
                language="en",
            )
        )
        # A made-up link is NOT_FOUND: nothing to re-authenticate.
        with pytest.raises(rapport.RapportError) as failed:
            respondent.feedback.SubmitResponse(
                feedback_pb2.SubmitResponseRequest(token="fbi_" + "x" * 43, complete=True)
            )
        assert failed.value.code == grpc.StatusCode.NOT_FOUND
        assert failed.value.reason == "INVALID_SURVEY_TOKEN"

    summary = client.feedback.GetSurveySummary(
        feedback_pb2.GetSurveySummaryRequest(survey_id=survey.id)
    ).summary
    assert summary.completed_count == 1
    assert summary.questions[0].nps.nps == 100.0
