// The hand-written layer against a gRPC server of the test's own on
// loopback: UNAVAILABLE retried, the key and a request id sent, and a
// failure's details read into RapportError.

import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, test } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";

import { RapportError, createNodeClient } from "../src/index.js";
import {
  BadRequestSchema,
  ErrorInfoSchema,
} from "../src/gen/google/rpc/error_details_pb.js";
import { ContactsService } from "../src/gen/rapport/contacts/v1/contacts_pb.js";
import { ErrorReason } from "../src/gen/rapport/contacts/v1/errors_pb.js";

/** Clients made by a test, closed after the file's tests. */
const clients = [];
const opened = (client) => {
  clients.push(client);
  return client;
};
after(() => clients.forEach((client) => client.close()));

const seen = { attempts: 0, failures: 0, keys: [], requestIds: [], createFailures: 0, merges: 0 };
let server;
let baseUrl;

before(async () => {
  const routes = (router) =>
    router.service(ContactsService, {
      getContact(request, context) {
        seen.attempts += 1;
        seen.keys.push(context.requestHeader.get("authorization"));
        if (seen.attempts <= seen.failures) {
          throw new ConnectError("restarting", Code.Unavailable);
        }
        return { contact: { id: request.id } };
      },
      createContact(request) {
        seen.requestIds.push(request.requestId);
        if (seen.requestIds.length <= seen.createFailures) {
          throw new ConnectError("restarting", Code.Unavailable);
        }
        return { contact: { id: request.requestId } };
      },
      mergeContacts() {
        seen.merges += 1;
        throw new ConnectError("failed midway", Code.Unavailable);
      },
      updateContact() {
        throw new ConnectError("no such contact", Code.NotFound, undefined, [
          { desc: ErrorInfoSchema, value: { reason: "CONTACT_NOT_FOUND", domain: "rapport" } },
          {
            desc: BadRequestSchema,
            value: {
              fieldViolations: [{ field: "contact.email", description: "must be an email address" }],
            },
          },
        ]);
      },
    });
  server = http2.createServer(connectNodeAdapter({ routes }));
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${server.address().port}`;
});

after(() => server.close());

test("UNAVAILABLE is retried with backoff, the key sent each time", async () => {
  Object.assign(seen, { attempts: 0, failures: 2, keys: [] });
  const client = opened(createNodeClient(baseUrl, "rk_test"));
  const answer = await client.contacts.getContact({ id: "c1" });
  assert.equal(answer.contact.id, "c1");
  assert.equal(seen.attempts, 3);
  assert.deepEqual(seen.keys, Array(3).fill("Bearer rk_test"));
});

test("retries give up after five attempts", async () => {
  Object.assign(seen, { attempts: 0, failures: 10 });
  const client = opened(createNodeClient(baseUrl, "rk_test"));
  await assert.rejects(client.contacts.getContact({ id: "c1" }), (error) => {
    assert.ok(error instanceof RapportError);
    assert.equal(error.code, Code.Unavailable);
    return true;
  });
  assert.equal(seen.attempts, 5);
});

test("mutations get a request id unless they carry one", async () => {
  const client = opened(createNodeClient(baseUrl, "rk_test"));
  const created = await client.contacts.createContact({ contact: { email: "a@example.com" } });
  const given = await client.contacts.createContact({ requestId: "mine" });
  assert.match(created.contact.id, /^[0-9a-f-]{36}$/);
  assert.equal(given.contact.id, "mine");
});

test("a failure carries its reason and fields", async () => {
  const client = opened(createNodeClient(baseUrl, "rk_test"));
  await assert.rejects(client.contacts.updateContact({}), (error) => {
    assert.ok(error instanceof RapportError);
    assert.equal(error.code, Code.NotFound);
    assert.equal(error.reason, "CONTACT_NOT_FOUND");
    assert.equal(error.reasonValue, ErrorReason.CONTACT_NOT_FOUND);
    assert.deepEqual(error.fieldViolations, [
      { field: "contact.email", description: "must be an email address" },
    ]);
    return true;
  });
});

test("a retried mutation keeps its request id", async () => {
  Object.assign(seen, { requestIds: [], createFailures: 1 });
  const client = opened(createNodeClient(baseUrl, "rk_test"));
  await client.contacts.createContact({});
  const [first, retried] = seen.requestIds;
  assert.ok(first);
  assert.equal(retried, first);
});

test("a mutation without a request id is not made twice", async () => {
  Object.assign(seen, { merges: 0 });
  const client = opened(createNodeClient(baseUrl, "rk_test"));
  await assert.rejects(client.contacts.mergeContacts({}), (error) => error.code === Code.Unavailable);
  assert.equal(seen.merges, 1);
});
