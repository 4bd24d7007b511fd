//! Tests of the bench's reply parsing, statistics and header encoding.

use serde_json::json;

use super::headers::{base64, encode_header_value, param_headers};
use super::options::parse_json_object;
use super::reply::{check_tool_result, find_message};
use super::report::percentile;
use super::sse::SseParser;

fn parse_all(chunks: &[&[u8]]) -> Vec<String> {
    let mut p = SseParser::default();
    let mut out = Vec::new();
    for c in chunks {
        p.push(c, &mut out);
    }
    p.finish(&mut out);
    out
}

#[test]
fn sse_priming_event_then_reply() {
    let body = b"id: 0\nretry: 3000\ndata: \n\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n";
    let events = parse_all(&[body]);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], "");
    assert_eq!(find_message(&events[0], 7).unwrap(), None);
    let msg = find_message(&events[1], 7).unwrap().unwrap();
    assert_eq!(msg["id"], 7);
    assert!(check_tool_result(&msg).is_ok());
}

#[test]
fn sse_split_chunks_crlf_comments_and_multiline_data() {
    let body: &[u8] = b": keep-alive\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:x\r";
    // Split everywhere, including between CR and LF.
    let chunks: Vec<&[u8]> = body.chunks(1).collect();
    let events = parse_all(&chunks);
    assert_eq!(events, vec!["{\"a\":\n1}".to_owned(), "x".to_owned()]);
}

#[test]
fn sse_skips_other_messages_and_finds_batches() {
    let note = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#;
    assert_eq!(find_message(note, 3).unwrap(), None);
    let other = r#"{"jsonrpc":"2.0","id":2,"result":{}}"#;
    assert_eq!(find_message(other, 3).unwrap(), None);
    let batch =
        r#"[{"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":3,"result":{"ok":1}}]"#;
    assert_eq!(find_message(batch, 3).unwrap().unwrap()["result"]["ok"], 1);
    assert!(find_message("not json", 3).is_err());
}

#[test]
fn tool_results_are_checked() {
    let ok = json!({"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}});
    assert!(check_tool_result(&ok).is_ok());
    let tool_err = json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"boom"}],"isError":true}});
    assert_eq!(
        check_tool_result(&tool_err).unwrap_err().key,
        "tool error: boom"
    );
    let rpc_err = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad"}});
    assert_eq!(
        check_tool_result(&rpc_err).unwrap_err().key,
        "JSON-RPC error -32602: bad"
    );
    assert!(check_tool_result(&json!({"jsonrpc":"2.0","id":1})).is_err());
}

#[test]
fn percentiles_nearest_rank() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&v, 50.0), 50);
    assert_eq!(percentile(&v, 90.0), 90);
    assert_eq!(percentile(&v, 99.0), 99);
    assert_eq!(percentile(&v, 100.0), 100);
    assert_eq!(percentile(&v, 0.0), 1);
    assert_eq!(percentile(&[42], 99.0), 42);
    assert_eq!(percentile(&[], 50.0), 0);
    let v = [10, 20, 30, 40];
    assert_eq!(percentile(&v, 50.0), 20);
    assert_eq!(percentile(&v, 90.0), 40);
}

#[test]
fn header_values_are_encoded_like_rmcp() {
    assert_eq!(base64(b"hello"), "aGVsbG8=");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(encode_header_value("search_docs"), "search_docs");
    assert_eq!(encode_header_value("café"), "=?base64?Y2Fmw6k=?=");
    assert_eq!(encode_header_value(" x"), "=?base64?IHg=?=");
}

#[test]
fn param_headers_follow_x_mcp_header() {
    let schema = json!({"type":"object","properties":{
        "query": {"type":"string","x-mcp-header":"Query"},
        "opts": {"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}},
        "plain": {"type":"string"}
    }});
    let args = json!({"query":"mcp","opts":{"n":3},"plain":"p"});
    let mut h: Vec<(String, String)> = param_headers(&schema, &args)
        .unwrap()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    h.sort();
    assert_eq!(
        h,
        vec![
            ("mcp-param-n".to_owned(), "3".to_owned()),
            ("mcp-param-query".to_owned(), "mcp".to_owned())
        ]
    );
}

#[test]
fn args_must_be_an_object() {
    assert!(parse_json_object(r#"{"query":"mcp"}"#).is_ok());
    assert!(parse_json_object("[1]").is_err());
    assert!(parse_json_object("{").is_err());
}
