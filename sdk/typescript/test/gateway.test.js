// A client team's first day, through the real gateway and services on
// loopback (started by tests/e2e/tests/sdk.rs, which hands the gateway's
// address and operator key over in RAPPORT_ENDPOINT and
// RAPPORT_OPERATOR_KEY): a key, contacts created and updated, events
// recorded, a survey answered with no key and summarised, typed errors
// with field violations, a server stream, and the browser's gRPC-Web
// transport.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { toJsonString } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";

import { RapportError, createNodeClient, createWebClient } from "../src/index.js";
import { Channel } from "../src/gen/rapport/common/v1/common_pb.js";
import { ExportContactResponseSchema } from "../src/gen/rapport/contacts/v1/contacts_pb.js";
import { ErrorReason } from "../src/gen/rapport/contacts/v1/errors_pb.js";
import { QuestionKind } from "../src/gen/rapport/feedback/v1/feedback_pb.js";

/** Clients made by a test, closed after the file's tests. */
const clients = [];
const opened = (client) => {
  clients.push(client);
  return client;
};
after(() => clients.forEach((client) => client.close()));

const endpoint = process.env.RAPPORT_ENDPOINT;
const baseUrl = `http://${endpoint}`;
let key;

before(async () => {
  assert.ok(endpoint, "run through `cargo test -p rapport-e2e --test sdk`, which starts the suite");
  const operator = opened(createNodeClient(baseUrl, process.env.RAPPORT_OPERATOR_KEY));
  const { tenant } = await operator.admin.createTenant({ tenant: { displayName: "TypeScript SDK" } });
  ({ secret: key } = await operator.admin.createApiKey({
    tenantId: tenant.id,
    displayName: "typescript",
    scopes: ["contacts:write", "feedback:write"],
  }));
});

test("contacts are created, updated and their events recorded; the export streams", async () => {
  const client = opened(createNodeClient(baseUrl, key));
  const { contact } = await client.contacts.createContact({
    contact: { email: "ada@example.com", firstName: "Ada" },
  });
  const { contact: updated } = await client.contacts.updateContact({
    contact: { id: contact.id, lastName: "Lovelace" },
    updateMask: { paths: ["last_name"] },
    etag: contact.etag,
  });
  assert.deepEqual([updated.firstName, updated.lastName], ["Ada", "Lovelace"]);

  const recorded = await client.contacts.recordEvents({
    events: ["order.placed", "page.viewed"].map((type) => ({
      contactId: contact.id,
      type,
      channel: Channel.WEB,
      occurTime: timestampNow(),
    })),
  });
  assert.equal(recorded.recordedCount, 2);

  const exported = [];
  for await (const message of client.contacts.exportContact({ id: contact.id })) {
    exported.push(message);
  }
  assert.ok(exported.length > 0);
  const text = exported.map((m) => toJsonString(ExportContactResponseSchema, m)).join();
  assert.ok(text.includes("ada@example.com"), text);
});

test("errors are typed with their reason and fields", async () => {
  const client = opened(createNodeClient(baseUrl, key));
  const missing = crypto.randomUUID();
  await assert.rejects(client.contacts.getContact({ id: missing }), (error) => {
    assert.ok(error instanceof RapportError);
    assert.equal(error.code, Code.NotFound);
    assert.equal(error.reason, "CONTACT_NOT_FOUND");
    assert.equal(error.reasonValue, ErrorReason.CONTACT_NOT_FOUND);
    return true;
  });
  await assert.rejects(
    client.contacts.recordEvents({
      events: [{ contactId: missing, type: "order.placed", channel: Channel.WEB, occurTime: timestampNow() }],
    }),
    (error) => {
      assert.ok(error instanceof RapportError);
      assert.equal(error.code, Code.InvalidArgument);
      assert.deepEqual(
        error.fieldViolations.map((v) => v.field),
        ["events[0].contact_id"],
      );
      return true;
    },
  );
});

test("a survey is answered without a key and summarised", async () => {
  const client = opened(createNodeClient(baseUrl, key));
  const english = (text) => ({ en: text });
  const { survey } = await client.feedback.createSurvey({
    survey: {
      name: "After purchase",
      touchpoint: "post-purchase",
      channel: Channel.EMAIL,
      languages: ["en"],
      title: english("Thanks for your order"),
      questions: [
        { id: "nps", kind: QuestionKind.NPS, required: true, text: english("Would you recommend us?") },
      ],
    },
  });
  await client.feedback.activateSurvey({ id: survey.id });
  const { contact } = await client.contacts.createContact({ contact: { email: "grace@example.com" } });
  const invited = await client.feedback.createInvitations({
    surveyId: survey.id,
    contactIds: [contact.id],
  });

  const respondent = opened(createNodeClient(baseUrl));
  await respondent.feedback.submitResponse({
    token: invited.invitations[0].token,
    answers: [{ questionId: "nps", value: { case: "score", value: 10 } }],
    complete: true,
    language: "en",
  });
  await assert.rejects(
    respondent.feedback.submitResponse({ token: `fbi_${"x".repeat(43)}`, complete: true }),
    (error) => error instanceof RapportError && error.code === Code.NotFound && error.reason === "INVALID_SURVEY_TOKEN",
  );

  const { summary } = await client.feedback.getSurveySummary({ surveyId: survey.id });
  assert.equal(summary.completedCount, 1n);
  assert.equal(summary.questions[0].figures.case, "nps");
  assert.equal(summary.questions[0].figures.value.nps, 100);
});

test("the browser's gRPC-Web transport reaches the gateway too", async () => {
  const web = createWebClient(baseUrl, key);
  const { contact } = await web.contacts.createContact({ contact: { email: "web@example.com" } });
  const { contact: fetched } = await web.contacts.getContact({ id: contact.id });
  assert.equal(fetched.email, "web@example.com");
});
