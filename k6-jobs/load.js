// k6-jobs/load.js: the "load" profile (load-test report 002).
//
// ramping-arrival-rate, every stage scaled by TIME_SCALE:
//   30 s ramp to RATE -> hold RATE for DURATION -> 30 s ramp down to 0
// Env (see lib.js for the shared ones): RATE (1000), DURATION (60), PRE_VUS / MAX_VUS.
import { envNumber, expectedArrivals, issueOnce, options as opts, scaled, setupRun, summarize } from './lib.js';

const PROFILE = 'load';
const RATE = Math.max(1, Math.round(envNumber('RATE', 1000)));
const STAGES = [
  [scaled(30), RATE],
  [scaled(envNumber('DURATION', 60)), RATE],
  [scaled(30), 0],
];
const EXPECTED = expectedArrivals(0, STAGES);
const PRE_VUS = Math.round(envNumber('PRE_VUS', Math.max(20, Math.ceil(RATE / 4))));
const MAX_VUS = Math.round(envNumber('MAX_VUS', Math.max(PRE_VUS, RATE)));

export const options = opts(
  PROFILE,
  {
    executor: 'ramping-arrival-rate',
    startRate: 0,
    timeUnit: '1s',
    preAllocatedVUs: PRE_VUS,
    maxVUs: MAX_VUS,
    stages: STAGES.map(([secs, target]) => ({ duration: `${secs}s`, target })),
  },
  EXPECTED,
);

export const setup = () => setupRun(PROFILE, `stages=${JSON.stringify(STAGES)} expected_iterations=${EXPECTED}`);
export default issueOnce;
export const handleSummary = (data) => summarize(PROFILE, data, EXPECTED);
