// k6-jobs/soak.js: the "soak" profile: a steady arrival rate held for long, to show leaks,
// lag that builds up, and latency that creeps.
//
// constant-arrival-rate at RATE for DURATION (scaled by TIME_SCALE).
// Env (see lib.js for the shared ones): RATE (200), DURATION (600), PRE_VUS / MAX_VUS.
import { envNumber, issueOnce, options as opts, scaled, setupRun, summarize } from './lib.js';

const PROFILE = 'soak';
const RATE = Math.max(1, Math.round(envNumber('RATE', 200)));
const SECS = scaled(envNumber('DURATION', 600));
const EXPECTED = RATE * SECS;
const PRE_VUS = Math.round(envNumber('PRE_VUS', Math.max(10, Math.ceil(RATE / 4))));
const MAX_VUS = Math.round(envNumber('MAX_VUS', Math.max(PRE_VUS, RATE)));

export const options = opts(
  PROFILE,
  {
    executor: 'constant-arrival-rate',
    rate: RATE,
    timeUnit: '1s',
    duration: `${SECS}s`,
    preAllocatedVUs: PRE_VUS,
    maxVUs: MAX_VUS,
  },
  EXPECTED,
);

export const setup = () => setupRun(PROFILE, `rate=${RATE} duration=${SECS}s expected_iterations=${EXPECTED}`);
export default issueOnce;
export const handleSummary = (data) => summarize(PROFILE, data, EXPECTED);
