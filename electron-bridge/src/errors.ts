// Errors the bridge raises. Sidecar errors (JSON-RPC codes 1001..1013, data.code = the
// name) become one subclass per name; the bridge adds its own for timeouts, exits and
// IPC. Pure module (no Node imports) so the renderer can rebuild typed errors too.
import { ERROR_CODES, type ErrorName } from './generated/wire.js';
import type { UnavailableReason } from './types.js';

/** What crosses a process or context boundary: enough to rebuild the typed error. */
export interface ErrorPayload {
  code: string;
  message: string;
  data?: unknown;
}

export class ModelManagerError extends Error {
  /** The error's name on the wire, e.g. "MODEL_NOT_AVAILABLE", or a bridge code. */
  readonly code: string;
  /** The JSON-RPC error code when the sidecar sent it. */
  readonly rpcCode: number | undefined;
  readonly data: unknown;

  constructor(code: string, message: string, data?: unknown, rpcCode?: number) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.data = data;
    this.rpcCode = rpcCode ?? (ERROR_CODES as Record<string, number>)[code];
  }

  toPayload(): ErrorPayload {
    return { code: this.code, message: this.message, data: this.data ?? null };
  }
}

type ErrorClass = new (message: string, data?: unknown) => ModelManagerError;

const sidecarError = (code: ErrorName): ErrorClass =>
  class extends ModelManagerError {
    constructor(message: string, data?: unknown) {
      super(code, message, data);
    }
  };

function field<T>(data: unknown, key: string): T | undefined {
  return data && typeof data === 'object' ? ((data as Record<string, unknown>)[key] as T) : undefined;
}

/** getModelPath: the model is not on disk and intact (yet). */
export class ModelNotAvailableError extends ModelManagerError {
  readonly modelId: string;
  readonly version: string | null;
  readonly reason: UnavailableReason;

  constructor(message: string, data?: unknown) {
    super('MODEL_NOT_AVAILABLE', message, data);
    this.modelId = field<string>(data, 'modelId') ?? '';
    this.version = field<string | null>(data, 'version') ?? null;
    this.reason = field<UnavailableReason>(data, 'reason') ?? 'not_installed';
  }
}
export class ModelNotFoundError extends sidecarError('MODEL_NOT_FOUND') {}
export class VersionNotFoundError extends sidecarError('VERSION_NOT_FOUND') {}
export class RepositoryUnavailableError extends sidecarError('REPOSITORY_UNAVAILABLE') {}
export class ChecksumMismatchError extends sidecarError('CHECKSUM_MISMATCH') {}
export class InsufficientDiskSpaceError extends sidecarError('INSUFFICIENT_DISK_SPACE') {}
export class TaskNotFoundError extends sidecarError('TASK_NOT_FOUND') {}
export class UnsafeManifestError extends sidecarError('UNSAFE_MANIFEST') {}
export class InvalidStateError extends sidecarError('INVALID_STATE') {}
export class SchedulerUnavailableError extends sidecarError('SCHEDULER_UNAVAILABLE') {}
export class NetworkError extends sidecarError('NETWORK_ERROR') {}
/** A host's TLS certificate did not verify; `data.host` names it. */
export class TlsError extends sidecarError('TLS_ERROR') {}
/** The home (or a folder in it) is not writable by this user; `data.path` names it. */
export class PermissionDeniedError extends sidecarError('PERMISSION_DENIED') {}
/** The home is damaged where the sidecar must write (a link, a file for a folder). */
export class HomeUnavailableError extends sidecarError('HOME_UNAVAILABLE') {}
/**
 * A catalog or manifest that no trusted key vouches for (`--signatures enforce`):
 * `data.reason` is unsigned | bad_signature | unknown_key | rollback | expired, `data.host`
 * the repository, `data.modelId` / `data.version` the model when it concerns one.
 * Nothing was installed; installed models stay usable.
 */
export class SignatureInvalidError extends sidecarError('SIGNATURE_INVALID') {}
/** The sidecar was started with a bad option or setting; `data.reason` says which. */
export class InvalidOptionError extends sidecarError('INVALID_OPTION') {}

// `satisfies` makes tsc fail when schemas/errors.json gains a name without a class.
const SIDECAR_ERRORS = {
  MODEL_NOT_AVAILABLE: ModelNotAvailableError,
  MODEL_NOT_FOUND: ModelNotFoundError,
  VERSION_NOT_FOUND: VersionNotFoundError,
  REPOSITORY_UNAVAILABLE: RepositoryUnavailableError,
  CHECKSUM_MISMATCH: ChecksumMismatchError,
  INSUFFICIENT_DISK_SPACE: InsufficientDiskSpaceError,
  TASK_NOT_FOUND: TaskNotFoundError,
  UNSAFE_MANIFEST: UnsafeManifestError,
  INVALID_STATE: InvalidStateError,
  SCHEDULER_UNAVAILABLE: SchedulerUnavailableError,
  NETWORK_ERROR: NetworkError,
  TLS_ERROR: TlsError,
  PERMISSION_DENIED: PermissionDeniedError,
  HOME_UNAVAILABLE: HomeUnavailableError,
  SIGNATURE_INVALID: SignatureInvalidError,
  INVALID_OPTION: InvalidOptionError,
} as const satisfies Record<ErrorName, ErrorClass>;

// --- errors of the bridge itself -------------------------------------------------------

/** No answer within the request's timeout (the sidecar may still be working on it). */
export class RequestTimeoutError extends ModelManagerError {
  constructor(message: string, data?: unknown) {
    super('REQUEST_TIMEOUT', message, data);
  }
}
/** The sidecar exited (or its stdin broke) while the request was pending. */
export class SidecarExitedError extends ModelManagerError {
  constructor(message: string, data?: unknown) {
    super('SIDECAR_EXITED', message, data);
  }
}
/** The sidecar crashed more often than the restart cap allows; the client gave up. */
export class SidecarBrokenError extends ModelManagerError {
  constructor(message: string, data?: unknown) {
    super('SIDECAR_BROKEN', message, data);
  }
}
/** dispose() was called. */
export class ClientDisposedError extends ModelManagerError {
  constructor(message: string, data?: unknown) {
    super('CLIENT_DISPOSED', message, data);
  }
}
/** A JSON-RPC level error (-32xxx: bad params, unknown method) or a malformed answer. */
export class ProtocolError extends ModelManagerError {
  constructor(message: string, data?: unknown, rpcCode?: number) {
    super('PROTOCOL_ERROR', message, data, rpcCode);
  }
}
/** The sidecar speaks another protocol version than this bridge was built for. */
export class ProtocolMismatchError extends ModelManagerError {
  constructor(message: string, data?: unknown) {
    super('PROTOCOL_MISMATCH', message, data);
  }
}
/** IPC: the calling frame is not one the app trusts. */
export class ForbiddenSenderError extends ModelManagerError {
  constructor(message: string, data?: unknown) {
    super('FORBIDDEN_SENDER', message, data);
  }
}

const BRIDGE_ERRORS: Record<string, ErrorClass> = {
  REQUEST_TIMEOUT: RequestTimeoutError,
  SIDECAR_EXITED: SidecarExitedError,
  SIDECAR_BROKEN: SidecarBrokenError,
  CLIENT_DISPOSED: ClientDisposedError,
  PROTOCOL_ERROR: ProtocolError,
  PROTOCOL_MISMATCH: ProtocolMismatchError,
  FORBIDDEN_SENDER: ForbiddenSenderError,
};

const CODE_TO_NAME = new Map<number, string>(
  Object.entries(ERROR_CODES).map(([name, code]) => [code, name]),
);

/** A JSON-RPC error object from the sidecar → the typed error. */
export function errorFromRpc(error: { code: number; message: string; data?: unknown }): ModelManagerError {
  const name = field<string>(error.data, 'code') ?? CODE_TO_NAME.get(error.code);
  if (name && name in SIDECAR_ERRORS) {
    return new SIDECAR_ERRORS[name as ErrorName](error.message, error.data);
  }
  if (name) return new ModelManagerError(name, error.message, error.data, error.code); // a newer sidecar's error
  return new ProtocolError(error.message, error.data, error.code);
}

/** An {code, message, data} payload (e.g. from an IPC envelope) → the typed error. */
export function errorFromPayload(payload: ErrorPayload): ModelManagerError {
  const Known = (SIDECAR_ERRORS as Record<string, ErrorClass>)[payload.code] ?? BRIDGE_ERRORS[payload.code];
  if (Known) return new Known(payload.message, payload.data ?? undefined);
  return new ModelManagerError(payload.code, payload.message, payload.data ?? undefined);
}

/** Any thrown value → a payload that survives structured cloning. */
export function toErrorPayload(error: unknown): ErrorPayload {
  if (error instanceof ModelManagerError) return error.toPayload();
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'INTERNAL_ERROR', message, data: null };
}
