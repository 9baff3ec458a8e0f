// bench/spike-healthz.js: the floor for report 000's spike — VUS users (1000) each send one
// GET to BASE_URL/healthz, all started together, as k6-jobs/spike.js does against the issue
// endpoint. Prints {"p50","p95","p99","requests","failed"} (ms) as its summary.
import http from 'k6/http';

const VUS = Number(__ENV.VUS || 1000);
export const options = {
  scenarios: { spike: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: '60s' } },
  summaryTrendStats: ['p(50)', 'p(95)', 'p(99)'],
};

export default function () {
  http.get(`${__ENV.BASE_URL}/healthz`);
}

export function handleSummary(data) {
  const d = data.metrics.http_req_duration.values;
  const failed = data.metrics.http_req_failed ? data.metrics.http_req_failed.values.passes : 0;
  const out = { p50: d['p(50)'], p95: d['p(95)'], p99: d['p(99)'], requests: data.metrics.http_reqs.values.count, failed };
  return { stdout: `${JSON.stringify(out)}\n` };
}
