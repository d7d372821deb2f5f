// Results crossing IPC travel as envelopes: Electron turns an error thrown in
// ipcMain.handle into a bare message string, and contextBridge drops an Error's class
// and custom fields, so the error is sent as data and rebuilt where it is used.
import { errorFromPayload, toErrorPayload, type ErrorPayload } from './errors.js';

export type Envelope<T> = { ok: true; result: T } | { ok: false; error: ErrorPayload };

export async function envelope<T>(work: () => Promise<T> | T): Promise<Envelope<T>> {
  try {
    return { ok: true, result: await work() };
  } catch (error) {
    return { ok: false, error: toErrorPayload(error) };
  }
}

/** The result, or the typed ModelManagerError rebuilt from the envelope. */
export function unwrap<T>(value: Envelope<T>): T {
  if (value && typeof value === 'object' && value.ok === true) return value.result;
  if (value && typeof value === 'object' && value.ok === false) throw errorFromPayload(value.error);
  throw errorFromPayload({ code: 'PROTOCOL_ERROR', message: 'not an IPC envelope', data: null });
}
