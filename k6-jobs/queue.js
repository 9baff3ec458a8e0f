// k6-jobs/queue.js: the "queue" profile (load-test report 001): users join a campaign's
// waiting room at a rising rate, each polls until decided and issues when admitted.
//
// ramping-arrival-rate, every stage scaled by TIME_SCALE: the arrival rate climbs from 0
// to RATE users/s over DURATION seconds (+10/s about every DURATION*10/RATE s; the
// defaults, 33/s over 600 s, bring ~10 000 users, report 001's crowd), then nobody new
// arrives while those in line are decided (at most MAX_WAIT, then they give up). Each
// iteration is one fresh user through lib.js's waiting-room flow (WAITING_ROOM is implied).
// Env (see lib.js for the shared ones): RATE (33), DURATION (600), MAX_WAIT (300),
// POLL_MIN / POLL_MAX (0.25 / 5), PRE_VUS / MAX_VUS (max(50, 5 x RATE) / RATE x (MAX_WAIT +
// 10), at most 20 000). ERROR_RATE defaults to 0 here.
import { MAX_WAIT, envNumber, expectedArrivals, inWaitingRoom, options as opts, scaled, setupRun, summarize, userIdFor, waitingRoomUser } from './lib.js';

const PROFILE = 'queue';
inWaitingRoom();
const RATE = Math.max(1, Math.round(envNumber('RATE', 33)));
const STAGES = [[scaled(envNumber('DURATION', 600)), RATE]];
const EXPECTED = expectedArrivals(0, STAGES);
// Users hold their VU while they wait: k6 drops arrivals while it starts VUs mid-run, so
// start many up front.
const MAX_VUS = Math.round(envNumber('MAX_VUS', Math.min(20000, RATE * (MAX_WAIT + 10))));
const PRE_VUS = Math.min(MAX_VUS, Math.round(envNumber('PRE_VUS', Math.max(50, RATE * 5))));

export const options = opts(
  PROFILE,
  {
    executor: 'ramping-arrival-rate',
    startRate: 0,
    timeUnit: '1s',
    preAllocatedVUs: PRE_VUS,
    maxVUs: MAX_VUS,
    stages: STAGES.map(([secs, target]) => ({ duration: `${secs}s`, target })),
    // Users still in line when arrivals stop finish their wait (MAX_WAIT bounds it).
    gracefulStop: `${Math.ceil(MAX_WAIT) + 15}s`,
  },
  EXPECTED,
  0,
);

export const setup = () =>
  setupRun(PROFILE, `stages=${JSON.stringify(STAGES)} expected_users=${EXPECTED} vus=${PRE_VUS}..${MAX_VUS} max_wait=${MAX_WAIT}s`);
export default (data) => waitingRoomUser(userIdFor(data));
export const handleSummary = (data) => summarize(PROFILE, data, EXPECTED);
