import type { Client, ConnectError, Interceptor } from "@connectrpc/connect";
import type { ContactsService } from "./gen/rapport/contacts/v1/contacts_pb.js";
import type { FeedbackService } from "./gen/rapport/feedback/v1/feedback_pb.js";
import type { GatewayAdminService } from "./gen/rapport/gateway/v1/gateway_pb.js";
import type { SegmentationService } from "./gen/rapport/segmentation/v1/segmentation_pb.js";

/** How UNAVAILABLE is retried (unary calls). */
export interface RetryPolicy {
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  multiplier: number;
}

export declare const RETRY: RetryPolicy;

/** One bad field of a request, such as `events[3].contact_id`. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** A failed call (a ConnectError: `code`, `rawMessage`, `metadata`).
 * README's table of error reasons says what to do about each reason. */
export declare class RapportError extends ConnectError {
  /** ErrorInfo's reason, such as `CONTACT_NOT_FOUND`. */
  readonly reason: string;
  /** The reason's value in its package's `ErrorReason` enum. */
  readonly reasonValue: number | undefined;
  /** ErrorInfo's metadata, such as the survivor of a merge. */
  readonly errorMetadata: Record<string, string>;
  readonly fieldViolations: FieldViolation[];
  /** How long to wait before trying again, when the service says. */
  readonly retryDelayMs: number | undefined;
  readonly requestId: string;
  static from(error: unknown, method?: unknown): RapportError;
}

export interface ClientOptions {
  /** Deadline of calls that set none (default 10,000 ms). */
  timeoutMs?: number;
  retry?: RetryPolicy;
}

export interface RapportClients {
  contacts: Client<typeof ContactsService>;
  feedback: Client<typeof FeedbackService>;
  segmentation: Client<typeof SegmentationService>;
  admin: Client<typeof GatewayAdminService>;
}

export declare function rapportInterceptor(apiKey?: string, retry?: RetryPolicy): Interceptor;
export declare function createNodeClient(
  baseUrl: string,
  apiKey?: string,
  options?: ClientOptions,
): RapportClients & { close(): void };
export declare function createWebClient(
  baseUrl: string,
  apiKey?: string,
  options?: ClientOptions,
): RapportClients;
