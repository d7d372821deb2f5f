// JSON-RPC 2.0 over lines. json-rpc-2.0 (transport-agnostic, no dependencies) keeps the
// id → pending-request map and the per-request timeouts; this module owns the parts
// it leaves to the transport: parsing each line defensively, routing notifications,
// and turning JSON-RPC errors into the typed ModelManagerError subclasses.
import { JSONRPCClient, JSONRPCErrorException, createJSONRPCErrorResponse } from 'json-rpc-2.0';
import {
  ClientDisposedError,
  ModelManagerError,
  ProtocolError,
  RequestTimeoutError,
  SidecarBrokenError,
  SidecarExitedError,
  errorFromRpc,
} from './errors.js';
import type { MethodName, Methods } from './types.js';

// Codes only this side produces, so a sidecar error can never be mistaken for them.
const TIMEOUT_CODE = -1_000_001;
const CLIENT_SIDE_CODE = 0; // json-rpc-2.0's code for send failures and rejectAllPendingRequests

export type PendingRejection = 'exited' | 'disposed' | 'broken';

const REJECTION_CLASSES = {
  exited: SidecarExitedError,
  disposed: ClientDisposedError,
  broken: SidecarBrokenError,
} as const;

export interface RpcHandlers {
  /** Write one serialized message (no newline) to the peer; throw if impossible. */
  send(line: string): void;
  notification(method: string, params: unknown): void;
  /** A line that is not a message we understand; never fatal. */
  malformed(reason: string, line: string): void;
}

export class RpcPeer {
  private readonly client: JSONRPCClient;
  // Our own handle on each pending call, so rejectAll can give each the right error
  // class at once (the library only knows one generic rejection).
  private readonly pending = new Set<{ method: string; reject(error: ModelManagerError): void }>();

  constructor(private readonly handlers: RpcHandlers) {
    this.client = new JSONRPCClient((payload) => {
      handlers.send(JSON.stringify(payload));
    });
  }

  async request<M extends MethodName>(
    method: M,
    params: Methods[M]['params'] | undefined,
    timeoutMs: number,
  ): Promise<Methods[M]['result']> {
    const timed = this.client.timeout(timeoutMs, (id) =>
      createJSONRPCErrorResponse(id, TIMEOUT_CODE, `${method} got no answer within ${timeoutMs} ms`),
    );
    return new Promise((resolve, reject) => {
      const entry = { method, reject };
      this.pending.add(entry);
      Promise.resolve(timed.request(method, params ?? {}))
        .then(resolve, (error: unknown) => reject(this.translate(error, method)))
        .finally(() => this.pending.delete(entry));
    });
  }

  /** Feed one line from the peer. Anything unexpected is reported, never thrown. */
  handleLine(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      this.handlers.malformed('not JSON', line);
      return;
    }
    for (const item of Array.isArray(message) ? message : [message]) this.handleMessage(item, line);
  }

  /** Reject every pending request; `why` picks the error class they get. */
  rejectAll(why: PendingRejection, message: string): void {
    for (const entry of this.pending) entry.reject(new REJECTION_CLASSES[why](`${entry.method}: ${message}`, { method: entry.method }));
    this.pending.clear();
    this.client.rejectAllPendingRequests(message); // settles the library's promises (ignored now)
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  private handleMessage(message: unknown, line: string): void {
    if (!message || typeof message !== 'object') {
      this.handlers.malformed('not a JSON-RPC object', line);
      return;
    }
    const m = message as Record<string, unknown>;
    if (m.jsonrpc !== '2.0') {
      this.handlers.malformed('not JSON-RPC 2.0', line);
    } else if (typeof m.method === 'string' && m.id === undefined) {
      this.handlers.notification(m.method, m.params);
    } else if ((typeof m.id === 'number' || typeof m.id === 'string') && ('result' in m || isErrorObject(m.error))) {
      this.client.receive(m as never); // an unknown id (e.g. answered after its timeout) is ignored
    } else if (m.id === null && isErrorObject(m.error)) {
      // The peer could not read something we sent (it answers with id null).
      this.handlers.malformed(`peer reported ${m.error.code} ${m.error.message}`, line);
    } else {
      this.handlers.malformed('neither a response nor a notification', line);
    }
  }

  private translate(error: unknown, method: string): ModelManagerError {
    if (!(error instanceof JSONRPCErrorException)) {
      return new ProtocolError(`${method}: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (error.code === TIMEOUT_CODE) return new RequestTimeoutError(error.message, { method });
    if (error.code === CLIENT_SIDE_CODE) {
      // The request could not be written: the sidecar's stdin is gone.
      return new SidecarExitedError(`${method}: ${error.message}`, { method });
    }
    return errorFromRpc({ code: error.code, message: error.message, data: error.data });
  }
}

function isErrorObject(value: unknown): value is { code: number; message: string } {
  return (
    !!value &&
    typeof value === 'object' &&
    typeof (value as { code?: unknown }).code === 'number' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}
