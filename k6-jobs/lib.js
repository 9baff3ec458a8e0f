// k6-jobs/lib.js: what every profile shares: environment, the issue request with its
// checks and outcome counters, thresholds, and the compact JSON summary.
//
// Env (every profile reads the same names; each profile documents its defaults):
//   BASE_URL (http://127.0.0.1:8080)   CAMPAIGN (required)   RUN_ID (UTC timestamp)
//   RATE (arrival rate, req/s)   VUS (virtual users)   DURATION (seconds, main phase)
//   TIME_SCALE (1; scales every stage, min 1 s each)   P95_MS (1000)   ERROR_RATE (0.01)
//   DROPPED_TOLERANCE (0.01 of expected iterations)   REQ_TIMEOUT (10s)
//   SUMMARY_FILE (k6-summary.json; /dev/termination-log in a cluster Job)
//   LOG_ISSUED (1: log `ISSUED <seq> <userId> <couponCode>` per 201 for scripts/k6-verdict)
//   STAMPEDE_JWT_HS256_SECRET, STAMPEDE_JWT_ISSUER, STAMPEDE_JWT_AUDIENCE: the service's
//     own settings; with a secret every user's request carries an HS256 bearer token for
//     that user, minted here (k6/crypto); without one, none (a service with --auth none)
//
// Every iteration is a fresh user `${runId}-${vu}-${iteration}` (plus the execution
// segment's instance when run split across Jobs) that POSTs /v1/campaigns/{c}/issue once.
// Expected answers for a fresh user: 201, 410 sold_out, 409 not_open/closed/paused. Errors:
// 5xx (503 overloaded included), timeouts, any other status (200 too: a fresh user cannot
// hold a coupon yet, so a replay means user ids collided), or a body off the contract.
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Rate } from 'k6/metrics';

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
// Set by the operator's Jobs so users stay distinct across execution segments.
const INSTANCE = __ENV.INSTANCE || '';

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

/** Thresholds every profile sets; `expected` (arrival-rate profiles) adds dropped_iterations. */
export function thresholds(expected) {
  const t = {
    http_req_duration: [`p(95)<${P95_MS}`],
    errors: [`rate<${ERROR_RATE}`],
    checks: ['rate>0.99'],
  };
  if (expected !== undefined) {
    t.dropped_iterations = [`count<=${droppedMax(expected)}`];
  }
  return t;
}

const droppedMax = (expected) => Math.max(1, Math.floor(DROPPED_TOLERANCE * expected));

/** Options shared by every profile. */
export function options(profile, scenario, expected) {
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

/** One fresh user asks for a coupon; the answer is checked and counted. */
export function issueOnce(data) {
  // Computed from setup()'s run id, not at init: every VU runs the init code on its own.
  const instance = INSTANCE ? `${INSTANCE}-` : '';
  const userId = `${data.runId}-${instance}${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
  const headers = { 'Content-Type': 'application/json' };
  const auth = bearer(userId);
  if (auth) headers.Authorization = auth;
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
export function summarize(profile, data, expected) {
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
      errorRate: ERROR_RATE,
      droppedMax: expected === undefined ? null : droppedMax(expected),
    },
    thresholdsPassed: failedThresholds.length === 0,
    failedThresholds: failedThresholds.slice(0, 10).map((t) => t.slice(0, 120)),
  };
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
    `  errors: rate=${summary.errorRate} (threshold <${ERROR_RATE}) checks=${summary.checksRate}`,
    `  thresholds: ${summary.thresholdsPassed ? 'PASS' : 'FAIL: ' + failedThresholds.join('; ')}`,
    '',
  ].join('\n');

  return {
    [SUMMARY_FILE]: json + '\n',
    stdout: json + '\n',
    stderr: text,
  };
}
