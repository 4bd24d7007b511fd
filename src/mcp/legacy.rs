//! What the session bookkeeping knows of the legacy HTTP+SSE transport (served by
//! `server::legacy_sse`): its session ids and a way to end their streams.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::sync::lock;

/// Legacy session ids start with this, so they read apart in logs. Nothing branches
/// on it: the registry records each session's [`super::SessionKind`].
pub const SESSION_PREFIX: &str = "sse-";

/// Open legacy streams by session id, so revoking a credential can end them too
/// ([`close`]); ids are random, so one map serves every edge in the process.
fn streams() -> &'static Mutex<HashMap<String, CancellationToken>> {
    static STREAMS: OnceLock<Mutex<HashMap<String, CancellationToken>>> = OnceLock::new();
    STREAMS.get_or_init(Default::default)
}

/// Remember an open stream's cancellation token.
pub fn register(session_id: &str, stop: CancellationToken) {
    lock(streams()).insert(session_id.to_owned(), stop);
}

/// Forget a stream that ended by itself.
pub fn unregister(session_id: &str) {
    lock(streams()).remove(session_id);
}

/// End a legacy session and its event stream (its credential was revoked).
pub fn close(session_id: &str) -> bool {
    let ct = lock(streams()).remove(session_id);
    ct.map(|ct| ct.cancel()).is_some()
}
