//! The channel a backend's question (elicitation, sampling, roots) takes during a
//! stateless call: the connection's [`super::link::Forwarder`] has no client to ask,
//! so it hands the question to the call that caused it, which answers its client with
//! an input-required result and waits for the retry (`proxy/questions.rs`).

use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::model::{ClientResult, ServerRequest};
use tokio::sync::{mpsc, oneshot};

/// Questions a call may have waiting before its backend's next one waits too.
const BACKLOG: usize = 8;

/// One question from the backend and where its answer goes.
pub struct Question {
    pub request: ServerRequest,
    pub answer: oneshot::Sender<Result<ClientResult, ErrorData>>,
}

/// The sending side, registered on the connection for one stateless call.
#[derive(Clone)]
pub struct Asker {
    tx: mpsc::Sender<Question>,
    /// Whose call this is: a question never goes to another principal's call.
    pub principal: Arc<str>,
}

impl Asker {
    pub fn channel(principal: Arc<str>) -> (Asker, mpsc::Receiver<Question>) {
        let (tx, rx) = mpsc::channel(BACKLOG);
        (Asker { tx, principal }, rx)
    }

    /// Hand `request` to the call and wait for the client's answer, or for `cancelled`
    /// (the backend withdrew it). A question nobody answers in time is dropped by the
    /// edge (`proxy.input_timeout`), which ends the wait with an error.
    pub async fn ask(
        &self,
        request: ServerRequest,
        cancelled: impl Future<Output = ()>,
    ) -> Result<ClientResult, ErrorData> {
        let (answer, answered) = oneshot::channel();
        let gone = || {
            ErrorData::internal_error(
                "the client did not answer: its call ended, or the answer did not come within proxy.input_timeout",
                None,
            )
        };
        let mut cancelled = std::pin::pin!(cancelled);
        let withdrawn = || ErrorData::internal_error("cancelled by the server", None);
        tokio::select! {
            sent = self.tx.send(Question { request, answer }) => sent.map_err(|_| gone())?,
            () = &mut cancelled => return Err(withdrawn()),
        }
        tokio::select! {
            answer = answered => answer.unwrap_or_else(|_| Err(gone())),
            () = cancelled => Err(withdrawn()),
        }
    }
}
