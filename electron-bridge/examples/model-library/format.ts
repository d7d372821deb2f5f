// Words and numbers for people: sizes, speeds, times left, and what an error means
// for the user (what happened, what to do), never a stack or a file name.
import type { ModelManagerError, StatusEvent } from '@model-manager/electron-bridge/renderer';

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

export function bytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

export const speed = (bps: number): string => `${bytes(bps)}/s`;

export function eta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s left`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s left`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min left`;
}

/** A sidecar or bridge error → one sentence the user can act on. */
export function errorText(error: { code: string; message: string; data?: unknown }, subject?: string): string {
  const data = (error.data ?? {}) as Record<string, unknown>;
  const model = subject ?? [data.modelId, data.version].filter(Boolean).join(' ');
  switch (error.code) {
    case 'MODEL_NOT_AVAILABLE':
      return `${model || 'This model'} is not installed on this computer yet (${String(data.reason ?? 'not installed').replace(/_/g, ' ')}).`;
    case 'INSUFFICIENT_DISK_SPACE':
      return `Not enough disk space to install ${model || 'this model'}. Free up space on the drive that holds your models, then try again.`;
    case 'REPOSITORY_UNAVAILABLE':
      return `The model repository cannot be reached${model ? ` (installing ${model})` : ''}. Check your network connection or proxy settings, then try again.`;
    case 'NETWORK_ERROR':
      return `The download of ${model || 'the model'} was interrupted by a network problem. It can be resumed.`;
    case 'MODEL_NOT_FOUND':
      return `There is no model called ${model || 'that'} in the repository.`;
    case 'VERSION_NOT_FOUND':
      return `The repository has no such version of ${model || 'this model'}.`;
    case 'CHECKSUM_MISMATCH':
      return `The downloaded files of ${model || 'the model'} were damaged on the way. Try the install again.`;
    case 'SIDECAR_BROKEN':
    case 'PROTOCOL_MISMATCH':
      return `The model service is not working: ${error.message}`;
    case 'REQUEST_TIMEOUT':
    case 'SIDECAR_EXITED':
      return 'The model service did not answer in time. Try again in a moment.';
    default:
      return error.message;
  }
}

export const describeError = (error: unknown, subject?: string): { code: string; text: string } => {
  const e = error as Partial<ModelManagerError>;
  const code = typeof e?.code === 'string' ? e.code : 'ERROR';
  return { code, text: errorText({ code, message: String(e?.message ?? error), data: e?.data }, subject) };
};

export function statusText(status: StatusEvent | null): { text: string; alert: boolean } {
  switch (status?.state) {
    case undefined:
    case 'starting':
      return { text: 'Starting the model service…', alert: false };
    case 'running':
      return { text: 'Model service running.', alert: false };
    case 'restarting':
      return { text: `The model service stopped; restarting${status.delayMs ? ` in ${(status.delayMs / 1000).toFixed(1)} s` : ''}…`, alert: true };
    case 'broken':
      return { text: `The model service could not be started${status.error ? `: ${status.error.message}` : ''}. Restart the app; if this persists, reinstall it.`, alert: true };
    default:
      return { text: 'The model service is stopped.', alert: true };
  }
}
