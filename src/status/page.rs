//! The status page: one plain HTML document, no external assets. The server renders
//! every table; a small inline script then polls `status.json?view=page` (the same
//! tables as text, and the chart's paths) every two seconds and puts the text in
//! place with `textContent`, so nothing a client chose (a principal's name, a tool's)
//! is ever parsed as markup. A Content-Security-Policy allows only this script and
//! style (by hash) and requests to this origin.

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Snapshot;
use crate::html::escape;

/// One table of the page, as text.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub id: &'static str,
    pub title: String,
    pub note: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Shown as the only row when there are none.
    pub empty: &'static str,
}

/// The calls chart: SVG path data (numbers only) and its labels.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub calls_path: String,
    pub errors_path: String,
    pub max_label: String,
    pub note: String,
}

/// What the page shows, as the script receives it.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub summary: String,
    pub chart: Chart,
    pub sections: Vec<Section>,
}

const CHART_W: f64 = 600.0;
const CHART_H: f64 = 120.0;

fn time(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn ago(now: u64, unix: u64) -> String {
    let secs = now.saturating_sub(unix);
    let text = humantime::format_duration(Duration::from_secs(secs)).to_string();
    format!(
        "{} ({} ago)",
        time(unix),
        if secs == 0 { "0s".into() } else { text }
    )
}

fn rate(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn principal_text(p: &str) -> String {
    if p.is_empty() {
        "(shared)".into()
    } else {
        p.to_owned()
    }
}

fn chart(s: &Snapshot) -> Chart {
    let series = &s.calls.series;
    let max = series
        .iter()
        .map(|p| p.calls_per_second.max(p.errors_per_second))
        .fold(0.0_f64, f64::max);
    let top = if max <= 0.0 { 1.0 } else { max * 1.1 };
    let span = (super::history::SAMPLES - 1) as f64;
    let path = |value: &dyn Fn(&super::history::Point) -> f64| -> String {
        let n = series.len();
        let mut d = String::new();
        for (i, p) in series.iter().enumerate() {
            // The newest point at the right edge, older ones leftwards.
            let x = CHART_W - (n - 1 - i) as f64 * CHART_W / span;
            let y = CHART_H - value(p) / top * (CHART_H - 4.0);
            d.push_str(&format!(
                "{}{:.1} {:.1} ",
                if d.is_empty() { "M" } else { "L" },
                x.max(0.0),
                y
            ));
        }
        d.trim_end().to_owned()
    };
    Chart {
        calls_path: path(&|p| p.calls_per_second),
        errors_path: path(&|p| p.errors_per_second),
        max_label: format!("{} calls/s", rate(top)),
        note: format!(
            "tools/call per second (errors in red), every {} s over the last {} s; now {} calls/s, {} errors/s",
            s.calls.sample_seconds,
            s.calls.window_seconds,
            rate(s.calls.calls_per_second),
            rate(s.calls.errors_per_second),
        ),
    }
}

/// The page's tables and chart from a snapshot.
pub fn view(s: &Snapshot) -> View {
    let now = s.generated_at_unix;
    let mut sections = Vec::new();

    // Sessions by principal, and each principal's children per backend.
    let mut principals: Vec<String> = s
        .sessions
        .by_principal
        .iter()
        .map(|p| p.principal.to_string())
        .collect();
    for b in &s.backends {
        for c in &b.children_by_principal {
            principals.push(c.principal.to_string());
        }
    }
    principals.sort();
    principals.dedup();
    let mut headers = vec!["Principal".to_owned(), "Sessions".to_owned()];
    headers.extend(s.backends.iter().map(|b| format!("Children: {}", b.name)));
    sections.push(Section {
        id: "sessions",
        title: format!("Sessions by principal ({} open)", s.sessions.total),
        note: "Sessions each principal holds on this replica, and the backend processes started for it.".into(),
        headers,
        rows: principals
            .iter()
            .map(|p| {
                let sessions = s
                    .sessions
                    .by_principal
                    .iter()
                    .find(|x| *x.principal == **p)
                    .map_or(0, |x| x.sessions);
                let mut row = vec![principal_text(p), sessions.to_string()];
                row.extend(s.backends.iter().map(|b| {
                    b.children_by_principal
                        .iter()
                        .find(|c| *c.principal == **p)
                        .map_or(0, |c| c.children)
                        .to_string()
                }));
                row
            })
            .collect(),
        empty: "No sessions.",
    });

    sections.push(Section {
        id: "backends",
        title: "Backends".into(),
        note: format!(
            "{} backend processes running in all.",
            s.backends.iter().map(|b| b.children).sum::<usize>()
        ),
        headers: ["Backend", "Kind", "Children shared by", "Children"]
            .map(String::from)
            .to_vec(),
        rows: s
            .backends
            .iter()
            .map(|b| {
                vec![
                    b.name.clone(),
                    b.kind.to_owned(),
                    match b.share {
                        "none" => "nobody (one per session, one per principal)".to_owned(),
                        "principal" => "a principal's sessions".to_owned(),
                        other => other.to_owned(),
                    },
                    b.children.to_string(),
                ]
            })
            .collect(),
        empty: "No backends.",
    });

    sections.push(Section {
        id: "tools",
        title: "Calls and errors by tool".into(),
        note: format!(
            "tools/call over the last {} s: {} calls, {} errors (an error is any outcome but ok).",
            s.calls.window_seconds, s.calls.calls, s.calls.errors
        ),
        headers: ["Tool", "Backend", "Calls", "Errors"]
            .map(String::from)
            .to_vec(),
        rows: s
            .calls
            .by_tool
            .iter()
            .map(|t| {
                vec![
                    t.tool.clone(),
                    t.backend.clone(),
                    t.calls.to_string(),
                    t.errors.to_string(),
                ]
            })
            .collect(),
        empty: "No calls in the window.",
    });

    let window = s.refusals.window_seconds / 60;
    sections.push(Section {
        id: "rate-limited",
        title: "Principals rate-limited".into(),
        note: format!("Refused by their rate limit in the last {window} minutes."),
        headers: ["Principal", "Refusals", "Last refused"]
            .map(String::from)
            .to_vec(),
        rows: s
            .rate_limited
            .iter()
            .map(|l| {
                vec![
                    l.principal.to_string(),
                    l.refusals.to_string(),
                    ago(now, l.last_unix),
                ]
            })
            .collect(),
        empty: "Nobody.",
    });

    sections.push(Section {
        id: "refusals",
        title: "Refusals by reason".into(),
        note: format!("Requests the edge refused in the last {window} minutes."),
        headers: ["Reason", "Count"].map(String::from).to_vec(),
        rows: s
            .refusals
            .by_reason
            .iter()
            .map(|r| vec![r.reason.to_owned(), r.count.to_string()])
            .collect(),
        empty: "None.",
    });

    sections.push(Section {
        id: "recent-refusals",
        title: "Recent refusals".into(),
        note: "Newest first.".into(),
        headers: ["Time", "Reason", "Principal", "Status", "Tool or name"]
            .map(String::from)
            .to_vec(),
        rows: s
            .refusals
            .recent
            .iter()
            .map(|r| {
                vec![
                    ago(now, r.at_unix),
                    r.reason.to_owned(),
                    r.principal.as_deref().unwrap_or("-").to_owned(),
                    r.status.to_string(),
                    r.tool.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
        empty: "None.",
    });

    let c = &s.certificate;
    let mut cert_rows = vec![vec![
        "Source".to_owned(),
        c.source.unwrap_or("none yet").to_owned(),
    ]];
    if let (Some(t), Some(left)) = (c.not_after_unix, c.expires_in_seconds) {
        let when = humantime::format_rfc3339_seconds(
            UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0)),
        );
        let left = if left <= 0 {
            "EXPIRED".to_owned()
        } else {
            format!("in {} days", left / 86_400)
        };
        cert_rows.push(vec!["Expires".into(), format!("{when} ({left})")]);
    }
    if let Some(a) = &c.acme {
        cert_rows.push(vec!["ACME".into(), a.state.to_owned()]);
        cert_rows.push(vec!["ACME since".into(), ago(now, a.at_unix)]);
        if let Some(d) = &a.detail {
            cert_rows.push(vec!["ACME error".into(), d.clone()]);
        }
    }
    sections.push(Section {
        id: "certificate",
        title: "Certificate".into(),
        note: "The certificate served on the main listener.".into(),
        headers: ["", "Value"].map(String::from).to_vec(),
        rows: cert_rows,
        empty: "",
    });

    sections.push(Section {
        id: "reloads",
        title: "Reloads".into(),
        note: "Each reloadable thing: its reloads since start and the last one's result (a failed reload keeps the last good value).".into(),
        headers: ["Kind", "Ok", "Failed", "Last", "Result", "Message"]
            .map(String::from)
            .to_vec(),
        rows: s
            .reloads
            .iter()
            .map(|r| {
                let (at, result, message) = match &r.last {
                    Some(l) => (
                        ago(now, l.at_unix),
                        if l.ok { "ok" } else { "FAILED" }.to_owned(),
                        l.message.clone(),
                    ),
                    None => ("-".into(), "as loaded at start".into(), String::new()),
                };
                vec![
                    r.kind.to_owned(),
                    r.ok.to_string(),
                    r.failed.to_string(),
                    at,
                    result,
                    message,
                ]
            })
            .collect(),
        empty: "Nothing reloadable is configured.",
    });

    sections.push(Section {
        id: "replicas",
        title: "Replicas seen".into(),
        note: match &s.replica {
            Some(me) => format!("This replica is {me}; the others it exchanged requests with:"),
            None => "A single replica (cluster.peer_listen is not set).".into(),
        },
        headers: [
            "Replica",
            "Forwarded to",
            "Received from",
            "Unreachable",
            "Last seen",
            "Last error",
        ]
        .map(String::from)
        .to_vec(),
        rows: s
            .replicas
            .iter()
            .map(|r| {
                vec![
                    r.address.clone(),
                    r.seen.forwarded_to.to_string(),
                    r.seen.received_from.to_string(),
                    r.seen.unreachable.to_string(),
                    if r.seen.last_seen_unix > 0 {
                        ago(now, r.seen.last_seen_unix)
                    } else {
                        "-".into()
                    },
                    r.seen.last_error.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
        empty: "None seen.",
    });

    let mut services = Vec::new();
    services.push(match &s.redis {
        Some(r) => vec![
            "Redis".into(),
            if r.up { "up" } else { "UNREACHABLE" }.into(),
            r.url.clone(),
        ],
        None => vec!["Redis".into(), "not configured".into(), String::new()],
    });
    services.push(match &s.collector {
        Some(c) => vec![
            "Trace collector".into(),
            if c.failing { "FAILING" } else { "ok" }.into(),
            format!(
                "{}; {} spans queued, {} failed exports, {} spans dropped, {} traces shed",
                c.endpoint, c.queued_spans, c.export_failures, c.spans_dropped, c.traces_shed
            ),
        ],
        None => vec![
            "Trace collector".into(),
            "not configured".into(),
            String::new(),
        ],
    });
    sections.push(Section {
        id: "services",
        title: "Redis and the trace collector".into(),
        note: String::new(),
        headers: ["Service", "State", "Detail"].map(String::from).to_vec(),
        rows: services,
        empty: "",
    });

    let uptime = humantime::format_duration(Duration::from_secs(s.uptime_seconds));
    View {
        summary: format!(
            "mcp-edge {} · up {uptime} · {} sessions · {} calls/s · updated {}",
            s.version,
            s.sessions.total,
            rate(s.calls.calls_per_second),
            time(now),
        ),
        chart: chart(s),
        sections,
    }
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:72em;padding:0 1em;color:#1b1b1b;background:#fff}\
h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin:1.4em 0 .3em}\
.note{color:#555;margin:.2em 0 .5em}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:break-word}\
th{background:#f3f3f3}\
#stale{display:none;background:#fde8e8;color:#8a1c1c;padding:.4em .6em;margin:.5em 0}\
body.stale #stale{display:block}\
svg{width:100%;height:auto;border:1px solid #ddd;background:#fafafa}\
#chart-calls{fill:none;stroke:#1f5fbf;stroke-width:2}#chart-errors{fill:none;stroke:#c62828;stroke-width:2}\
#chart-max{font-size:7px;fill:#555}\
";

const SCRIPT: &str = r#""use strict";
(function () {
  function cells(row, width) {
    var tr = document.createElement("tr");
    row.forEach(function (text) {
      var td = document.createElement("td");
      td.textContent = text;
      if (row.length === 1 && width > 1) td.colSpan = width;
      tr.appendChild(td);
    });
    return tr;
  }
  function render(view) {
    document.getElementById("summary").textContent = view.summary;
    view.sections.forEach(function (s) {
      var el = document.getElementById(s.id);
      if (!el) return;
      el.querySelector("h2").textContent = s.title;
      el.querySelector(".note").textContent = s.note;
      var rows = s.rows.length ? s.rows : [[s.empty]];
      var body = el.querySelector("tbody");
      body.replaceChildren.apply(body, rows.map(function (r) { return cells(r, s.headers.length); }));
    });
    document.getElementById("chart-calls").setAttribute("d", view.chart.calls_path);
    document.getElementById("chart-errors").setAttribute("d", view.chart.errors_path);
    document.getElementById("chart-max").textContent = view.chart.max_label;
    document.getElementById("chart-note").textContent = view.chart.note;
  }
  function poll() {
    fetch("status.json?view=page", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (view) { render(view); document.body.classList.remove("stale"); })
      .catch(function () { document.body.classList.add("stale"); });
  }
  setInterval(poll, 2000);
})();
"#;

fn hash(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// The page's Content-Security-Policy: its own script and style only (by hash),
/// requests to its own origin only, nothing else.
pub fn content_security_policy() -> &'static str {
    static CSP: LazyLock<String> = LazyLock::new(|| {
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(SCRIPT),
            hash(STYLE)
        )
    });
    &CSP
}

fn table(out: &mut String, s: &Section) {
    out.push_str(&format!(
        "<section id=\"{}\"><h2>{}</h2><p class=\"note\">{}</p><table><thead><tr>",
        s.id,
        escape(&s.title),
        escape(&s.note)
    ));
    for h in &s.headers {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead><tbody>");
    if s.rows.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"{}\">{}</td></tr>",
            s.headers.len().max(1),
            escape(s.empty)
        ));
    }
    for row in &s.rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>\n");
}

/// The whole page, rendered now.
pub fn html(s: &Snapshot) -> String {
    let v = view(s);
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    out.push_str("<meta name=\"referrer\" content=\"no-referrer\">");
    out.push_str("<title>mcp-edge status</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body>\n<header><h1>mcp-edge status</h1>");
    out.push_str(&format!("<p id=\"summary\">{}</p>", escape(&v.summary)));
    out.push_str("<p id=\"stale\">Not updating: the edge did not answer the last poll.</p></header>\n<main>\n");
    let mut sections = v.sections.iter();
    // The chart goes with the calls table.
    for s in sections.by_ref() {
        if s.id == "tools" {
            out.push_str(&format!(
                "<section id=\"chart\"><h2>Calls per second</h2><p class=\"note\" id=\"chart-note\">{}</p>\
                 <svg viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"tool calls per second\">\
                 <text id=\"chart-max\" x=\"4\" y=\"12\">{}</text>\
                 <path id=\"chart-calls\" d=\"{}\"/><path id=\"chart-errors\" d=\"{}\"/></svg></section>\n",
                escape(&v.chart.note),
                escape(&v.chart.max_label),
                escape(&v.chart.calls_path),
                escape(&v.chart.errors_path),
            ));
        }
        table(&mut out, s);
    }
    out.push_str("</main>\n<script>");
    out.push_str(SCRIPT);
    out.push_str("</script></body></html>\n");
    out
}
