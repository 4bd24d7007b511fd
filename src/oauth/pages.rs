//! The pages a person sees while signing in: sign-in, consent, and an error page.
//! Plain server-rendered HTML, one inline style sheet, no scripts, no external
//! assets; every text a person reads is in this file. Every page refuses to be
//! framed (clickjacking) and is never cached.

use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::html::escape as esc;

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--bg:#f6f8fa;--card:#fff;--line:#d0d7de;--accent:#0b5cad;--danger:#b42318}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--card:#161b22;--line:#30363d;--accent:#4493f8;--danger:#f85149}}\
*{box-sizing:border-box}body{margin:0;min-height:100vh;display:grid;place-items:center;background:var(--bg);color:var(--fg);\
font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
main{width:min(28rem,calc(100vw - 2rem));background:var(--card);border:1px solid var(--line);border-radius:12px;padding:2rem}\
h1{font-size:1.35rem;margin:0 0 .25rem}p{margin:.5rem 0}.muted{color:var(--muted);font-size:.9rem}\
.brand{font-weight:600;letter-spacing:.02em;color:var(--muted);font-size:.85rem;margin-bottom:1rem}\
label{display:block;font-weight:600;margin:1rem 0 .35rem}\
input[type=password]{width:100%;padding:.6rem .7rem;border:1px solid var(--line);border-radius:8px;background:var(--bg);color:var(--fg);font:inherit}\
input:focus,button:focus{outline:3px solid var(--accent);outline-offset:2px}\
.row{display:flex;gap:.75rem;margin-top:1.5rem}button{flex:1;padding:.65rem 1rem;border-radius:8px;border:1px solid var(--line);\
font:inherit;font-weight:600;cursor:pointer;background:var(--card);color:var(--fg)}\
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}\
.error{border-left:4px solid var(--danger);padding:.5rem .75rem;background:var(--bg);margin:1rem 0}\
ul{padding-left:1.2rem;margin:.5rem 0}code{font-size:.9em;overflow-wrap:anywhere}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{} · mcp-edge</title><style>{STYLE}</style></head>\
         <body><main><div class=\"brand\">mcp-edge</div>{body}</main></body></html>",
        esc(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    // Not frameable (both the old header and CSP), no scripts, nothing from elsewhere.
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// What the sign-in and consent pages show about the client asking.
pub struct Asking<'a> {
    pub client_name: &'a str,
    /// The host the browser will be sent back to.
    pub redirect_host: &'a str,
    pub scope: &'a str,
}

fn asking_text(a: &Asking<'_>) -> String {
    format!(
        "<p><strong>{}</strong> wants to use this MCP server as you. \
         When you are done you are sent back to <code>{}</code>.</p>",
        esc(a.client_name),
        esc(a.redirect_host)
    )
}

/// The ways a person may sign in here.
pub struct Methods<'a> {
    /// "Sign in with <name>": the team's identity provider.
    pub idp: Option<&'a str>,
    /// Paste the team API key.
    pub api_key: bool,
}

/// The sign-in page: the identity provider's button and/or the API-key form.
pub fn sign_in(
    asking: &Asking<'_>,
    methods: &Methods<'_>,
    request: &str,
    csrf: &str,
    error: Option<&str>,
) -> Response {
    let error_html = error
        .map(|e| format!("<div class=\"error\" role=\"alert\">{}</div>", esc(e)))
        .unwrap_or_default();
    let status = match error {
        Some(_) => StatusCode::UNAUTHORIZED,
        None => StatusCode::OK,
    };
    let hidden = format!(
        "<input type=\"hidden\" name=\"request\" value=\"{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(request),
        esc(csrf)
    );
    let idp = methods
        .idp
        .map(|name| {
            format!(
                "<form method=\"post\" action=\"/authorize/idp\">{hidden}\
                 <div class=\"row\"><button class=\"primary\" type=\"submit\" id=\"idp\">Sign in with {}</button></div>\
                 </form>",
                esc(name)
            )
        })
        .unwrap_or_default();
    let or = match (methods.idp.is_some(), methods.api_key) {
        (true, true) => "<p class=\"muted\" style=\"text-align:center;margin-top:1.25rem\">or</p>",
        _ => "",
    };
    let key = match methods.api_key {
        true => format!(
            "<form method=\"post\" action=\"/authorize/key\">{hidden}\
             <label for=\"api_key\">Your team API key</label>\
             <input id=\"api_key\" name=\"api_key\" type=\"password\" autocomplete=\"off\" required{}>\
             <p class=\"muted\">The key stays on this server: {} never sees it.</p>\
             <div class=\"row\"><button type=\"submit\" id=\"key\"{}>Continue</button></div>\
             </form>",
            if methods.idp.is_none() {
                " autofocus"
            } else {
                ""
            },
            esc(asking.client_name),
            if methods.idp.is_none() {
                " class=\"primary\""
            } else {
                ""
            },
        ),
        false => String::new(),
    };
    let body = format!(
        "<h1>Sign in</h1>{}{error_html}{idp}{or}{key}",
        asking_text(asking)
    );
    page(status, "Sign in", &body)
}

/// Approve or deny the client, signed in as `principal`.
pub fn consent(asking: &Asking<'_>, principal: &str, consent: &str, csrf: &str) -> Response {
    let scope = match asking.scope.trim() {
        "" => "<li>use the tools this server gives you</li>".to_owned(),
        s => s
            .split_whitespace()
            .map(|s| format!("<li><code>{}</code></li>", esc(s)))
            .collect(),
    };
    let body = format!(
        "<h1>Allow access?</h1>\
         <p class=\"muted\">Signed in as <strong>{}</strong></p>{}\
         <p>It will be able to:</p><ul>{scope}</ul>\
         <form method=\"post\" action=\"/authorize/consent\">\
         <input type=\"hidden\" name=\"consent\" value=\"{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <div class=\"row\"><button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\
         <button class=\"primary\" type=\"submit\" name=\"decision\" value=\"approve\">Allow</button></div>\
         </form>",
        esc(principal),
        asking_text(asking),
        esc(consent),
        esc(csrf),
    );
    page(StatusCode::OK, "Allow access?", &body)
}

/// A request the edge cannot send back to its client (unknown client, untrusted
/// redirect URI): shown here, never redirected.
pub fn error(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><div class=\"error\" role=\"alert\">{}</div>\
         <p class=\"muted\">Go back to the application you came from and try again; \
         if it keeps happening, show this message to whoever runs this server.</p>",
        esc(title),
        esc(detail)
    );
    page(status, title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_shown_is_escaped() {
        assert_eq!(
            esc("<script>\"x\"&'y'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;"
        );
    }
}
