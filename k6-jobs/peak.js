// k6-jobs/peak.js: the "peak" profile (load-test report 002).
//
// Arrival-rate shape (ramping-arrival-rate, timeUnit 1s), every duration scaled by TIME_SCALE
// (min 1 s each):
//   10 s at BASE_RATE -> 20 s climb to PEAK_RATE -> 10 s back down to BASE_RATE -> 20 s to 0
//
// Every iteration is a fresh user `${RUN_ID}-${vu}-${iteration}` that POSTs
// /v1/campaigns/${CAMPAIGN}/issue once. Expected answers for a fresh user: 201 (coupon),
// 410 sold_out, 409 not_open/closed/paused. Errors: 5xx (503 overloaded included), timeouts,
// any other status (200 too: a user this script never sent before cannot hold a coupon
// yet, so a replay means user ids collided, e.g. a reused RUN_ID), or a body that breaks
// the contract.
//
// Each 201 logs exactly one line `ISSUED <seq> <userId> <couponCode>` (run with
// `k6 run --console-output=FILE`; scripts/k6-verdict checks those lines for oversell and
// duplicates). handleSummary writes a compact JSON to SUMMARY_FILE and stdout, and a short
// text summary to stderr.
//
// Env: BASE_URL (http://127.0.0.1:8080), CAMPAIGN (required), RUN_ID (timestamp),
//      PEAK_RATE (2000), BASE_RATE (100), TIME_SCALE (1), P95_MS (1000), ERROR_RATE (0.01),
//      DROPPED_TOLERANCE (0.01 of expected iterations), REQ_TIMEOUT (10s),
//      PRE_VUS / MAX_VUS (default max(50, peak/4) / max(that, peak)),
//      SUMMARY_FILE (k6-summary.json).
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Rate } from 'k6/metrics';

const PROFILE = 'peak';

function envNumber(name, dflt) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got "${raw}"`);
  return n;
}

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const CAMPAIGN = __ENV.CAMPAIGN || '';
const PEAK_RATE = Math.max(1, Math.round(envNumber('PEAK_RATE', 2000)));
const BASE_RATE = Math.round(envNumber('BASE_RATE', 100));
const TIME_SCALE = envNumber('TIME_SCALE', 1);
const P95_MS = envNumber('P95_MS', 1000);
const ERROR_RATE = envNumber('ERROR_RATE', 0.01);
const DROPPED_TOLERANCE = envNumber('DROPPED_TOLERANCE', 0.01);
const REQ_TIMEOUT = __ENV.REQ_TIMEOUT || '10s';
const SUMMARY_FILE = __ENV.SUMMARY_FILE || 'k6-summary.json';

const scaled = (seconds) => Math.max(1, Math.round(seconds * TIME_SCALE));

// [duration s, target rate]; the executor starts at BASE_RATE.
const STAGES = [
  [scaled(10), BASE_RATE], // hold the base rate
  [scaled(20), PEAK_RATE], // climb to the peak
  [scaled(10), BASE_RATE], // back down
  [scaled(20), 0], // stop
];

// Iterations the shape asks for: area under the (linear) rate curve.
const EXPECTED_ITERATIONS = Math.round(
  STAGES.reduce(
    (acc, [secs, target]) => ({ total: acc.total + ((acc.rate + target) / 2) * secs, rate: target }),
    { total: 0, rate: BASE_RATE },
  ).total,
);
const DROPPED_MAX = Math.max(1, Math.floor(DROPPED_TOLERANCE * EXPECTED_ITERATIONS));

const TOP_RATE = Math.max(PEAK_RATE, BASE_RATE);
const PRE_VUS = Math.round(envNumber('PRE_VUS', Math.max(50, Math.ceil(TOP_RATE / 4))));
const MAX_VUS = Math.round(envNumber('MAX_VUS', Math.max(PRE_VUS, TOP_RATE)));

export const options = {
  scenarios: {
    peak: {
      executor: 'ramping-arrival-rate',
      startRate: BASE_RATE,
      timeUnit: '1s',
      preAllocatedVUs: PRE_VUS,
      maxVUs: MAX_VUS,
      stages: STAGES.map(([secs, target]) => ({ duration: `${secs}s`, target })),
    },
  },
  thresholds: {
    http_req_duration: [`p(95)<${P95_MS}`],
    errors: [`rate<${ERROR_RATE}`],
    dropped_iterations: [`count<=${DROPPED_MAX}`],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
  tags: { profile: PROFILE },
};

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

export function setup() {
  if (!CAMPAIGN) {
    throw new Error('CAMPAIGN is required: k6 run -e CAMPAIGN=<campaign id> k6-jobs/peak.js');
  }
  // Default: UTC timestamp with milliseconds, e.g. 20261121T185239123Z.
  const runId = __ENV.RUN_ID || new Date().toISOString().replace(/[-:.]/g, '');
  // scripts/k6-verdict looks for this `run_id=` marker: k6 appends to --console-output, and
  // the ISSUED lines after the marker of the summary's run id are this run's.
  console.warn(
    `peak: campaign=${CAMPAIGN} base_url=${BASE_URL} run_id=${runId} ` +
      `stages=${JSON.stringify(STAGES)} expected_iterations=${EXPECTED_ITERATIONS} vus=${PRE_VUS}..${MAX_VUS}`,
  );
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

export default function (data) {
  // Computed in setup() (once), not at init: every VU runs the init code on its own.
  const userId = `${data.runId}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
  const res = http.post(
    `${BASE_URL}/v1/campaigns/${encodeURIComponent(CAMPAIGN)}/issue`,
    JSON.stringify({ userId }),
    {
      headers: { 'Content-Type': 'application/json' },
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
      const b = body || {};
      // A seq that is not a positive integer is logged as invalid:<value>, which
      // scripts/k6-verdict counts as malformed.
      const seq = Number.isInteger(b.seq) && b.seq > 0 ? String(b.seq) : `invalid:${token(b.seq)}`;
      const holder = typeof b.userId === 'string' && b.userId ? token(b.userId) : userId;
      const code = b.couponCode === undefined ? '-' : String(b.couponCode).replace(/[\r\n]+/g, ' ');
      console.log(`ISSUED ${seq} ${holder} ${code}`);
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

export function handleSummary(data) {
  const failedThresholds = [];
  // setup() always returns data; without it the run never started (e.g. CAMPAIGN missing),
  // and the untouched thresholds must not read as a pass.
  const setupFailed = !data.setup_data;
  if (setupFailed) failedThresholds.push('setup failed: no iterations ran (is CAMPAIGN set?)');
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
    profile: PROFILE,
    campaign: CAMPAIGN,
    runId: (data.setup_data && data.setup_data.runId) || __ENV.RUN_ID || null,
    rps: round2(metricValue(data, 'http_reqs', 'rate')),
    p50: round2(metricValue(data, 'http_req_duration', 'p(50)')),
    p95: round2(metricValue(data, 'http_req_duration', 'p(95)')),
    p99: round2(metricValue(data, 'http_req_duration', 'p(99)')),
    errorRate: Math.round(metricValue(data, 'errors', 'rate') * 1e6) / 1e6,
    outcomes: outcomeCounts,
    requests: metricValue(data, 'http_reqs', 'count'),
    iterations: metricValue(data, 'iterations', 'count'),
    expectedIterations: EXPECTED_ITERATIONS,
    droppedIterations: metricValue(data, 'dropped_iterations', 'count'),
    checksRate: round2(metricValue(data, 'checks', 'rate', 1)),
    durationS: round2((data.state && data.state.testRunDurationMs ? data.state.testRunDurationMs : 0) / 1000),
    thresholds: { p95Ms: P95_MS, errorRate: ERROR_RATE, droppedMax: DROPPED_MAX },
    thresholdsPassed: failedThresholds.length === 0,
    failedThresholds: failedThresholds.slice(0, 10),
  };
  const json = JSON.stringify(summary);

  const o = outcomeCounts;
  const text = [
    '',
    `peak profile: campaign=${summary.campaign} run_id=${summary.runId} duration=${summary.durationS}s`,
    `  requests=${summary.requests} rps=${summary.rps} iterations=${summary.iterations}/${EXPECTED_ITERATIONS} dropped=${summary.droppedIterations}`,
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
