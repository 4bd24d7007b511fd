//! Backend questions for stateless (2026-07-28) clients: multi-round-trip requests
//! (SEP-2322) on behalf of backends that still ask their client directly.
//!
//! A stateless `tools/call`, `prompts/get` or `resources/read` is sent upstream with an
//! asker ([`Questions::call`]); the connection's `Forwarder` hands the upstream's
//! elicitation, sampling or roots request to it ([`super::super::asker`]). The client
//! then gets an input-required result carrying the question(s) and a sealed
//! `requestState` ([`super::super::request_state`]), while the upstream call and its
//! question stay open here, in a bounded map of pending entries. The client's retry
//! with `inputResponses` and that state ([`Questions::resume`]) answers the backend,
//! which may ask again (another round) or finish (its result answers the retry). The
//! upstream call is polled by the request itself until the backend asks (most calls
//! never do: no task, channel or wake-up between threads); only a parked call moves to
//! a task of its own. A
//! state is single use; an entry nobody answers within `proxy.input_timeout` is
//! dropped by the sweep, which gives the backend an error for its question and cancels
//! the upstream call. With several replicas the retry is forwarded to the replica
//! holding the entry (`server::session`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rmcp::model::{
    ClientCapabilities, ClientRequest, ClientResult, CreateMessageResult, ElicitResult, ErrorCode,
    GetMeta, InputRequest, InputRequests, InputRequiredResult, InputResponses, ListRootsResult,
    ServerRequest, ServerResult,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::super::asker::{Asker, Question};
use super::super::link::Conn;
use super::super::request_state::{self, Refusal, Sealer, StateClaims};
use super::error::CallError;
use super::forward;
use crate::sync::lock;

/// The pending backend questions of one proxy (all members).
pub struct Questions {
    /// The cluster's sealing; unset (no cluster, e.g. the stdio transport), backends'
    /// questions to stateless clients get an error as before.
    sealer: OnceLock<Arc<dyn Sealer>>,
    pending: Mutex<HashMap<u128, Pending>>,
    max: usize,
    timeout: Duration,
}

/// Whose request, and which: what a state is bound to.
pub struct Caller {
    pub principal: Arc<str>,
    pub binding: [u8; 16],
}

/// A request that may carry a backend question: its binding, and what a retry brings.
pub struct Askable {
    pub binding: [u8; 16],
    /// The edge's own `requestState`, when this is a retry.
    pub state: Option<String>,
    pub responses: Option<InputResponses>,
}

/// `request` (already renamed for member `member`), if its method may be answered
/// with an input-required result.
pub fn askable(member: usize, request: &ClientRequest) -> Option<Askable> {
    let (method, target, state, responses) = match request {
        ClientRequest::CallToolRequest(r) => (
            "tools/call",
            &*r.params.name,
            &r.params.request_state,
            &r.params.input_responses,
        ),
        ClientRequest::GetPromptRequest(r) => (
            "prompts/get",
            r.params.name.as_str(),
            &r.params.request_state,
            &r.params.input_responses,
        ),
        ClientRequest::ReadResourceRequest(r) => (
            "resources/read",
            r.params.uri.as_str(),
            &r.params.request_state,
            &r.params.input_responses,
        ),
        _ => return None,
    };
    Some(Askable {
        binding: request_state::binding(method, member, target),
        state: state
            .as_deref()
            .filter(|s| request_state::is_edge_state(s))
            .map(str::to_owned),
        responses: responses.clone(),
    })
}

struct Pending {
    principal: Arc<str>,
    binding: [u8; 16],
    expires: Instant,
    flight: Flight,
}

/// One upstream call between its rounds.
struct Flight {
    backend: Arc<str>,
    /// Held so the child is not stopped (idle reaping, making room) while the client
    /// thinks.
    _conn: Arc<Conn>,
    questions: mpsc::Receiver<Question>,
    /// The call ended: no more questions can come.
    closed: bool,
    result: Outcome,
    /// Asked of the client and not answered yet.
    open: Vec<Open>,
    asked: u32,
    /// Dropping the flight (expired, refused, cancelled) cancels the upstream call.
    _cancel: DropGuard,
}

type Finish = Pin<Box<dyn Future<Output = Result<ServerResult, CallError>> + Send>>;

/// The upstream call's result to come.
enum Outcome {
    /// Polled by the request waiting for it; `None` once it gave its result.
    Inline(Option<Finish>),
    /// Moved to a task of its own while the call is parked between rounds.
    Spawned(oneshot::Receiver<Result<ServerResult, CallError>>),
}

impl Outcome {
    async fn wait(&mut self, backend: &Arc<str>) -> Result<ServerResult, CallError> {
        let went_away = || CallError::WentAway {
            backend: backend.clone(),
        };
        match self {
            Outcome::Inline(slot) => {
                let Some(finish) = slot.as_mut() else {
                    return Err(went_away());
                };
                let result = finish.await;
                *slot = None;
                result
            }
            Outcome::Spawned(result) => result.await.unwrap_or_else(|_| Err(went_away())),
        }
    }

    /// Keep the call going without the request that polled it (it is parked).
    fn detach(&mut self) {
        if let Outcome::Inline(slot) = self
            && let Some(finish) = slot.take()
        {
            let (tx, result) = oneshot::channel();
            tokio::spawn(async move {
                let _ = tx.send(finish.await);
            });
            *self = Outcome::Spawned(result);
        }
    }
}

impl Drop for Outcome {
    /// A call dropped unfinished (timeout, the client gone) still runs to its end in a
    /// task: the flight's cancel guard makes it tell the upstream and settle its route.
    fn drop(&mut self) {
        if let Outcome::Inline(slot) = self
            && let Some(finish) = slot.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(finish);
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Sampling,
    Elicitation,
    Roots,
}

struct Open {
    key: String,
    kind: Kind,
    request: InputRequest,
    answer: oneshot::Sender<Result<ClientResult, ErrorData>>,
}

impl Questions {
    pub fn new(max: usize, timeout: Duration) -> Arc<Questions> {
        let questions = Arc::new(Questions {
            sealer: OnceLock::new(),
            pending: Mutex::new(HashMap::new()),
            max,
            timeout,
        });
        let every = (timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
        spawn_sweep(Arc::downgrade(&questions), every);
        questions
    }

    pub fn set_sealer(&self, sealer: Arc<dyn Sealer>) {
        let _ = self.sealer.set(sealer);
    }

    /// Can stateless calls take backend questions here?
    pub fn enabled(&self) -> bool {
        self.sealer.get().is_some()
    }

    /// Drop every pending entry (shutdown): the backends get errors, calls are cancelled.
    pub fn clear(&self) {
        let all: Vec<Pending> = lock(&self.pending).drain().map(|(_, p)| p).collect();
        drop(all);
    }

    /// A stateless call whose backend may ask its client: sent upstream, then the
    /// first round.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        conn: Arc<Conn>,
        backend: &Arc<str>,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
        span: &tracing::Span,
        call_timeout: Duration,
        caller: Caller,
    ) -> Result<ServerResult, CallError> {
        let (asker, questions) = Asker::channel(caller.principal.clone());
        // No rmcp timeout: the wait for the client's answer is not the backend's time;
        // each round is bounded by `call_timeout` here instead.
        let how = forward::Start {
            timeout: None,
            asker: Some(asker),
            in_session: false,
        };
        let sent = forward::start(&conn, backend, request, context, span, how).await?;
        let cancel = CancellationToken::new();
        let (finish_backend, finish_conn, token) = (backend.clone(), conn.clone(), cancel.clone());
        let finish: Finish = Box::pin(async move {
            let r =
                forward::finish(sent, &finish_backend, token.cancelled_owned(), call_timeout).await;
            finish_conn.touch();
            r
        });
        let flight = Flight {
            backend: backend.clone(),
            _conn: conn,
            questions,
            closed: false,
            result: Outcome::Inline(Some(finish)),
            open: Vec::new(),
            asked: 0,
            _cancel: cancel.drop_guard(),
        };
        self.round(flight, caller, context, call_timeout).await
    }

    /// The client's retry with its answers and the edge's `state`.
    pub async fn resume(
        &self,
        state: &str,
        responses: Option<InputResponses>,
        context: &RequestContext<RoleServer>,
        call_timeout: Duration,
        caller: Caller,
    ) -> Result<ServerResult, CallError> {
        let mut flight = self.take(state, &caller).map_err(|refusal| {
            tracing::info!(principal = %caller.principal, reason = refusal.reason(), "refused a requestState");
            crate::metrics::request_state_refused(refusal.reason());
            CallError::RequestState
        })?;
        flight.answer(responses.unwrap_or_default())?;
        self.round(flight, caller, context, call_timeout).await
    }

    /// The pending entry `state` names, removed (single use), if everything matches.
    fn take(&self, state: &str, caller: &Caller) -> Result<Flight, Refusal> {
        let sealer = self.sealer.get().ok_or(Refusal::Invalid)?;
        let claims = request_state::open(
            &**sealer,
            state,
            &caller.principal,
            request_state::unix_now(),
        )?;
        if claims.owner != sealer.owner() {
            return Err(Refusal::Elsewhere);
        }
        if claims.binding != caller.binding {
            return Err(Refusal::Mismatch);
        }
        let entry = {
            let mut pending = lock(&self.pending);
            let entry = pending.get(&claims.id).ok_or(Refusal::Used)?;
            // Sealed claims already say so; the entry is checked too, never trusted alone.
            if entry.principal != caller.principal || entry.binding != caller.binding {
                return Err(Refusal::Foreign);
            }
            pending.remove(&claims.id).ok_or(Refusal::Used)?
        };
        if entry.expires <= Instant::now() {
            return Err(Refusal::Expired);
        }
        Ok(entry.flight)
    }

    /// Wait for the backend's result or its next question(s): the result answers the
    /// request; questions make an input-required result and a pending entry.
    async fn round(
        &self,
        mut flight: Flight,
        caller: Caller,
        context: &RequestContext<RoleServer>,
        call_timeout: Duration,
    ) -> Result<ServerResult, CallError> {
        let caps = context.meta.client_capabilities().unwrap_or_default();
        let deadline = tokio::time::sleep(call_timeout);
        tokio::pin!(deadline);
        // Questions the client left unanswered are asked again at once (SEP-2322).
        while flight.open.is_empty() {
            tokio::select! {
                biased;
                r = flight.result.wait(&flight.backend) => return r,
                q = flight.questions.recv(), if !flight.closed => match q {
                    Some(q) => flight.take_question(q, &caps),
                    None => flight.closed = true,
                },
                () = &mut deadline => {
                    return Err(CallError::Timeout { backend: flight.backend.clone(), timeout: call_timeout });
                }
                () = context.ct.cancelled() => return Err(CallError::Cancelled),
            }
        }
        // What the backend asked at the same time goes in the same round.
        while let Ok(q) = flight.questions.try_recv() {
            flight.take_question(q, &caps);
        }
        self.pend(flight, caller)
    }

    /// Keep `flight` pending and answer with its open questions and a sealed state.
    fn pend(&self, mut flight: Flight, caller: Caller) -> Result<ServerResult, CallError> {
        let sealer = self.sealer.get().ok_or(CallError::RequestState)?;
        let id: u128 = rand::random();
        let claims = StateClaims {
            id,
            principal: caller.principal.to_string(),
            binding: caller.binding,
            owner: sealer.owner(),
            // Whole seconds, rounded up: the entry's own expiry is the exact one.
            expires: request_state::unix_now() + self.timeout.as_secs() + 1,
        };
        let requests: InputRequests = flight
            .open
            .iter()
            .map(|o| (o.key.clone(), o.request.clone()))
            .collect();
        let backend = flight.backend.clone();
        flight.result.detach();
        {
            let mut pending = lock(&self.pending);
            if pending.len() >= self.max {
                drop(pending);
                tracing::warn!(backend = %backend, max = self.max, "too many backend questions pending (proxy.max_pending_inputs); failing the call");
                return Err(CallError::TooManyQuestions(self.max));
            }
            pending.insert(
                id,
                Pending {
                    principal: caller.principal,
                    binding: caller.binding,
                    expires: Instant::now() + self.timeout,
                    flight,
                },
            );
        }
        crate::metrics::input_required_round();
        Ok(ServerResult::InputRequiredResult(InputRequiredResult::new(
            Some(requests),
            Some(request_state::seal(&**sealer, &claims)),
        )))
    }

    #[cfg(test)]
    fn pending(&self) -> usize {
        lock(&self.pending).len()
    }
}

impl Flight {
    /// Ask the client `q`, if it declared it can answer that kind; otherwise the
    /// backend gets an error at once (the spec forbids asking what it cannot answer).
    fn take_question(&mut self, q: Question, caps: &ClientCapabilities) {
        let Question {
            mut request,
            answer,
        } = q;
        // The upstream's progress token means nothing to the client.
        request.get_meta_mut().0.remove("progressToken");
        let (kind, input) = match request {
            ServerRequest::CreateMessageRequest(r) if caps.sampling.is_some() => {
                (Kind::Sampling, InputRequest::CreateMessage(r))
            }
            ServerRequest::ElicitRequest(r) if caps.elicitation.is_some() => {
                (Kind::Elicitation, InputRequest::Elicitation(r))
            }
            ServerRequest::ListRootsRequest(r) if caps.roots.is_some() => {
                (Kind::Roots, InputRequest::ListRoots(r))
            }
            other => {
                let what = match other {
                    ServerRequest::CreateMessageRequest(_) => "sampling",
                    ServerRequest::ElicitRequest(_) => "elicitation",
                    ServerRequest::ListRootsRequest(_) => "roots",
                    _ => "this request",
                };
                let _ = answer.send(Err(ErrorData::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    format!("the client did not declare support for {what}"),
                    None,
                )));
                return;
            }
        };
        self.asked += 1;
        let label = match kind {
            Kind::Sampling => "sampling",
            Kind::Elicitation => "elicitation",
            Kind::Roots => "roots",
        };
        self.open.push(Open {
            key: format!("{label}-{}", self.asked),
            kind,
            request: input,
            answer,
        });
    }

    /// Hand the client's answers to the backend; questions left unanswered stay open.
    fn answer(&mut self, mut responses: InputResponses) -> Result<(), CallError> {
        let mut still_open = Vec::new();
        for open in std::mem::take(&mut self.open) {
            let Some(value) = responses.remove(&open.key) else {
                still_open.push(open);
                continue;
            };
            let parsed = match open.kind {
                Kind::Sampling => serde_json::from_value::<CreateMessageResult>(value)
                    .map(|r| ClientResult::CreateMessageResult(Box::new(r))),
                Kind::Elicitation => {
                    serde_json::from_value::<ElicitResult>(value).map(ClientResult::ElicitResult)
                }
                Kind::Roots => serde_json::from_value::<ListRootsResult>(value)
                    .map(ClientResult::ListRootsResult),
            };
            match parsed {
                Ok(result) => {
                    let _ = open.answer.send(Ok(result));
                }
                Err(e) => {
                    return Err(CallError::BadAnswer {
                        key: open.key,
                        detail: e.to_string(),
                    });
                }
            }
        }
        self.open = still_open;
        Ok(())
    }
}

/// Drop entries past `proxy.input_timeout`: their backends get an error for the
/// question, and their upstream calls are cancelled.
fn spawn_sweep(questions: Weak<Questions>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(questions) = questions.upgrade() else {
                return;
            };
            let now = Instant::now();
            let expired: Vec<Pending> = {
                let mut pending = lock(&questions.pending);
                let ids: Vec<u128> = pending
                    .iter()
                    .filter(|(_, p)| p.expires <= now)
                    .map(|(id, _)| *id)
                    .collect();
                ids.iter().filter_map(|id| pending.remove(id)).collect()
            };
            for p in &expired {
                tracing::info!(backend = %p.flight.backend, principal = %p.principal, "a backend question was not answered within proxy.input_timeout; the backend gets an error");
            }
            drop(expired);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_edge_s_own_state_on_the_three_methods_is_taken() {
        use rmcp::model::{CallToolRequest, CallToolRequestParams, ListToolsRequest};
        let params = CallToolRequestParams::new("ask").with_request_state("upstream-state");
        let upstream = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let a = askable(0, &upstream).unwrap();
        assert_eq!(a.state, None, "an upstream's own state passes through");
        assert_eq!(a.binding, request_state::binding("tools/call", 0, "ask"));
        let params = CallToolRequestParams::new("ask")
            .with_request_state(format!("{}abc", request_state::PREFIX));
        let ours = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        assert!(askable(0, &ours).unwrap().state.is_some());
        let list = ClientRequest::ListToolsRequest(ListToolsRequest::default());
        assert!(askable(0, &list).is_none());
    }

    #[tokio::test]
    async fn a_state_is_refused_when_replayed_foreign_tampered_or_for_another_request() {
        use super::super::super::request_state::tests::ToySealer;
        let questions = Questions::new(10, Duration::from_secs(60));
        questions.set_sealer(Arc::new(ToySealer(3, String::new())));
        let alice = || Caller {
            principal: "alice".into(),
            binding: request_state::binding("tools/call", 0, "ask"),
        };
        // An entry as `pend` leaves it, without a connection: sealed claims + map.
        let id = 42u128;
        let claims = StateClaims {
            id,
            principal: "alice".into(),
            binding: alice().binding,
            owner: String::new(),
            expires: request_state::unix_now() + 60,
        };
        let sealer = questions.sealer.get().unwrap().clone();
        let state = request_state::seal(&*sealer, &claims);
        assert_eq!(questions.take(&state, &alice()).err(), Some(Refusal::Used));
        let bob = Caller {
            principal: "bob".into(),
            binding: alice().binding,
        };
        assert_eq!(questions.take(&state, &bob).err(), Some(Refusal::Foreign));
        let other = Caller {
            principal: "alice".into(),
            binding: request_state::binding("tools/call", 0, "other"),
        };
        assert_eq!(
            questions.take(&state, &other).err(),
            Some(Refusal::Mismatch)
        );
        let mut tampered = state.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(questions.take(&tampered, &alice()).is_err());
        let elsewhere = request_state::seal(
            &*sealer,
            &StateClaims {
                owner: "10.0.0.9:8444".into(),
                ..claims.clone()
            },
        );
        assert_eq!(
            questions.take(&elsewhere, &alice()).err(),
            Some(Refusal::Elsewhere)
        );
        assert_eq!(questions.pending(), 0);
    }
}
