//! The shipped Grafana dashboard and Prometheus alert rules (`config/observability/`):
//! structurally what Grafana and Prometheus load, and every metric, label and label value
//! their PromQL uses is one the edge exports (read from `metrics::render()` after one
//! sample of every family has been recorded, and from the families `src/metrics*`
//! registers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use mcp_edge::metrics::{self, ToolOutcome};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const DASHBOARD: &str = "config/observability/grafana-dashboard.json";
const ALERTS: &str = "config/observability/alerts.yml";

/// Metric names the files may use that the edge does not export: Prometheus's own.
const FOREIGN_METRICS: &[&str] = &["up"];
/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: &[&str] = &["instance", "job"];
/// Labels whose values are a closed set the test sees in samples: equality matchers on
/// them must name a value that exists.
const CLOSED_LABELS: &[&str] = &["outcome", "result"];
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "delta",
    "deriv",
    "floor",
    "group",
    "histogram_quantile",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "last_over_time",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "predict_linear",
    "quantile",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "sum",
    "sum_over_time",
    "time",
    "timestamp",
    "topk",
    "vector",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---- What the edge exports ----

/// One sample of every labelled family (families without samples have no `# TYPE` line),
/// with label values no other test looks at. Gauges read by other tests are left alone.
fn record_one_of_each() {
    let t = "observability_test";
    metrics::http_request("/observability-test", 599);
    metrics::auth_failure(t);
    metrics::rate_limited(t);
    metrics::connection_refused(t);
    for outcome in [
        ToolOutcome::Ok,
        ToolOutcome::ToolError,
        ToolOutcome::RpcError,
        ToolOutcome::Refused,
        ToolOutcome::Aborted,
    ] {
        metrics::tool_call(t, t, outcome, Duration::ZERO);
    }
    metrics::secret_reload(t, true);
    metrics::secret_reload(t, false);
    metrics::set_certificate_expiry(t, 4_102_444_800);
    metrics::redis_call(t, Duration::ZERO, false);
    metrics::redis_skipped(t);
    metrics::redis_fallback_decision(t);
    metrics::trace_shed(t);
    metrics::oauth_sign_in(t, t);
    metrics::oauth_token(t);
    metrics::oauth_refused(t, t);
    metrics::input_required_round();
    metrics::request_state_refused(t);
}

/// The family names `src/metrics.rs` and `src/metrics/*.rs` register (`registry.register("name", …)`),
/// with the registry's `mcp_edge_` prefix.
fn registered_families() -> BTreeSet<String> {
    let mut files = vec![root().join("src/metrics.rs")];
    for entry in std::fs::read_dir(root().join("src/metrics")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for call in [".register(", ".register_with_unit("] {
            for (at, _) in text.match_indices(call) {
                let rest = text[at + call.len()..].trim_start();
                if let Some(lit) = rest.strip_prefix('"') {
                    let name = &lit[..lit.find('"').unwrap()];
                    names.insert(format!("mcp_edge_{name}"));
                }
            }
        }
    }
    assert!(names.len() >= 10, "registrations not found: {names:?}");
    names
}

#[derive(Debug, Default)]
struct Exported {
    /// Family name → type, from `# TYPE` lines.
    families: BTreeMap<String, String>,
    /// Series name (what PromQL selects) → its family.
    series: BTreeMap<String, String>,
    /// Series name → label names seen on its samples.
    labels: BTreeMap<String, BTreeSet<String>>,
    /// (series, label) → values seen.
    values: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Exported {
    fn parse(text: &str) -> Exported {
        let mut e = Exported::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (family, kind) = rest.split_once(' ').expect(line);
            let series: Vec<String> = match kind {
                "counter" if family.ends_with("_total") => vec![family.into()],
                "counter" => vec![format!("{family}_total")],
                "histogram" => ["_bucket", "_sum", "_count"]
                    .map(|s| format!("{family}{s}"))
                    .into(),
                "summary" => vec![
                    family.into(),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ],
                _ => vec![family.into()],
            };
            for s in series {
                e.series.insert(s, family.into());
            }
            e.families.insert(family.into(), kind.into());
        }
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..end];
            let labels = e.labels.entry(name.into()).or_default();
            if line[end..].starts_with('{') {
                let mut scan = Scanner::new(&line[end + 1..]);
                for (label, _, value) in scan.matchers().expect(line) {
                    labels.insert(label.clone());
                    e.values
                        .entry((name.into(), label))
                        .or_default()
                        .insert(value);
                }
            }
        }
        e
    }
}

fn exported() -> Exported {
    record_one_of_each();
    let e = Exported::parse(&metrics::render());
    let registered = registered_families();
    let typed: BTreeSet<String> = e
        .families
        .keys()
        .filter(|f| f.starts_with("mcp_edge_"))
        .cloned()
        .collect();
    assert_eq!(
        registered, typed,
        "the families src/metrics* registers and those render() lists (# TYPE) differ: \
         a labelled family has no sample until something is recorded, so record one in \
         record_one_of_each() in tests/suites/observability.rs"
    );
    e
}

// ---- PromQL, scanned for what matters here ----

/// A metric selector: its name and label matchers `(label, op, value)`.
#[derive(Debug, PartialEq)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

#[derive(Debug, Default)]
struct Scanned {
    selectors: Vec<Selector>,
    functions: Vec<String>,
    /// Labels in `by`, `without`, `on`, `ignoring`, `group_left`, `group_right` lists.
    grouping: Vec<String>,
}

/// Grafana variables (`$job`, `${job}`, `$__rate_interval`) anywhere in `expr`, strings
/// included.
fn variables(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = Scanner::new(expr);
    while let Some(c) = p.peek() {
        if c == b'$'
            && p.s
                .get(p.i + 1)
                .is_some_and(|&n| n == b'{' || ident_start(n))
        {
            out.push(p.variable());
        } else {
            p.i += 1;
        }
    }
    out
}

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn ident_char(c: u8) -> bool {
    ident_start(c) || c.is_ascii_digit()
}

impl<'a> Scanner<'a> {
    fn new(s: &'a str) -> Self {
        Scanner {
            s: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn text(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.s[from..self.i]).into_owned()
    }

    fn ident(&mut self) -> Option<String> {
        let from = self.i;
        if !self.peek().is_some_and(ident_start) {
            return None;
        }
        while self.peek().is_some_and(ident_char) {
            self.i += 1;
        }
        Some(self.text(from))
    }

    /// A quoted string at the cursor (`"…"`, `'…'` with escapes, or `` `…` ``), unquoted.
    fn string(&mut self) -> Result<String, String> {
        let quote = self.peek().ok_or("expected a string")?;
        if !matches!(quote, b'"' | b'\'' | b'`') {
            return Err(format!("expected a string at {}", self.i));
        }
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' if quote != b'`' => {
                    out.push(self.peek().ok_or("unterminated string")?);
                    self.i += 1;
                }
                c if c == quote => return Ok(String::from_utf8_lossy(&out).into_owned()),
                c => out.push(c),
            }
        }
        Err("unterminated string".into())
    }

    /// Label matchers after a `{`, through the closing `}`.
    fn matchers(&mut self) -> Result<Vec<(String, String, String)>, String> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(out);
            }
            let label = self
                .ident()
                .ok_or(format!("expected a label at {}", self.i))?;
            self.skip_ws();
            let from = self.i;
            while self.peek().is_some_and(|c| matches!(c, b'=' | b'!' | b'~')) {
                self.i += 1;
            }
            let op = self.text(from);
            if !["=", "!=", "=~", "!~"].contains(&op.as_str()) {
                return Err(format!("bad matcher operator {op:?} for {label}"));
            }
            self.skip_ws();
            let value = self.string()?;
            out.push((label, op, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                other => return Err(format!("expected , or }} in matchers, got {other:?}")),
            }
        }
    }

    fn variable(&mut self) -> String {
        self.i += 1; // `$`
        if self.peek() == Some(b'{') {
            let from = self.i + 1;
            while self.peek().is_some_and(|c| c != b'}') {
                self.i += 1;
            }
            let name = String::from_utf8_lossy(&self.s[from..self.i]).into_owned();
            self.i += 1;
            return name.split([':', '.']).next().unwrap_or_default().to_owned();
        }
        let from = self.i;
        while self.peek().is_some_and(ident_char) {
            self.i += 1;
        }
        self.text(from)
    }
}

fn scan(expr: &str) -> Result<Scanned, String> {
    let mut out = Scanned::default();
    let mut p = Scanner::new(expr);
    let mut depth = 0i32;
    while let Some(c) = p.peek() {
        match c {
            c if c.is_ascii_whitespace() => p.i += 1,
            b'#' => {
                while p.peek().is_some_and(|c| c != b'\n') {
                    p.i += 1;
                }
            }
            b'"' | b'\'' | b'`' => {
                p.string()?;
            }
            b'$' => {
                p.variable();
            }
            b'0'..=b'9' | b'.' => {
                while p.peek().is_some_and(|c| ident_char(c) || c == b'.') {
                    p.i += 1;
                }
            }
            b'{' => return Err("a selector without a metric name".into()),
            b'[' => {
                // A range or subquery: durations and `$__rate_interval`.
                while let Some(c) = p.peek() {
                    p.i += 1;
                    if c == b']' {
                        break;
                    }
                }
            }
            b'(' => {
                depth += 1;
                p.i += 1;
            }
            b')' => {
                depth -= 1;
                p.i += 1;
            }
            c if ident_start(c) => {
                let word = p.ident().unwrap();
                p.skip_ws();
                let next = p.peek();
                let lower = word.to_ascii_lowercase();
                if GROUPING.contains(&lower.as_str()) {
                    if next == Some(b'(') {
                        p.i += 1;
                        loop {
                            p.skip_ws();
                            match p.peek() {
                                Some(b')') => {
                                    p.i += 1;
                                    break;
                                }
                                Some(b',') => p.i += 1,
                                _ => out.grouping.push(
                                    p.ident().ok_or(format!("expected a label in {word}(…)"))?,
                                ),
                            }
                        }
                    }
                } else if KEYWORDS.contains(&lower.as_str()) {
                } else if next == Some(b'(') || AGGREGATIONS.contains(&lower.as_str()) {
                    // `sum by (…) (…)`: an aggregation, whatever follows it.
                    out.functions.push(word);
                } else {
                    let mut matchers = Vec::new();
                    if next == Some(b'{') {
                        p.i += 1;
                        matchers = p.matchers()?;
                    }
                    out.selectors.push(Selector {
                        name: word,
                        matchers,
                    });
                }
            }
            _ => p.i += 1,
        }
        if depth < 0 {
            return Err("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    Ok(out)
}

/// Check one PromQL expression against what the edge exports; `what` names it in
/// messages. Returns what was scanned, for the callers' own checks.
fn check_expr(what: &str, expr: &str, e: &Exported, problems: &mut Vec<String>) -> Scanned {
    let scanned = match scan(expr) {
        Ok(s) => s,
        Err(err) => {
            problems.push(format!("{what}: {err}: {expr}"));
            return Scanned::default();
        }
    };
    if scanned.selectors.is_empty() {
        problems.push(format!("{what}: selects no metric: {expr}"));
    }
    for f in &scanned.functions {
        if !FUNCTIONS.contains(&f.as_str()) {
            problems.push(format!("{what}: unknown function {f}"));
        }
    }
    let mut usable: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
    for sel in &scanned.selectors {
        let name = sel.name.as_str();
        let labels: BTreeSet<String> = if name.starts_with("mcp_edge_") {
            let Some(family) = e.series.get(name) else {
                let near: Vec<&String> = e
                    .series
                    .iter()
                    .filter(|(_, family)| name.starts_with(family.as_str()))
                    .map(|(series, _)| series)
                    .collect();
                problems.push(format!(
                    "{what}: {name} is not exported (a counter is selected as <name>_total, \
                     a histogram as _bucket/_sum/_count, a gauge by its name); near: {near:?}"
                ));
                continue;
            };
            match e.labels.get(name) {
                Some(l) => l.clone(),
                None => {
                    problems.push(format!(
                        "{what}: no sample of {name} ({family}) to read its labels from"
                    ));
                    continue;
                }
            }
        } else if FOREIGN_METRICS.contains(&name) {
            BTreeSet::new()
        } else {
            problems.push(format!(
                "{what}: {name} is neither an mcp_edge_ metric nor in FOREIGN_METRICS"
            ));
            continue;
        };
        for (label, op, value) in &sel.matchers {
            if !labels.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!(
                    "{what}: {name} has no label {label:?} (it has {labels:?})"
                ));
            }
            if CLOSED_LABELS.contains(&label.as_str()) && (op == "=" || op == "!=") {
                let known = e
                    .values
                    .get(&(name.to_owned(), label.clone()))
                    .cloned()
                    .unwrap_or_default();
                if !known.contains(value) {
                    problems.push(format!(
                        "{what}: {name}{{{label}{op}{value:?}}}: no such value (seen: {known:?})"
                    ));
                }
            }
        }
        usable.extend(labels);
    }
    for label in &scanned.grouping {
        if !usable.contains(label) {
            problems.push(format!(
                "{what}: groups by {label:?}, which none of its metrics has ({usable:?})"
            ));
        }
    }
    scanned
}

// ---- The files ----

fn all_panels(panels: &[Value], out: &mut Vec<Value>) {
    for p in panels {
        out.push(p.clone());
        if let Some(inner) = p["panels"].as_array() {
            all_panels(inner, out);
        }
    }
}

fn nonempty_str<'v>(v: &'v Value, what: &str, problems: &mut Vec<String>) -> &'v str {
    match v.as_str() {
        Some(s) if !s.trim().is_empty() => s,
        _ => {
            problems.push(format!("{what}: missing or empty"));
            ""
        }
    }
}

#[test]
fn the_grafana_dashboard_is_importable_and_uses_only_exported_metrics() {
    let e = exported();
    let d: Value = serde_json::from_str(&read(DASHBOARD)).expect(DASHBOARD);
    let mut problems = Vec::new();

    nonempty_str(&d["title"], "title", &mut problems);
    let uid = nonempty_str(&d["uid"], "uid", &mut problems);
    assert!(uid.len() <= 40, "Grafana uids are at most 40 characters");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    // Importable: the Prometheus data source is an import input and a dashboard variable.
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
        && i["type"] == "datasource"
        && i["pluginId"] == "prometheus"));
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a `datasource` variable of type datasource"
    );
    let var_names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    let ds_ok = |ds: &Value| ds["type"] == "prometheus" && ds["uid"] == "${datasource}";

    // Query variables: `label_values(<selector>, <label>)`.
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap_or("?");
        let what = format!("variable {name}");
        if !ds_ok(&v["datasource"]) {
            problems.push(format!("{what}: datasource is not ${{datasource}}"));
        }
        let q = v["query"]["query"].as_str().or(v["query"].as_str());
        let Some(args) = q
            .and_then(|q| q.trim().strip_prefix("label_values("))
            .and_then(|q| q.strip_suffix(')'))
        else {
            problems.push(format!("{what}: not label_values(…): {q:?}"));
            continue;
        };
        let (selector, label) = args.rsplit_once(',').unwrap();
        let scanned = check_expr(&what, selector, &e, &mut problems);
        let label = label.trim();
        let has = scanned.selectors.iter().all(|s| {
            TARGET_LABELS.contains(&label)
                || e.labels.get(&s.name).is_some_and(|l| l.contains(label))
        });
        if !has {
            problems.push(format!("{what}: no label {label} on {selector}"));
        }
    }

    let mut panels = Vec::new();
    all_panels(d["panels"].as_array().expect("panels"), &mut panels);
    let mut ids = BTreeSet::new();
    let mut used_families = BTreeSet::new();
    let mut exprs = 0;
    for p in &panels {
        let title = nonempty_str(&p["title"], "panel title", &mut problems).to_owned();
        let what = format!("panel {title:?}");
        let Some(id) = p["id"].as_u64() else {
            problems.push(format!("{what}: no numeric id"));
            continue;
        };
        if !ids.insert(id) {
            problems.push(format!("{what}: duplicate id {id}"));
        }
        let g = &p["gridPos"];
        match ["h", "w", "x", "y"].map(|k| g[k].as_u64()) {
            [Some(_), Some(w), Some(x), Some(_)] if x + w > 24 => {
                problems.push(format!("{what}: wider than the 24-column grid"));
            }
            [Some(_), Some(_), Some(_), Some(_)] => {}
            _ => problems.push(format!("{what}: gridPos needs h, w, x, y")),
        }
        let kind = nonempty_str(&p["type"], &format!("{what} type"), &mut problems);
        if kind == "row" {
            continue;
        }
        if !ds_ok(&p["datasource"]) {
            problems.push(format!("{what}: datasource is not ${{datasource}}"));
        }
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if targets.is_empty() {
            problems.push(format!("{what}: no targets"));
        }
        let mut ref_ids = BTreeSet::new();
        for t in targets {
            let ref_id = nonempty_str(&t["refId"], &format!("{what} refId"), &mut problems);
            if !ref_ids.insert(ref_id.to_owned()) {
                problems.push(format!("{what}: duplicate refId {ref_id}"));
            }
            if !t["datasource"].is_null() && !ds_ok(&t["datasource"]) {
                problems.push(format!("{what}: target datasource is not ${{datasource}}"));
            }
            let expr = nonempty_str(&t["expr"], &format!("{what} expr"), &mut problems);
            let scanned = check_expr(&format!("{what} {ref_id}"), expr, &e, &mut problems);
            for v in &variables(expr) {
                if !v.starts_with("__") && !var_names.contains(v.as_str()) {
                    problems.push(format!("{what}: undefined variable ${v}"));
                }
            }
            for s in &scanned.selectors {
                used_families.extend(e.series.get(&s.name).cloned());
            }
            exprs += 1;
        }
    }
    assert!(exprs >= 20, "only {exprs} expressions found");
    // Every exported family has a panel.
    for family in e.families.keys().filter(|f| f.starts_with("mcp_edge_")) {
        if !used_families.contains(family) {
            problems.push(format!("no panel shows {family}"));
        }
    }
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));
}

fn yaml_str<'y>(y: &'y Yaml, what: &str, problems: &mut Vec<String>) -> &'y str {
    match y.as_str() {
        Some(s) if !s.trim().is_empty() => s,
        _ => {
            problems.push(format!("{what}: missing or empty"));
            ""
        }
    }
}

fn is_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

#[test]
fn the_alert_rules_are_well_formed_and_use_only_exported_metrics() {
    let e = exported();
    let docs = YamlLoader::load_from_str(&read(ALERTS)).expect(ALERTS);
    assert_eq!(docs.len(), 1, "one YAML document");
    let groups = docs[0]["groups"].as_vec().expect("groups");
    assert!(!groups.is_empty());
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    let mut group_names = BTreeSet::new();
    let mut cert_14d = false;
    for g in groups {
        let group = yaml_str(&g["name"], "group name", &mut problems);
        if !group_names.insert(group.to_owned()) {
            problems.push(format!("duplicate group {group}"));
        }
        let rules = g["rules"].as_vec().map(Vec::as_slice).unwrap_or(&[]);
        if rules.is_empty() {
            problems.push(format!("group {group}: no rules"));
        }
        for r in rules {
            let alert = yaml_str(&r["alert"], "alert", &mut problems);
            let what = format!("alert {alert}");
            if !names.insert(alert.to_owned()) {
                problems.push(format!("duplicate {what}"));
            }
            let expr = yaml_str(&r["expr"], &format!("{what} expr"), &mut problems);
            let scanned = check_expr(&what, expr, &e, &mut problems);
            if !variables(expr).is_empty() {
                problems.push(format!("{what}: Grafana variables in a rule"));
            }
            let r_for = yaml_str(&r["for"], &format!("{what} for"), &mut problems);
            if !is_duration(r_for) {
                problems.push(format!("{what}: for {r_for:?} is not a duration"));
            }
            let severity = yaml_str(
                &r["labels"]["severity"],
                &format!("{what} severity"),
                &mut problems,
            );
            if !["critical", "warning", "info"].contains(&severity) {
                problems.push(format!("{what}: severity {severity:?}"));
            }
            // Annotations name only labels the alert's series carry.
            let carried: BTreeSet<String> = if scanned.grouping.is_empty() {
                let mut all: BTreeSet<String> =
                    TARGET_LABELS.iter().map(|s| s.to_string()).collect();
                for s in &scanned.selectors {
                    all.extend(e.labels.get(&s.name).cloned().unwrap_or_default());
                }
                all
            } else {
                scanned.grouping.iter().cloned().collect()
            };
            for key in ["summary", "description"] {
                let text = yaml_str(
                    &r["annotations"][key],
                    &format!("{what} {key}"),
                    &mut problems,
                );
                for (at, _) in text.match_indices("$labels.") {
                    let rest = &text[at + "$labels.".len()..];
                    let label: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !carried.contains(&label) {
                        problems.push(format!(
                            "{what}: {key} uses $labels.{label}, not on its series ({carried:?})"
                        ));
                    }
                }
            }
            if scanned
                .selectors
                .iter()
                .any(|s| s.name == "mcp_edge_certificate_expiry_timestamp_seconds")
            {
                let flat: String = expr.split_whitespace().collect();
                cert_14d |= ["14*24*3600", "14*24*60*60", "14*86400", "1209600"]
                    .iter()
                    .any(|t| flat.contains(&format!("<{t}")));
            }
        }
    }
    for required in [
        "McpEdgeHighToolErrorRate",
        "McpEdgeHighToolLatencyP99",
        "McpEdgeCertificateExpiringSoon",
        "McpEdgeSecretReloadFailures",
        "McpEdgeRateLimitStorm",
        "McpEdgeAuthFailureSpike",
    ] {
        if !names.contains(required) {
            problems.push(format!("no alert {required}"));
        }
    }
    if !cert_14d {
        problems.push("no certificate alert with a 14-day threshold".into());
    }
    assert!(problems.is_empty(), "{ALERTS}:\n{}", problems.join("\n"));

    // Where Prometheus's own checker is installed (not in CI: Debian's package is large).
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(root().join(ALERTS))
        .output()
    {
        assert!(
            out.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_promql_scanner_finds_names_matchers_groupings_and_variables() {
    let s = scan(
        r#"sum by (tool, le) (rate(mcp_edge_x_bucket{outcome!="ok", job=~"$job"}[$__rate_interval]))
           / on(instance) group_left(a) up # a comment: not_a_metric{x="y"}
           and "not_a_metric" < 14 * 24 * 3600 offset 5m"#,
    )
    .unwrap();
    assert_eq!(
        s.selectors,
        [
            Selector {
                name: "mcp_edge_x_bucket".into(),
                matchers: vec![
                    ("outcome".into(), "!=".into(), "ok".into()),
                    ("job".into(), "=~".into(), "$job".into()),
                ],
            },
            Selector {
                name: "up".into(),
                matchers: vec![],
            },
        ]
    );
    assert_eq!(s.functions, ["sum", "rate"]);
    assert_eq!(s.grouping, ["tool", "le", "instance", "a"]);
    assert_eq!(
        variables(r#"rate(x{a=~"$job|${instance}"}[$__rate_interval]) and y{b=~"c$"}"#),
        ["job", "instance", "__rate_interval"]
    );
    assert!(scan("rate(x[5m]").is_err());
    assert!(scan(r#"x{a="b}"#).is_err());

    let e = Exported::parse(
        "# TYPE mcp_edge_c counter\nmcp_edge_c_total{a=\"1,\\\"}\",b=\"ok\"} 1\n\
         # TYPE mcp_edge_h histogram\nmcp_edge_h_bucket{le=\"+Inf\"} 1\n# EOF\n",
    );
    assert_eq!(e.series["mcp_edge_c_total"], "mcp_edge_c");
    assert_eq!(e.series["mcp_edge_h_count"], "mcp_edge_h");
    assert!(!e.series.contains_key("mcp_edge_c"));
    assert_eq!(
        e.values[&("mcp_edge_c_total".into(), "a".into())],
        ["1,\"}".to_string()].into()
    );
    let mut problems = Vec::new();
    check_expr(
        "t",
        r#"sum by (zz) (mcp_edge_c_total{nope="x", b="bad"}) + mcp_edge_h + mcp_edge_c + foo + bogus_fn(mcp_edge_h_bucket)"#,
        &e,
        &mut problems,
    );
    let text = problems.join("\n");
    for expected in [
        "no label \"nope\"",
        "mcp_edge_h is not exported",
        "mcp_edge_c is not exported",
        "foo is neither",
        "unknown function bogus_fn",
        "groups by \"zz\"",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    // `b` is not a closed label, so its value is not checked.
    assert_eq!(problems.len(), 6, "{text}");
}
