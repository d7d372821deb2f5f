// The node-agent's question before each job: "where is this model?" — answered from
// the sidecar's memory. When the model is not there the agent does not wait or fall
// back: it reports MODEL_NOT_AVAILABLE to the scheduler, which gives the job to another
// node, and rejects the job. The whole flow has one time budget (300 ms by default).
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { ModelNotAvailableError } from './errors.js';
import type { CallOptions } from './client.js';
import type { GetModelPathParams, GetModelPathResult, UnavailableReason } from './types.js';

export interface ModelJob {
  jobId: string;
  modelId: string;
  /** Omitted or null: the newest installed version. */
  modelVersion?: string | null;
}

export interface UnavailableReport {
  jobId: string;
  modelId: string;
  version: string | null;
  reason: UnavailableReason;
  message: string;
}

/** Sends one report; must honour the signal (the budget's remainder). */
export type UnavailableReporter = (report: UnavailableReport, signal: AbortSignal) => Promise<void>;

export interface PathSource {
  getModelPath(params: GetModelPathParams, options?: CallOptions): Promise<GetModelPathResult>;
}

/** The job was handed back: the model is not available here. Still a ModelNotAvailableError. */
export class JobRejectedError extends ModelNotAvailableError {
  readonly jobId: string;
  /** Whether the scheduler acknowledged the report in time. */
  readonly reported: boolean;
  readonly reportError: unknown;
  /** From the getModelPath call to the end of the report. */
  readonly elapsedMs: number;

  constructor(cause: ModelNotAvailableError, job: ModelJob, reported: boolean, reportError: unknown, elapsedMs: number) {
    super(`job ${job.jobId} rejected: ${cause.message}`, cause.data);
    this.jobId = job.jobId;
    this.reported = reported;
    this.reportError = reportError;
    this.elapsedMs = elapsedMs;
  }
}

export interface RequireModelOptions {
  /** Budget for the path lookup plus the report (default 300 ms). */
  budgetMs?: number;
}

/**
 * The installed model's path for `job`; or, when the sidecar says MODEL_NOT_AVAILABLE,
 * report it and reject with JobRejectedError. Other errors (timeout, a broken sidecar)
 * propagate unchanged: they are this node's problem, not the model's absence.
 */
export async function requireModelForJob(
  job: ModelJob,
  client: PathSource,
  reporter: UnavailableReporter,
  options: RequireModelOptions = {},
): Promise<GetModelPathResult> {
  const budgetMs = options.budgetMs ?? 300;
  const started = performance.now();
  try {
    return await client.getModelPath({ modelId: job.modelId, version: job.modelVersion ?? null }, { timeoutMs: budgetMs });
  } catch (error) {
    if (!(error instanceof ModelNotAvailableError)) throw error;
    const report: UnavailableReport = {
      jobId: job.jobId,
      modelId: error.modelId || job.modelId,
      version: error.version ?? job.modelVersion ?? null,
      reason: error.reason,
      message: error.message,
    };
    const left = Math.max(1, Math.ceil(budgetMs - (performance.now() - started))); // AbortSignal.timeout wants an integer
    let reported = false;
    let reportError: unknown = null;
    try {
      await reporter(report, AbortSignal.timeout(left));
      reported = true;
    } catch (failure) {
      reportError = failure; // the job is rejected either way; the caller may log or retry the report
    }
    throw new JobRejectedError(error, job, reported, reportError, performance.now() - started);
  }
}

export interface SchedulerReporterOptions {
  /** The scheduling server's base URL. */
  schedulerUrl: string;
  /** This node's id, sent along so the scheduler can skip it for the job. */
  nodeId?: string;
  token?: string;
  /** Use this fetch instead of node:http (e.g. a proxy-aware one). */
  fetch?: typeof fetch;
}

/** POSTs `{model_id, kind: "MODEL_NOT_AVAILABLE", ...}` to `{scheduler}/api/model-usage/events`. */
export function createSchedulerReporter(options: SchedulerReporterOptions): UnavailableReporter {
  const url = new URL('api/model-usage/events', options.schedulerUrl.replace(/\/?$/, '/'));
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
  };
  // node:http by default, not global fetch: fetch loads undici on first use (40-100 ms
  // measured), which the first report after start-up would pay inside its 300 ms budget.
  // A keep-alive agent spares later reports the TCP handshake.
  const post = options.fetch ? viaFetch(options.fetch) : viaHttp(url);
  return async (report, signal) => {
    const body = JSON.stringify({
      model_id: report.modelId,
      kind: 'MODEL_NOT_AVAILABLE',
      version: report.version,
      reason: report.reason,
      job_id: report.jobId,
      node_id: options.nodeId ?? null,
    });
    const status = await post(url, headers, body, signal);
    if (status < 200 || status >= 300) throw new Error(`the scheduler answered ${status} to the report`);
  };
}

type Post = (url: URL, headers: Record<string, string>, body: string, signal: AbortSignal) => Promise<number>;

function viaFetch(doFetch: typeof fetch): Post {
  return async (url, headers, body, signal) => {
    const response = await doFetch(url, { method: 'POST', headers, body, signal });
    await response.arrayBuffer(); // drain, so the connection is reused
    return response.status;
  };
}

function viaHttp(target: URL): Post {
  const secure = target.protocol === 'https:';
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const send = secure ? httpsRequest : httpRequest;
  return (url, headers, body, signal) =>
    new Promise((resolve, reject) => {
      const request = send(url, { method: 'POST', agent, signal, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (response) => {
        response.resume(); // drain, so the connection is reused
        response.on('end', () => resolve(response.statusCode ?? 0));
        response.on('error', reject);
      });
      request.on('error', reject);
      request.end(body);
    });
}
