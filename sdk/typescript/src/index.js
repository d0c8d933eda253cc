// Rapport's TypeScript client: the messages and services generated from
// proto/ (./gen/rapport/<package>/v1/*_pb.js) and a thin layer over
// Connect-ES: the API key on every call, a request id on every mutation
// that takes one (so a retry is answered from the first attempt), a
// default deadline, UNAVAILABLE retried with exponential backoff (unary
// calls), and a failed call thrown as RapportError.

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";
import { ErrorReason as CommonReason } from "./gen/rapport/common/v1/errors_pb.js";
import { ErrorReason as ContactsReason } from "./gen/rapport/contacts/v1/errors_pb.js";
import { ContactsService } from "./gen/rapport/contacts/v1/contacts_pb.js";
import { ErrorReason as FeedbackReason } from "./gen/rapport/feedback/v1/errors_pb.js";
import { FeedbackService } from "./gen/rapport/feedback/v1/feedback_pb.js";
import { ErrorReason as GatewayReason } from "./gen/rapport/gateway/v1/errors_pb.js";
import { GatewayAdminService } from "./gen/rapport/gateway/v1/gateway_pb.js";
import { ErrorReason as SegmentationReason } from "./gen/rapport/segmentation/v1/errors_pb.js";
import { SegmentationService } from "./gen/rapport/segmentation/v1/segmentation_pb.js";

/** Each package's reasons; then the gateway's (every call passes it) and
 * the ones every service shares. */
const REASONS = {
  contacts: ContactsReason,
  feedback: FeedbackReason,
  gateway: GatewayReason,
  segmentation: SegmentationReason,
};

/** UNAVAILABLE is tried again, for calls safe to repeat: up to 5
 * attempts, waiting 100 ms, then up to twice as long each time, at most
 * 2 s. */
export const RETRY = { maxAttempts: 5, initialBackoffMs: 100, maxBackoffMs: 2000, multiplier: 2 };

/** A failed call (a ConnectError, so Connect passes it on as it is): its
 * code, the ErrorInfo reason (as text and as the package's ErrorReason
 * value), the bad fields, and how long to wait. */
export class RapportError extends ConnectError {
  constructor(connect, details = {}) {
    super(connect.rawMessage, connect.code, connect.metadata, undefined, connect.cause);
    // `name` stays "ConnectError": Connect recognises its errors by it, and
    // passes this one on instead of copying it into a plain ConnectError.
    this.details = connect.details;
    this.reason = details.reason ?? "";
    this.reasonValue = details.reasonValue;
    this.errorMetadata = details.metadata ?? {};
    this.fieldViolations = details.fieldViolations ?? [];
    this.retryDelayMs = details.retryDelayMs;
    this.requestId = connect.metadata.get("x-request-id") ?? "";
  }

  // ConnectError's own test accepts any ConnectError; this class is only
  // what was made as one.
  static [Symbol.hasInstance](value) {
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  /** Reads `error` thrown by a call to `method` (a service method
   * descriptor). */
  static from(error, method) {
    if (error instanceof RapportError) {
      return error;
    }
    const connect = ConnectError.from(error);
    const [info] = connect.findDetails(ErrorInfoSchema);
    const fieldViolations = connect
      .findDetails(BadRequestSchema)
      .flatMap((bad) =>
        bad.fieldViolations.map((v) => ({ field: v.field, description: v.description })),
      );
    const [retry] = connect.findDetails(RetryInfoSchema);
    const reason = info?.reason ?? "";
    const pkg = method?.parent?.typeName?.split(".")[1];
    const reasonValue = reason
      ? (REASONS[pkg]?.[reason] ?? GatewayReason[reason] ?? CommonReason[reason])
      : undefined;
    const retryDelayMs = retry?.retryDelay
      ? Number(retry.retryDelay.seconds) * 1000 + retry.retryDelay.nanos / 1e6
      : undefined;
    return new RapportError(connect, {
      reason,
      reasonValue,
      metadata: info ? { ...info.metadata } : {},
      fieldViolations,
      retryDelayMs,
    });
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const takesRequestId = (method) =>
  method.input.fields.some((field) => field.name === "request_id");

/** Whether a call may be made again after UNAVAILABLE, which the gateway
 * also answers when a service failed midway: reads (declared without side
 * effects or idempotent), and mutations a request id makes safe. */
const retrySafe = (method) => method.idempotency !== 0 || takesRequestId(method);

/** `message` with a fresh requestId if it has that field, empty. */
function withRequestId(method, message) {
  if (!takesRequestId(method) || message.requestId) {
    return message;
  }
  return { ...message, requestId: crypto.randomUUID() };
}

/** The layer's interceptor for `apiKey` (none for the public methods). */
export function rapportInterceptor(apiKey, retry = RETRY) {
  return (next) => async (req) => {
    if (apiKey) {
      req.header.set("authorization", `Bearer ${apiKey}`);
    }
    if (req.stream) {
      const res = await next(req).catch((error) => {
        throw RapportError.from(error, req.method);
      });
      return { ...res, message: rethrowing(res.message, req.method) };
    }
    const request = { ...req, message: withRequestId(req.method, req.message) };
    let wait = retry.initialBackoffMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await next(request);
      } catch (error) {
        const failed = ConnectError.from(error);
        const again = failed.code === Code.Unavailable && retrySafe(req.method);
        if (!again || attempt >= retry.maxAttempts) {
          throw RapportError.from(failed, req.method);
        }
        // Full jitter, as gRPC's own retries do.
        await sleep(Math.random() * wait);
        wait = Math.min(wait * retry.multiplier, retry.maxBackoffMs);
      }
    }
  };
}

async function* rethrowing(messages, method) {
  try {
    yield* messages;
  } catch (error) {
    throw RapportError.from(error, method);
  }
}

function clients(transport) {
  return {
    contacts: createClient(ContactsService, transport),
    feedback: createClient(FeedbackService, transport),
    segmentation: createClient(SegmentationService, transport),
    admin: createClient(GatewayAdminService, transport),
  };
}

/** Rapport through its gateway from Node, over gRPC (HTTP/2): `baseUrl`
 * such as `http://127.0.0.1:50051`. `close()` ends its connection (an
 * open one keeps Node running). */
export function createNodeClient(baseUrl, apiKey, options = {}) {
  const sessions = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager: sessions,
    interceptors: [rapportInterceptor(apiKey, options.retry)],
    defaultTimeoutMs: options.timeoutMs ?? 10_000,
  });
  return { ...clients(transport), close: () => sessions.abort() };
}

/** Rapport through its gateway from a browser, over gRPC-Web (the page's
 * origin must be in the gateway's RAPPORT_CORS_ALLOWED_ORIGINS). */
export function createWebClient(baseUrl, apiKey, options = {}) {
  return clients(
    createGrpcWebTransport({
      baseUrl,
      interceptors: [rapportInterceptor(apiKey, options.retry)],
      defaultTimeoutMs: options.timeoutMs ?? 10_000,
    }),
  );
}
