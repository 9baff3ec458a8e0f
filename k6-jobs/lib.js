// k6-jobs/lib.js: what every profile shares: environment, the issue request with its
// checks and outcome counters, thresholds, and the compact JSON summary.
//
// Env (every profile reads the same names; each profile documents its defaults):
//   BASE_URL (http://127.0.0.1:8080)   CAMPAIGN (required)   RUN_ID (UTC timestamp)
//   RATE (arrival rate, req/s)   VUS (virtual users)   DURATION (seconds, main phase)
//   TIME_SCALE (1; scales every stage, min 1 s each)   P95_MS (1000)   ERROR_RATE (0.01)
//   DROPPED_TOLERANCE (0.01 of expected iterations)   REQ_TIMEOUT (10s)
//   SUMMARY_FILE (k6-summary.json; /dev/termination-log in a cluster Job)
//   SEGMENTS (1), INSTANCE: runners splitting the test and this one's index (the operator
//     sets both); expected iterations are this runner's share (segmentShare)
//   LOG_ISSUED (1: log `ISSUED <seq> <userId> <couponCode>` per 201 for scripts/k6-verdict)
//   STAMPEDE_JWT_HS256_SECRET, STAMPEDE_JWT_ISSUER, STAMPEDE_JWT_AUDIENCE: the service's
//     own settings; with a secret every user's request carries an HS256 bearer token for
//     that user, minted here (k6/crypto); without one, none (a service with --auth none)
//   WAITING_ROOM (0; 1: the campaign has a waiting room, docs/waiting-room.md: each user
//     joins the line, polls until decided and issues with the admission; the operator sets
//     it), POLL_MIN / POLL_MAX (0.25 / 5: bounds of the wait between two polls, seconds),
//     MAX_WAIT (300: seconds a user polls before giving up, counted as queue_gave_up)
//
// Every iteration is a fresh user `${runId}-${vu}-${iteration}` (plus the execution
// segment's instance when run split across Jobs) that POSTs /v1/campaigns/{c}/issue once.
// Expected answers for a fresh user: 201, 410 sold_out, 409 not_open/closed/paused. Errors:
// 5xx (503 overloaded included), timeouts, any other status (200 too: a fresh user cannot
// hold a coupon yet, so a replay means user ids collided), or a body off the contract.
// Each VU logs its first few answers off the contract (`OFF-CONTRACT <kind> status=…
// body=…`, k6's own error for a request that got no answer), so a failed run says why.
//
// With WAITING_ROOM=1 the user first POSTs /v1/campaigns/{c}/queue (201 waiting|admitted,
// 410 sold_out, 409 closed), then GETs it with the queue token (X-Stampede-Queue-Token),
// waiting min(pollAfterSeconds, estimatedWaitSeconds) between polls (within POLL_MIN..
// POLL_MAX), until admitted, sold_out or expired; admitted, it issues once with the
// admission token (X-Stampede-Admission). Every queue answer is counted (queue_waiting,
// _admitted, _sold_out, _expired, _issued, _closed, _other) and checked; errors are 5xx,
// timeouts, other statuses and bodies off the contract, as on the issue path. An admitted
// user whose issue is not a coupon counts in queue_admitted_no_coupon (stock-aware
// admission says: never), the wait from join to admission in queue_wait_ms.
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';

export function envNumber(name, dflt) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got "${raw}"`);
  return n;
}

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const CAMPAIGN = __ENV.CAMPAIGN || '';
export const TIME_SCALE = envNumber('TIME_SCALE', 1);
export const P95_MS = envNumber('P95_MS', 1000);
export const ERROR_RATE = envNumber('ERROR_RATE', 0.01);
const DROPPED_TOLERANCE = envNumber('DROPPED_TOLERANCE', 0.01);
const REQ_TIMEOUT = __ENV.REQ_TIMEOUT || '10s';
const SUMMARY_FILE = __ENV.SUMMARY_FILE || 'k6-summary.json';
const LOG_ISSUED = (__ENV.LOG_ISSUED || '1') !== '0';
// Whether users go through the waiting room: WAITING_ROOM, or a profile made for one.
let waitingRoom = ['1', 'true'].includes((__ENV.WAITING_ROOM || '').toLowerCase());
/** For the profiles made for a waiting room (queue, queue-status): as if WAITING_ROOM=1. */
export function inWaitingRoom() {
  waitingRoom = true;
}
export const POLL_MIN = envNumber('POLL_MIN', 0.25);
export const POLL_MAX = Math.max(POLL_MIN, envNumber('POLL_MAX', 5));
export const MAX_WAIT = envNumber('MAX_WAIT', 300);
// Set by the operator's Jobs so users stay distinct across execution segments.
const INSTANCE = __ENV.INSTANCE || '';
// Set by the operator's Jobs: how many runners split the test into equal execution
// segments; INSTANCE is this runner's (0-based).
const SEGMENTS = Math.max(1, Math.round(envNumber('SEGMENTS', 1)));
const SEGMENT = Math.min(SEGMENTS - 1, Math.round(envNumber('INSTANCE', 0)));

/**
 * This runner's share of `total` users or iterations: k6 gives segment i of n equal ones
 * floor(total / n), plus one while i < total mod n (the whole when the test is not split).
 * Counts a threshold or summary compares with one runner's figures are its share.
 */
export function segmentShare(total) {
  return Math.floor(total / SEGMENTS) + (SEGMENT < total % SEGMENTS ? 1 : 0);
}

const JWT_SECRET = __ENV.STAMPEDE_JWT_HS256_SECRET || '';
const JWT_ISSUER = __ENV.STAMPEDE_JWT_ISSUER || '';
const JWT_AUDIENCE = __ENV.STAMPEDE_JWT_AUDIENCE || '';
const JWT_HEADER = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');

/** `Bearer <HS256 token for userId>` (ten minutes long), or null without a secret. */
export function bearer(userId) {
  if (!JWT_SECRET) return null;
  const now = Math.floor(Date.now() / 1000);
  // stampede_load_test: the issuers let only these tokens reach a load test's shadow campaign.
  const claims = { sub: userId, iss: JWT_ISSUER, aud: JWT_AUDIENCE, iat: now, exp: now + 600, stampede_load_test: true };
  const signed = `${JWT_HEADER}.${encoding.b64encode(JSON.stringify(claims), 'rawurl')}`;
  return `Bearer ${signed}.${crypto.hmac('sha256', JWT_SECRET, signed, 'base64rawurl')}`;
}

/** Seconds scaled by TIME_SCALE, at least 1. */
export const scaled = (seconds) => Math.max(1, Math.round(seconds * TIME_SCALE));

/** Iterations a ramping-arrival-rate shape asks for: the area under its rate curve. */
export function expectedArrivals(startRate, stages) {
  return Math.round(
    stages.reduce(
      (acc, [secs, target]) => ({ total: acc.total + ((acc.rate + target) / 2) * secs, rate: target }),
      { total: 0, rate: startRate },
    ).total,
  );
}

// The errors threshold: ERROR_RATE, else the profile's default (options()): the share of
// requests that may fail, 0 for none. Checks get no threshold of their own: every failed
// check is an error already, and counted per check (two an issue request) a threshold on
// them would overrule ERROR_RATE.
let errorRate = ERROR_RATE;

/**
 * Thresholds every profile sets; `whole` (arrival-rate profiles: the whole test's expected
 * iterations) adds dropped_iterations, held to this runner's share.
 */
export function thresholds(whole) {
  const expected = whole === undefined ? undefined : segmentShare(whole);
  const t = {
    http_req_duration: [`p(95)<${P95_MS}`],
    errors: [`rate<=${errorRate}`],
  };
  if (expected !== undefined) {
    t.dropped_iterations = [`count<=${droppedMax(expected)}`];
  }
  return t;
}

const droppedMax = (expected) => Math.max(1, Math.floor(DROPPED_TOLERANCE * expected));

/** Options shared by every profile; `errorRateDefault` replaces 0.01 when ERROR_RATE is unset. */
export function options(profile, scenario, expected, errorRateDefault) {
  if (errorRateDefault !== undefined && (__ENV.ERROR_RATE || '') === '') {
    errorRate = errorRateDefault;
  }
  return {
    scenarios: { [profile]: scenario },
    thresholds: thresholds(expected),
    summaryTrendStats: ['avg', 'min', 'med', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
    tags: { profile },
  };
}

// A sold-out flash sale answers mostly 410: that is not a failed request, so k6's own
// http_req_failed counts only statuses outside the contract's expected ones.
http.setResponseCallback(http.expectedStatuses(201, 409, 410));

const outcomes = {
  201: new Counter('outcome_201'),
  200: new Counter('outcome_200'),
  410: new Counter('outcome_410'),
  409: new Counter('outcome_409'),
  503: new Counter('outcome_503'),
  other: new Counter('outcome_other'),
};
const errors = new Rate('errors');
const QUEUE_STATES = ['waiting', 'admitted', 'sold_out', 'expired', 'issued', 'closed', 'other'];
const queueOutcomes = Object.fromEntries(QUEUE_STATES.map((k) => [k, new Counter(`queue_${k}`)]));
const queueJoined = new Counter('queue_joined');
const queueGaveUp = new Counter('queue_gave_up');
const admittedNoCoupon = new Counter('queue_admitted_no_coupon');
const queueWait = new Trend('queue_wait_ms', true);
const trends = { join: new Trend('queue_join_ms', true), poll: new Trend('queue_poll_ms', true), issue: new Trend('issue_ms', true) };

/** setup(): checks the environment and fixes the run id (logged for scripts/k6-verdict). */
export function setupRun(profile, describe) {
  if (!CAMPAIGN) {
    throw new Error(`CAMPAIGN is required: k6 run -e CAMPAIGN=<campaign id> k6-jobs/${profile}.js`);
  }
  // Default: UTC timestamp with milliseconds, e.g. 20261121T185239123Z.
  const runId = __ENV.RUN_ID || new Date().toISOString().replace(/[-:.]/g, '');
  // scripts/k6-verdict looks for this `run_id=` marker: k6 appends to --console-output, and
  // the ISSUED lines after the marker of the summary's run id are this run's.
  console.warn(`${profile}: campaign=${CAMPAIGN} base_url=${BASE_URL} run_id=${runId} tokens=${JWT_SECRET ? 'hs256' : 'none'} ${describe}`);
  return { runId };
}

function parseJson(res) {
  try {
    const body = JSON.parse(res.body);
    return body !== null && typeof body === 'object' && !Array.isArray(body) ? body : null;
  } catch (_) {
    return null;
  }
}

const token = (v) => String(v).replace(/\s+/g, '_');

/** This VU's user of this iteration (`suffix` instead of the iteration: one user per VU). */
export function userIdFor(data, suffix) {
  // Computed from setup()'s run id, not at init: every VU runs the init code on its own.
  const instance = INSTANCE ? `${INSTANCE}-` : '';
  const tail = suffix === undefined ? exec.vu.iterationInScenario : suffix;
  return `${data.runId}-${instance}${exec.vu.idInTest}-${tail}`;
}

function headersFor(userId) {
  const headers = { 'Content-Type': 'application/json' };
  const auth = bearer(userId);
  if (auth) headers.Authorization = auth;
  return headers;
}

/** One fresh user asks for a coupon (through the waiting room with WAITING_ROOM=1). */
export function issueOnce(data) {
  const userId = userIdFor(data);
  if (waitingRoom) waitingRoomUser(userId);
  else issueAs(userId);
}

// Answers off the contract this VU has logged so far: the first few say, in the runner's
// log, what a failed threshold's errors were (status, error code, body), not only how many.
const OFF_CONTRACT_LOGGED_MAX = 3;
let offContractLogged = 0;

/** Logs an answer off the contract (`kind`: issue, join or poll), at most a few per VU. */
function logOffContract(kind, res) {
  if (offContractLogged >= OFF_CONTRACT_LOGGED_MAX) return;
  offContractLogged += 1;
  const body = String(res.body || '').replace(/[\r\n]+/g, ' ').slice(0, 200);
  const why = res.error ? ` error="${res.error}" code=${res.error_code}` : '';
  console.warn(`OFF-CONTRACT ${kind} status=${res.status}${why} after=${Math.round(res.timings.duration)}ms body=${body}`);
}

/**
 * `userId` asks for a coupon (with `admission`, an admission token); the answer is checked
 * and counted; returns its status.
 */
export function issueAs(userId, admission) {
  const headers = headersFor(userId);
  if (admission) headers['X-Stampede-Admission'] = admission;
  const res = http.post(
    `${BASE_URL}/v1/campaigns/${encodeURIComponent(CAMPAIGN)}/issue`,
    JSON.stringify({ userId }),
    {
      headers,
      tags: { name: 'POST /v1/campaigns/{campaign}/issue' },
      timeout: REQ_TIMEOUT,
    },
  );

  const body = parseJson(res);
  let expectedStatus = false;
  let bodyOk = false;
  switch (res.status) {
    case 201: {
      outcomes[201].add(1);
      expectedStatus = true;
      bodyOk =
        body !== null &&
        body.userId === userId &&
        body.campaign === CAMPAIGN &&
        Number.isInteger(body.seq) &&
        body.seq > 0 &&
        typeof body.couponCode === 'string' &&
        body.couponCode.length > 0 &&
        typeof body.issuedAt === 'string';
      if (LOG_ISSUED) {
        const b = body || {};
        // A seq that is not a positive integer is logged as invalid:<value>, which
        // scripts/k6-verdict counts as malformed.
        const seq = Number.isInteger(b.seq) && b.seq > 0 ? String(b.seq) : `invalid:${token(b.seq)}`;
        const holder = typeof b.userId === 'string' && b.userId ? token(b.userId) : userId;
        const code = b.couponCode === undefined ? '-' : String(b.couponCode).replace(/[\r\n]+/g, ' ');
        console.log(`ISSUED ${seq} ${holder} ${code}`);
      }
      break;
    }
    case 410:
      outcomes[410].add(1);
      expectedStatus = true;
      bodyOk = body !== null && body.error === 'sold_out';
      break;
    case 409:
      outcomes[409].add(1);
      expectedStatus = true;
      bodyOk = body !== null && ['not_open', 'closed', 'paused'].includes(body.error);
      break;
    case 200:
      outcomes[200].add(1);
      bodyOk = body !== null && body.userId === userId && Number.isInteger(body.seq) && body.seq > 0;
      break;
    case 503:
      outcomes[503].add(1);
      bodyOk = body !== null && body.error === 'overloaded';
      break;
    default:
      outcomes.other.add(1);
  }

  check(res, {
    'status is 201, 409 or 410': () => expectedStatus,
    'body matches the contract': () => bodyOk,
  });
  errors.add(!(expectedStatus && bodyOk));
  if (!(expectedStatus && bodyOk)) logOffContract('issue', res);
  if (admission) trends.issue.add(res.timings.duration);
  return res.status;
}

const QUEUE_URL = () => `${BASE_URL}/v1/campaigns/${encodeURIComponent(CAMPAIGN)}/queue`;
const QUEUE_PARAMS = { timeout: REQ_TIMEOUT, responseCallback: http.expectedStatuses(200, 201, 409, 410) };
const isCount = (v) => Number.isInteger(v) && v >= 0;
const isToken = (v) => typeof v === 'string' && v.length > 0;

/**
 * One queue answer checked against docs/waiting-room.md and counted: `{state, body}`,
 * state one of QUEUE_STATES. `holds`: the user already holds a coupon (only then is
 * `issued` an expected answer).
 */
function queueAnswer(res, kind, holds) {
  const body = parseJson(res);
  let state = 'other';
  let ok = false;
  if (body !== null && (res.status === 200 || (res.status === 201 && kind === 'join'))) {
    state = QUEUE_STATES.includes(body.status) && body.status !== 'other' ? body.status : 'other';
    const tokens = isToken(body.queueToken) && typeof body.expiresAt === 'string';
    ok = {
      waiting: tokens && isCount(body.position) && body.position >= 1 && isCount(body.estimatedWaitSeconds) &&
        isCount(body.pollAfterSeconds) && isCount(body.queued) && isCount(body.remainingStock),
      admitted: tokens && isToken(body.admissionToken) && typeof body.admissionExpiresAt === 'string',
      sold_out: true,
      expired: true,
      issued: holds,
    }[state] === true;
    // A new place (201) is waiting or already admitted, never anything else.
    if (res.status === 201 && state !== 'waiting' && state !== 'admitted') ok = false;
  } else if (res.status === 410 && kind === 'join') {
    state = 'sold_out';
    ok = body !== null && body.error === 'sold_out';
  } else if (res.status === 409) {
    state = 'closed';
    ok = body !== null && ['closed', 'not_open', 'paused'].includes(body.error);
  }
  if (!ok) state = 'other';
  queueOutcomes[state].add(1);
  if (kind === 'join' && res.status === 201 && ok) queueJoined.add(1);
  trends[kind].add(res.timings.duration);
  check(res, { 'queue answer matches the contract': () => ok });
  errors.add(!ok);
  if (!ok) logOffContract(kind, res);
  return { state, body: body || {} };
}

/** `userId` joins the line: POST …/queue. */
export function queueJoin(userId, holds = false) {
  const res = http.post(QUEUE_URL(), JSON.stringify({ userId }), {
    ...QUEUE_PARAMS,
    headers: headersFor(userId),
    tags: { name: 'POST /v1/campaigns/{campaign}/queue' },
  });
  return queueAnswer(res, 'join', holds);
}

/** Where `userId` stands: GET …/queue with the queue token. */
export function queuePoll(userId, queueToken, holds = false) {
  const headers = headersFor(userId);
  headers['X-Stampede-Queue-Token'] = queueToken;
  const res = http.get(QUEUE_URL(), { ...QUEUE_PARAMS, headers, tags: { name: 'GET /v1/campaigns/{campaign}/queue' } });
  return queueAnswer(res, 'poll', holds);
}

/** Seconds to wait before the next poll: what a waiting answer suggests, bounded, ±10 %. */
export function pollDelay(body) {
  const suggested = Math.min(Number(body.pollAfterSeconds) || POLL_MAX, Number(body.estimatedWaitSeconds) || POLL_MIN);
  return Math.min(POLL_MAX, Math.max(POLL_MIN, suggested)) * (0.9 + 0.2 * Math.random());
}

/** One user through the waiting room: join, poll until decided, issue when admitted. */
export function waitingRoomUser(userId) {
  const t0 = Date.now();
  let a = queueJoin(userId);
  while (a.state === 'waiting') {
    if (Date.now() - t0 >= MAX_WAIT * 1000) {
      queueGaveUp.add(1);
      return;
    }
    sleep(pollDelay(a.body));
    a = queuePoll(userId, a.body.queueToken);
  }
  if (a.state !== 'admitted') return;
  queueWait.add(Date.now() - t0);
  issueAdmitted(userId, a.body.admissionToken);
}

/** An admitted user issues with its admission; true when it holds a coupon then. */
export function issueAdmitted(userId, admission) {
  const status = issueAs(userId, admission);
  if (status !== 201) admittedNoCoupon.add(1);
  return status === 201 || status === 200;
}

function metricValue(data, name, stat, dflt = 0) {
  const m = data.metrics[name];
  return m && m.values && m.values[stat] !== undefined ? m.values[stat] : dflt;
}

const round2 = (x) => Math.round(x * 100) / 100;

/**
 * handleSummary(): a compact JSON (at most 4 KB: it is a pod's termination message in a
 * cluster) to SUMMARY_FILE and stdout, and a short text summary to stderr.
 */
export function summarize(profile, data, whole) {
  // The runner's own iterations are compared with its share of the whole test's.
  const expected = whole === undefined ? undefined : segmentShare(whole);
  const failedThresholds = [];
  // setup() always returns data; without it the run never started (e.g. CAMPAIGN missing),
  // and the untouched thresholds must not read as a pass.
  if (!data.setup_data) failedThresholds.push('setup failed: no iterations ran (is CAMPAIGN set?)');
  for (const [name, metric] of Object.entries(data.metrics)) {
    for (const [expr, res] of Object.entries(metric.thresholds || {})) {
      if (!res.ok) failedThresholds.push(`${name}: ${expr}`);
    }
  }
  const outcomeCounts = {};
  for (const key of ['201', '200', '410', '409', '503', 'other']) {
    outcomeCounts[key] = metricValue(data, `outcome_${key}`, 'count');
  }
  const summary = {
    profile,
    campaign: CAMPAIGN,
    runId: (data.setup_data && data.setup_data.runId) || __ENV.RUN_ID || null,
    instance: INSTANCE || null,
    rps: round2(metricValue(data, 'http_reqs', 'rate')),
    p50: round2(metricValue(data, 'http_req_duration', 'p(50)')),
    p95: round2(metricValue(data, 'http_req_duration', 'p(95)')),
    p99: round2(metricValue(data, 'http_req_duration', 'p(99)')),
    errorRate: Math.round(metricValue(data, 'errors', 'rate') * 1e6) / 1e6,
    outcomes: outcomeCounts,
    requests: metricValue(data, 'http_reqs', 'count'),
    iterations: metricValue(data, 'iterations', 'count'),
    expectedIterations: expected === undefined ? null : expected,
    droppedIterations: metricValue(data, 'dropped_iterations', 'count'),
    checksRate: round2(metricValue(data, 'checks', 'rate', 1)),
    durationS: round2((data.state && data.state.testRunDurationMs ? data.state.testRunDurationMs : 0) / 1000),
    thresholds: {
      p95Ms: P95_MS,
      errorRate,
      droppedMax: expected === undefined ? null : droppedMax(expected),
    },
    thresholdsPassed: failedThresholds.length === 0,
    failedThresholds: failedThresholds.slice(0, 10).map((t) => t.slice(0, 120)),
  };
  if (waitingRoom) {
    const q = { joined: metricValue(data, 'queue_joined', 'count') };
    for (const k of QUEUE_STATES) q[k] = metricValue(data, `queue_${k}`, 'count');
    q.gaveUp = metricValue(data, 'queue_gave_up', 'count');
    q.admittedNoCoupon = metricValue(data, 'queue_admitted_no_coupon', 'count');
    q.waitP50Ms = round2(metricValue(data, 'queue_wait_ms', 'p(50)'));
    q.waitP95Ms = round2(metricValue(data, 'queue_wait_ms', 'p(95)'));
    for (const [k, m] of [['join', 'queue_join_ms'], ['poll', 'queue_poll_ms'], ['issue', 'issue_ms']]) {
      q[`${k}Count`] = metricValue(data, m, 'count');
      q[`${k}P95`] = round2(metricValue(data, m, 'p(95)'));
    }
    summary.queue = q;
  }
  const json = JSON.stringify(summary);

  const o = outcomeCounts;
  const text = [
    '',
    `${profile} profile: campaign=${summary.campaign} run_id=${summary.runId} duration=${summary.durationS}s`,
    `  requests=${summary.requests} rps=${summary.rps} iterations=${summary.iterations}` +
      (expected === undefined ? '' : `/${expected}`) +
      ` dropped=${summary.droppedIterations}`,
    `  latency ms: p50=${summary.p50} p95=${summary.p95} p99=${summary.p99} (threshold p95<${P95_MS})`,
    `  outcomes: 201=${o['201']} 200=${o['200']} 410=${o['410']} 409=${o['409']} 503=${o['503']} other=${o.other}`,
    `  errors: rate=${summary.errorRate} (threshold <=${errorRate}) checks=${summary.checksRate}`,
    summary.queue ? `  queue: ${JSON.stringify(summary.queue)}` : null,
    `  thresholds: ${summary.thresholdsPassed ? 'PASS' : 'FAIL: ' + failedThresholds.join('; ')}`,
    '',
  ].filter((l) => l !== null).join('\n');

  return {
    [SUMMARY_FILE]: json + '\n',
    stdout: json + '\n',
    stderr: text,
  };
}
