// k6-jobs/smoke.js: the "smoke" profile (report 002): one looping user for DURATION
// seconds, to prove the path works before anything heavier.
//
// constant-vus, VUS (1) users for DURATION (10, scaled by TIME_SCALE).
// Env (see lib.js for the shared ones): VUS (1), DURATION (10).
import { envNumber, issueOnce, options as opts, scaled, setupRun, summarize } from './lib.js';

const PROFILE = 'smoke';
const VUS = Math.max(1, Math.round(envNumber('VUS', 1)));
const SECS = scaled(envNumber('DURATION', 10));

export const options = opts(PROFILE, {
  executor: 'constant-vus',
  vus: VUS,
  duration: `${SECS}s`,
});

export const setup = () => setupRun(PROFILE, `vus=${VUS} duration=${SECS}s`);
export default issueOnce;
export const handleSummary = (data) => summarize(PROFILE, data);
