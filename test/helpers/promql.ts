/**
 * Just enough PromQL to name the series an expression reads (for test/integration/alerts.test.ts):
 * a small tokenizer that skips strings, label matchers `{…}`, range/subquery brackets `[…]`,
 * grouping label lists (`by (…)`, `without (…)`, `on (…)`, `ignoring (…)`, `group_left (…)`,
 * `group_right (…)`), function names (an identifier followed by `(`), keywords, numbers and
 * durations. What is left are metric names. Not a parser: enough for the rules we ship, and it
 * errs on the side of naming too much (a stray identifier fails the check loudly).
 */
import { parse as parseYaml } from 'yaml';

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'atan2', 'inf', 'nan']);
const LABEL_LIST = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
/** Aggregations may put their grouping before the parenthesis: `max by (x) (…)`. */
const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio']);

export function metricNames(expr: string): string[] {
  const names = new Set<string>();
  let i = 0;
  let prevWord = '';
  const skipTo = (close: string) => {
    // Skips a {…} or […] group, strings inside it included.
    while (i < expr.length && expr[i] !== close) {
      if (expr[i] === '"' || expr[i] === "'" || expr[i] === '`') skipString();
      else i++;
    }
    i++;
  };
  const skipString = () => {
    const q = expr[i++];
    while (i < expr.length && expr[i] !== q) i += expr[i] === '\\' ? 2 : 1;
    i++;
  };
  while (i < expr.length) {
    const c = expr[i];
    if (c === '"' || c === "'" || c === '`') {
      skipString();
      prevWord = '';
    } else if (c === '{') {
      i++;
      skipTo('}');
      prevWord = '';
    } else if (c === '[') {
      i++;
      skipTo(']');
      prevWord = '';
    } else if (c === '(' && LABEL_LIST.has(prevWord)) {
      i++;
      skipTo(')');
      prevWord = '';
    } else if (/[a-zA-Z_:]/.test(c)) {
      let j = i;
      while (j < expr.length && /[a-zA-Z0-9_:]/.test(expr[j])) j++;
      const word = expr.slice(i, j);
      let k = j;
      while (k < expr.length && /\s/.test(expr[k])) k++;
      const grouped = AGGREGATIONS.has(word) && /^(by|without)\b/.test(expr.slice(k));
      const isCall = (expr[k] === '(' && !LABEL_LIST.has(word)) || grouped;
      if (!isCall && !KEYWORDS.has(word.toLowerCase())) names.add(word);
      prevWord = word;
      i = j;
    } else if (/[0-9.]/.test(c)) {
      // A number (1e9, 0.5) or a duration (5m): digits, letters, dots.
      while (i < expr.length && /[0-9a-zA-Z.+]/.test(expr[i]) && !(expr[i] === '+' && !/[eE]/.test(expr[i - 1]))) i++;
      prevWord = '';
    } else {
      if (!/\s/.test(c)) prevWord = '';
      i++;
    }
  }
  return [...names];
}

/** Histogram and summary samples carry suffixes; /metrics' `# TYPE` line names the family. */
export function familyOf(name: string, families: Set<string>): string | null {
  if (families.has(name)) return name;
  for (const s of ['_bucket', '_count', '_sum', '_total']) if (name.endsWith(s) && families.has(name.slice(0, -s.length))) return name.slice(0, -s.length);
  return null;
}

/** Metric families a Prometheus text exposition declares (`# TYPE <name> <type>`). */
export function exposedFamilies(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^# TYPE (\S+) \S+/.exec(line);
    if (m) out.add(m[1]);
  }
  return out;
}

export interface RuleFileCheck {
  /** Structural problems: not rule groups. */
  problems: string[];
  exprs: { where: string; expr: string }[];
}

/** Parses a rules file and checks it is Prometheus rule groups: groups[].name, rules[].alert/expr/for/labels/annotations. */
export function checkRuleFile(text: string): RuleFileCheck {
  const problems: string[] = [];
  const exprs: { where: string; expr: string }[] = [];
  const doc = parseYaml(text) as { groups?: unknown };
  if (!doc || !Array.isArray(doc.groups) || !doc.groups.length) return { problems: ['no groups: [] list'], exprs };
  const names = new Set<string>();
  for (const [gi, g] of (doc.groups as Record<string, unknown>[]).entries()) {
    if (typeof g.name !== 'string' || !g.name) problems.push(`groups[${gi}]: no name`);
    else if (names.has(g.name)) problems.push(`groups[${gi}]: duplicate name ${g.name}`);
    names.add(String(g.name));
    for (const k of Object.keys(g)) if (!['name', 'interval', 'rules', 'limit', 'labels'].includes(k)) problems.push(`groups[${gi}]: unknown key ${k}`);
    if (!Array.isArray(g.rules) || !g.rules.length) {
      problems.push(`groups[${gi}]: no rules`);
      continue;
    }
    for (const [ri, r] of (g.rules as Record<string, unknown>[]).entries()) {
      const where = `groups[${gi}].rules[${ri}]${typeof r.alert === 'string' ? ` (${r.alert})` : ''}`;
      for (const k of Object.keys(r)) if (!['alert', 'record', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations'].includes(k)) problems.push(`${where}: unknown key ${k}`);
      if (typeof r.alert !== 'string' || !/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(r.alert)) problems.push(`${where}: alert must be a name`);
      if (typeof r.expr !== 'string' || !r.expr.trim()) problems.push(`${where}: expr must be a string`);
      else exprs.push({ where, expr: r.expr });
      if (r.for !== undefined && (typeof r.for !== 'string' || !/^(\d+(ms|s|m|h|d|w|y))+$/.test(r.for))) problems.push(`${where}: for must be a duration`);
      for (const k of ['labels', 'annotations'] as const) {
        const v = r[k];
        if (v === undefined) {
          if (k === 'annotations') problems.push(`${where}: no annotations`);
          continue;
        }
        if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) problems.push(`${where}: ${k} must map names to strings`);
      }
      if (typeof (r.labels as Record<string, unknown> | undefined)?.severity !== 'string') problems.push(`${where}: no severity label`);
    }
  }
  return { problems, exprs };
}

/** Every `expr` of a Grafana dashboard's panels (rows' nested panels included). */
export function dashboardExprs(json: unknown): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const visit = (panels: unknown) => {
    if (!Array.isArray(panels)) return;
    for (const p of panels as { title?: string; targets?: { expr?: string }[]; panels?: unknown }[]) {
      for (const t of p.targets ?? []) if (typeof t.expr === 'string') out.push({ where: `panel "${p.title}"`, expr: t.expr });
      visit(p.panels);
    }
  };
  visit((json as { panels?: unknown }).panels);
  return out;
}

/** The names an expression list reads that a scrape does not declare. */
export function missingSeries(exprs: { where: string; expr: string }[], families: Set<string>): string[] {
  const missing: string[] = [];
  for (const e of exprs) for (const n of metricNames(e.expr)) if (!familyOf(n, families)) missing.push(`${e.where}: ${n}`);
  return missing;
}
