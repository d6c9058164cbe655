/**
 * deploy/prometheus/ ships with pg-egress (issue 17 item 4): the rules file is Prometheus rule
 * groups (groups[].rules[] with alert, expr, for, labels, annotations), and every series named by
 * a rule or a dashboard panel is one a live daemon's /metrics exports (scraped here, with S3
 * anchors and output.retain on so that every family is registered). A renamed series fails the
 * check (shown with a copy of the rules in which one name is changed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../harness/cluster.js';
import { waitFor } from '../harness/pg.js';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3Server, type S3TestServer } from '../harness/s3-server.js';
import { ROOT, createEnv, startInProcess, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';
import { checkRuleFile, dashboardExprs, exposedFamilies, metricNames, missingSeries } from '../helpers/promql.js';

const RULES = path.join(ROOT, 'deploy/prometheus/pg-egress-rules.yaml');
const DASHBOARD = path.join(ROOT, 'deploy/prometheus/pg-egress-dashboard.json');

describe('deploy/prometheus against a live /metrics', () => {
  let env: EgressEnv;
  let s3: S3TestServer;
  let daemon: { stop(): Promise<void> };
  let families: Set<string>;

  beforeAll(async () => {
    s3 = await startS3Server();
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY, AWS_EC2_METADATA_DISABLED: 'true' });
    env = await createEnv();
    const port = await freePort();
    writeConfig(
      env,
      [`output:\n  dir: ${JSON.stringify(env.outDir)}\n  retain: 1h`, `http:\n  port: ${port}`, 'anchors:', `  s3: {bucket: ${s3.bucket}, prefix: "m", region: us-east-1, endpoint: "${s3.endpoint}", force_path_style: true}`].join('\n'),
    );
    await withDb(env.url, (c) => c.query(`CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)`));
    daemon = startInProcess(env);
    await waitSlotActive(env, 60_000);
    const text = await waitFor(
      'a /metrics scrape with pg_egress_ready 1',
      async () => {
        const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return /^pg_egress_ready 1$/m.test(body) ? body : null;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    families = exposedFamilies(text);
  });
  afterAll(async () => {
    await daemon?.stop();
    await env?.drop();
    await s3?.stop();
  });

  it('the rules file is Prometheus rule groups with the alerts the issue names', () => {
    const r = checkRuleFile(readFileSync(RULES, 'utf8'));
    expect(r.problems).toEqual([]);
    const text = readFileSync(RULES, 'utf8');
    for (const a of ['PgEgressNotReady', 'PgEgressSlotLagBytes', 'PgEgressSlotLagSeconds', 'PgEgressAnchorQueueAge', 'PgEgressGapOpen', 'PgEgressReloadFailed', 'PgEgressLocalDiskFull']) expect(text).toContain(`alert: ${a}`);
    expect(r.exprs.length).toBeGreaterThanOrEqual(7);
  });

  it('every series named by a rule or a dashboard panel is exported by /metrics', () => {
    const rules = checkRuleFile(readFileSync(RULES, 'utf8')).exprs;
    const panels = dashboardExprs(JSON.parse(readFileSync(DASHBOARD, 'utf8')));
    expect(panels.length).toBeGreaterThan(10);
    const named = new Set([...rules, ...panels].flatMap((e) => metricNames(e.expr)));
    expect(named.size).toBeGreaterThan(10);
    expect(missingSeries([...rules, ...panels], families)).toEqual([]);
  });

  it('fails when a series is renamed (the check is not vacuous)', () => {
    const renamed = readFileSync(RULES, 'utf8').replace('pg_egress_gaps_open', 'pg_egress_open_gaps');
    expect(missingSeries(checkRuleFile(renamed).exprs, families)).toEqual(['groups[0].rules[5] (PgEgressGapOpen): pg_egress_open_gaps']);
    const bad = checkRuleFile('groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up\n        for: soon\n');
    expect(bad.problems).toEqual(['groups[0].rules[0] (A): for must be a duration', 'groups[0].rules[0] (A): no annotations', 'groups[0].rules[0] (A): no severity label']);
  });
});
