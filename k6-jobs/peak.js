// k6-jobs/peak.js: the "peak" profile (load-test report 002).
//
// ramping-arrival-rate, every stage scaled by TIME_SCALE:
//   10 s at BASE_RATE -> 20 s climb to RATE -> 10 s back to BASE_RATE -> 20 s to 0
// Env (see lib.js for the shared ones): RATE (2000; PEAK_RATE is an older name for it),
// BASE_RATE (100), PRE_VUS / MAX_VUS (max(50, rate/4) / max(that, rate)).
import { envNumber, expectedArrivals, issueOnce, options as opts, scaled, setupRun, summarize } from './lib.js';

const PROFILE = 'peak';
const RATE = Math.max(1, Math.round(envNumber('RATE', envNumber('PEAK_RATE', 2000))));
const BASE_RATE = Math.round(envNumber('BASE_RATE', 100));
const STAGES = [
  [scaled(10), BASE_RATE],
  [scaled(20), RATE],
  [scaled(10), BASE_RATE],
  [scaled(20), 0],
];
const EXPECTED = expectedArrivals(BASE_RATE, STAGES);
const TOP = Math.max(RATE, BASE_RATE);
const PRE_VUS = Math.round(envNumber('PRE_VUS', Math.max(50, Math.ceil(TOP / 4))));
const MAX_VUS = Math.round(envNumber('MAX_VUS', Math.max(PRE_VUS, TOP)));

export const options = opts(
  PROFILE,
  {
    executor: 'ramping-arrival-rate',
    startRate: BASE_RATE,
    timeUnit: '1s',
    preAllocatedVUs: PRE_VUS,
    maxVUs: MAX_VUS,
    stages: STAGES.map(([secs, target]) => ({ duration: `${secs}s`, target })),
  },
  EXPECTED,
);

export const setup = () =>
  setupRun(PROFILE, `stages=${JSON.stringify(STAGES)} expected_iterations=${EXPECTED} vus=${PRE_VUS}..${MAX_VUS}`);
export default issueOnce;
export const handleSummary = (data) => summarize(PROFILE, data, EXPECTED);
