// k6-jobs/spike.js: the "spike" profile (report 000): VUS users hit "issue coupon" at
// once, one request each.
//
// per-vu-iterations, 1 iteration per VU, all VUs started together; the run may take at
// most DURATION seconds (scaled by TIME_SCALE).
// Env (see lib.js for the shared ones): VUS (1000), DURATION (60).
import { envNumber, issueOnce, options as opts, scaled, segmentShare, setupRun, summarize } from './lib.js';

const PROFILE = 'spike';
const VUS = Math.max(1, Math.round(envNumber('VUS', 1000)));
const MAX_SECS = scaled(envNumber('DURATION', 60));

export const options = opts(PROFILE, {
  executor: 'per-vu-iterations',
  vus: VUS,
  iterations: 1,
  maxDuration: `${MAX_SECS}s`,
});
// Every user must get an answer: a spike that leaves iterations unfinished failed.
options.thresholds.iterations = [`count>=${segmentShare(VUS)}`];

export const setup = () => setupRun(PROFILE, `vus=${VUS} max_duration=${MAX_SECS}s`);
export default issueOnce;
export const handleSummary = (data) => summarize(PROFILE, data, VUS);
