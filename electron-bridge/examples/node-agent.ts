// Example: the node-agent's job handler. The scheduler assigns a job naming a model;
// the handler asks the sidecar for the model's folder and runs inference, or hands the
// job back (MODEL_NOT_AVAILABLE, reported to the scheduler) without waiting or falling back.
import {
  JobRejectedError,
  createSchedulerReporter,
  requireModelForJob,
  type PathSource,
  type UnavailableReporter,
} from '../src/index.js';

/** The scheduler's job message (its wire names). */
export interface JobAssignMessage {
  job_id: string;
  required_model_id: string;
  required_model_version?: string | null;
  input: unknown;
}

export type JobOutcome =
  | { status: 'done'; jobId: string; output: unknown }
  | { status: 'rejected'; jobId: string; code: 'MODEL_NOT_AVAILABLE'; reason: string; reported: boolean };

export interface JobHandlerDeps {
  client: PathSource;
  reporter: UnavailableReporter;
  runInference(modelPath: string, input: unknown): Promise<unknown>;
  log?: (message: string) => void;
}

export function createJobHandler(deps: JobHandlerDeps): (job: JobAssignMessage) => Promise<JobOutcome> {
  return async (job) => {
    try {
      const model = await requireModelForJob(
        { jobId: job.job_id, modelId: job.required_model_id, modelVersion: job.required_model_version ?? null },
        deps.client,
        deps.reporter,
      );
      return { status: 'done', jobId: job.job_id, output: await deps.runInference(model.path, job.input) };
    } catch (error) {
      if (!(error instanceof JobRejectedError)) throw error;
      deps.log?.(`${error.message} (reported: ${error.reported}, ${error.elapsedMs.toFixed(1)} ms)`);
      return { status: 'rejected', jobId: job.job_id, code: 'MODEL_NOT_AVAILABLE', reason: error.reason, reported: error.reported };
    }
  };
}

// Wiring in the agent's main:
//   const client = createModelManager({ python, home, repository, scheduler });
//   const handle = createJobHandler({
//     client,
//     reporter: createSchedulerReporter({ schedulerUrl: scheduler, nodeId }),
//     runInference,
//   });
export { createSchedulerReporter };
