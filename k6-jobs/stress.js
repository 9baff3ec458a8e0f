// k6-jobs/stress.js: the "stress" profile (load-test reports 002 and 004).
//
// ramping-vus (looping users, closed model), every stage scaled by TIME_SCALE: STEPS
// steps of VUS/STEPS more users, each added within 1 s and held for DURATION seconds
// (60), then a 30 s ramp-down. Report 002: VUS=2000, STEPS=4 (+500 a minute);
// report 004: VUS=300, STEPS=8.
// Env (see lib.js for the shared ones): VUS (2000), STEPS (4), DURATION (60 per step).
import { envNumber, issueOnce, options as opts, scaled, setupRun, summarize } from './lib.js';

const PROFILE = 'stress';
const VUS = Math.max(1, Math.round(envNumber('VUS', 2000)));
const STEPS = Math.max(1, Math.round(envNumber('STEPS', 4)));
const HOLD = scaled(envNumber('DURATION', 60));
const STAGES = [];
for (let i = 1; i <= STEPS; i++) {
  const target = Math.round((VUS * i) / STEPS);
  STAGES.push({ duration: '1s', target }, { duration: `${HOLD}s`, target });
}
STAGES.push({ duration: `${scaled(30)}s`, target: 0 });

export const options = opts(PROFILE, {
  executor: 'ramping-vus',
  startVUs: 0,
  stages: STAGES,
  gracefulRampDown: '5s',
});

export const setup = () => setupRun(PROFILE, `vus=${VUS} steps=${STEPS} hold=${HOLD}s`);
export default issueOnce;
export const handleSummary = (data) => summarize(PROFILE, data);
