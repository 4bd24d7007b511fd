//! SEP-2243 headers: the `Mcp-Name` and `Mcp-Param-*` values of a stateless
//! tools/call, encoded as rmcp's clients encode them.

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use super::options::BenchError;

/// A header value as rmcp's clients encode it: verbatim when it is plain visible
/// ASCII, else `=?base64?…?=`.
pub(super) fn encode_header_value(value: &str) -> String {
    let needs_base64 = !value.is_empty()
        && (value.starts_with([' ', '\t'])
            || value.ends_with([' ', '\t'])
            || value.chars().any(|c| !(' '..='~').contains(&c))
            || (value.starts_with("=?base64?") && value.ends_with("?=")));
    if needs_base64 {
        format!("=?base64?{}?=", base64(value.as_bytes()))
    } else {
        value.to_owned()
    }
}

pub(super) fn header_value(value: &str) -> Result<HeaderValue, BenchError> {
    HeaderValue::from_str(&encode_header_value(value))
        .map_err(|e| BenchError::Setup(format!("cannot put {value:?} in a header: {e}")))
}

/// `Mcp-Param-*` headers for arguments whose schema property carries `x-mcp-header`.
pub(super) fn param_headers(
    schema: &Value,
    arguments: &Value,
) -> Result<Vec<(HeaderName, HeaderValue)>, BenchError> {
    fn walk<'a>(
        properties: Option<&'a Value>,
        path: &mut Vec<&'a str>,
        arguments: &Value,
        out: &mut Vec<(String, String)>,
    ) {
        let Some(Value::Object(properties)) = properties else {
            return;
        };
        for (name, sub) in properties {
            path.push(name);
            if let Some(Value::String(header)) = sub.get("x-mcp-header")
                && !header.is_empty()
            {
                let arg = path.iter().try_fold(arguments, |v, k| v.get(*k));
                let text = match arg {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                if let Some(text) = text {
                    out.push((format!("mcp-param-{header}"), text));
                }
            }
            walk(sub.get("properties"), path, arguments, out);
            path.pop();
        }
    }
    let mut found = Vec::new();
    walk(
        schema.get("properties"),
        &mut Vec::new(),
        arguments,
        &mut found,
    );
    found
        .into_iter()
        .map(|(name, text)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| BenchError::Setup(format!("bad x-mcp-header name {name}: {e}")))?;
            Ok((name, header_value(&text)?))
        })
        .collect()
}

pub(super) fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| TABLE[((n >> shift) & 63) as usize] as char;
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}
