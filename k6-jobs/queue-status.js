// k6-jobs/queue-status.js: the "queue-status" profile (load-test report 001): VUS users
// join a campaign's waiting room once, then poll where they stand for DURATION seconds.
//
// Report 001's locust shape: VUS (2000) users started SPAWN (50) a second, all of them
// until DURATION (300 s, both scaled by TIME_SCALE) is over, each waiting THINK_MIN..
// THINK_MAX (1..5 s, uniform: locust's `between(1, 5)`) between two requests. Each VU is
// one user for the whole run: it joins, then polls with its queue token. Admitted, it
// issues once with its admission (ISSUE=0: never) and keeps polling (`issued`); sold out,
// it keeps polling (`sold_out`); expired, it joins again. Answers are counted and checked
// by lib.js (WAITING_ROOM is implied).
// Env (see lib.js for the shared ones): VUS (2000), SPAWN (50), DURATION (300), THINK_MIN
// (1), THINK_MAX (5), ISSUE (1). ERROR_RATE defaults to 0 here.
import { sleep } from 'k6';
import { envNumber, inWaitingRoom, issueAdmitted, options as opts, queueJoin, queuePoll, scaled, setupRun, summarize, userIdFor } from './lib.js';

const PROFILE = 'queue-status';
inWaitingRoom();
const VUS = Math.max(1, Math.round(envNumber('VUS', 2000)));
const SECS = scaled(envNumber('DURATION', 300));
const RAMP = Math.min(SECS, scaled(Math.ceil(VUS / Math.max(1, envNumber('SPAWN', 50)))));
const THINK_MIN = envNumber('THINK_MIN', 1);
const THINK_MAX = Math.max(THINK_MIN, envNumber('THINK_MAX', 5));
const think = () => THINK_MIN + (THINK_MAX - THINK_MIN) * Math.random();
const ISSUE = (__ENV.ISSUE || '1') !== '0';

const stages = [{ duration: `${RAMP}s`, target: VUS }, { duration: `${Math.max(1, SECS - RAMP)}s`, target: VUS }];
export const options = opts(PROFILE, { executor: 'ramping-vus', startVUs: 0, stages, gracefulStop: '10s', gracefulRampDown: '0s' }, undefined, 0);

// This VU's user: its id, its current queue token (null: join next) and whether it holds a coupon.
let me = null;

export default function (data) {
  if (me === null) {
    me = { userId: userIdFor(data, 's'), token: null, holds: false };
  }
  const a = me.token ? queuePoll(me.userId, me.token, me.holds) : queueJoin(me.userId, me.holds);
  if (a.state === 'waiting' || a.state === 'admitted') me.token = a.body.queueToken;
  if (a.state === 'expired') me.token = null;
  if (a.state === 'admitted' && ISSUE && !me.holds) me.holds = issueAdmitted(me.userId, a.body.admissionToken);
  sleep(think());
}

export const setup = () => setupRun(PROFILE, `vus=${VUS} ramp=${RAMP}s duration=${SECS}s think=${THINK_MIN}..${THINK_MAX}s issue=${ISSUE}`);
export const handleSummary = (data) => summarize(PROFILE, data);
