//! The accept loop: a server must keep answering while someone tries to
//! wear it down.
//!
//! - **Request head deadline** ([`Limits::header_timeout`]): a client that
//!   has not sent a whole request head in time (a slowloris) is dropped; the
//!   same deadline bounds the wait for the next request on a kept-alive
//!   connection (hyper starts it whenever it waits for a head).
//! - **Write deadline** ([`Limits::write_timeout`]): a reader that stops
//!   reading (an attach stream nobody drains) is disconnected once a write
//!   has waited that long; it can come back with `Last-Event-ID`.
//! - **Connection limit with room for authenticated work**
//!   ([`Limits::max_connections`]): connections that have not yet proven
//!   themselves (no authenticated request) may use what authenticated ones
//!   leave of the limit, and always a reserve of an eighth of it. Past that,
//!   a new connection takes the place of the oldest unproven one that is
//!   doing nothing: idle between requests on a kept-alive connection, or
//!   connected and silent for longer than [`FIRST_BYTES_GRACE`]. Churn
//!   never evicts a connection whose request head is arriving (it keeps its
//!   place until its head deadline) nor one whose request is being
//!   answered: with no connection doing nothing, the new one is answered
//!   `503` with `Retry-After: 1` and closed. An authenticated connection is
//!   never evicted, so a crowd of unauthenticated connections cannot take
//!   the owner's kept-alive connection, and a crowd of authenticated ones
//!   cannot lock out `/health` or a new login. The price, chosen: while a
//!   flood of half-sent heads fills the unproven room, a *new* connection
//!   (a new login, `/health`) gets `503` until those heads reach their
//!   deadline; a slow head is never cut short to make room for it.
//! - **Bounded shutdown** ([`Limits::shutdown_grace`]): on stop, new
//!   connections are refused, the server's own `stopping` hook runs (breakglass
//!   kills its turns; the gateway stops admitting and lets running turns
//!   drain), and connections get the grace period to finish before they are
//!   dropped, whatever is open. Dropping a connection drops its request's
//!   future: whatever a handler holds is released then.
//!
//! Each request carries a [`Connection`] extension: the peer address (for
//! a trusted-proxy check and audit lines) and the handle the auth middleware
//! uses to mark the connection as authenticated.
//!
//! It knows no routes: it serves whatever [`Router`] it is given.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Sleep;

/// How far the server lets clients go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request head (or the next one on a kept-alive connection) must
    /// arrive within this.
    pub header_timeout: Duration,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
    /// Open connections at most (authenticated ones beyond it only when
    /// unauthenticated ones keep their reserve of an eighth).
    pub max_connections: usize,
    /// How long connections may take to finish after a stop.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_connections: 256,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// One accepted connection, as a request sees it.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The peer's address.
    pub peer: SocketAddr,
    slot: Arc<Slot>,
}

impl Connection {
    /// Marks the connection as authenticated: it is no longer evicted to
    /// make room for new connections.
    pub fn authenticated(&self) {
        self.slot.proven.store(true, Ordering::SeqCst);
    }
}

/// A new connection that has sent nothing yet is left alone this long: its
/// first bytes may be on their way, not yet read. After it, a silent
/// connection counts as doing nothing (the head deadline drops it anyway).
pub const FIRST_BYTES_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Slot {
    id: u64,
    proven: AtomicBool,
    /// When it was admitted.
    admitted: Instant,
    /// A byte has arrived on it: it is no longer a fresh connection.
    heard: AtomicBool,
    /// Bytes of a request head arrived and the request is not yet handed
    /// over: never evicted then (the header timeout bounds it).
    receiving: AtomicBool,
    /// Requests handed to the router and not yet answered.
    in_request: AtomicU64,
    evict: watch::Sender<bool>,
}

impl Slot {
    /// Unproven and doing nothing at `now`: idle between requests on a
    /// kept-alive connection, or silent since it connected longer than
    /// [`FIRST_BYTES_GRACE`]. Only such a connection is evicted to make
    /// room: never one whose request head is arriving or whose request is
    /// being answered.
    fn evictable(&self, now: Instant) -> bool {
        !self.proven.load(Ordering::SeqCst)
            && !self.receiving.load(Ordering::SeqCst)
            && self.in_request.load(Ordering::SeqCst) == 0
            && (self.heard.load(Ordering::SeqCst)
                || now.saturating_duration_since(self.admitted) >= FIRST_BYTES_GRACE)
    }
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
struct Table {
    open: Mutex<VecDeque<Arc<Slot>>>,
    next: AtomicU64,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Slot>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a connection arriving at `now`. Unproven connections may
    /// hold what the authenticated ones leave of `max`, and never less than
    /// a reserve of `max / 8` (at least 1). Past that the oldest unproven
    /// connection that is doing nothing ([`Slot::evictable`]) is evicted
    /// to make room; with none doing nothing the new connection is refused
    /// (`None`): a request whose head is arriving or that is being
    /// answered is never cut short for it (the header timeout bounds a
    /// slow head, and its room returns then).
    fn admit(&self, max: usize, now: Instant) -> Option<(Arc<Slot>, watch::Receiver<bool>)> {
        let mut open = self.lock();
        let max = max.max(1);
        let proven = open
            .iter()
            .filter(|s| s.proven.load(Ordering::SeqCst))
            .count();
        let unproven = open.len() - proven;
        let room = max.saturating_sub(proven).max((max / 8).max(1));
        if unproven >= room {
            let oldest_idle = open.iter().position(|s| s.evictable(now))?;
            if let Some(evicted) = open.remove(oldest_idle) {
                let _ = evicted.evict.send(true);
            }
        }
        let (evict, evicted) = watch::channel(false);
        let slot = Arc::new(Slot {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            proven: AtomicBool::new(false),
            admitted: now,
            heard: AtomicBool::new(false),
            receiving: AtomicBool::new(false),
            in_request: AtomicU64::new(0),
            evict,
        });
        open.push_back(slot.clone());
        Some((slot, evicted))
    }

    fn close(&self, id: u64) {
        self.lock().retain(|s| s.id != id);
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A stream whose writes fail once one has made no progress for `timeout`.
#[derive(Debug)]
struct WriteDeadline<S> {
    inner: S,
    /// Marked busy when a request's bytes arrive.
    slot: Option<Arc<Slot>>,
    timeout: Duration,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, timeout: Duration, slot: Option<Arc<Slot>>) -> Self {
        WriteDeadline {
            inner,
            slot,
            timeout,
            waiting: None,
        }
    }

    /// After a write returned `Pending`: fail once the deadline has passed.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let timeout = self.timeout;
        let sleep = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future;

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && let Some(slot) = &self.slot
        {
            slot.heard.store(true, Ordering::SeqCst);
            if slot.in_request.load(Ordering::SeqCst) == 0 {
                // The bytes of a request head: busy until it is handed over.
                slot.receiving.store(true, Ordering::SeqCst);
            }
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.waiting = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.check(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                self.waiting = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.check(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `stop` resolves, within `limits`;
/// then refuses new connections, awaits `stopping()` (the server's own
/// shutdown), asks every connection to finish, and returns once every
/// connection is closed or the grace period is over.
///
/// # Errors
/// Never for a single connection's failure; only if the listener itself
/// fails in a way that is not a passing shortage (file descriptors).
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()> + Send + 'static,
    stopping: impl FnOnce() -> F,
) -> std::io::Result<()>
where
    F: Future<Output = ()>,
{
    let table = Arc::new(Table::default());
    // The refusals still lingering, oldest first.
    let mut refusals: VecDeque<tokio::task::AbortHandle> = VecDeque::new();
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors, or a connection reset
                        // before accept: wait a moment, never spin or stop.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some((slot, evicted)) = table.admit(limits.max_connections, Instant::now()) else {
                    // At most as many refusals linger as connections may
                    // be open: the oldest is closed for the newest, so the
                    // newest is always answered.
                    refusals.retain(|r| !r.is_finished());
                    if refusals.len() >= limits.max_connections.max(1)
                        && let Some(oldest) = refusals.pop_front()
                    {
                        oldest.abort();
                    }
                    refusals.push_back(connections.spawn(refuse(tcp)));
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                connections.spawn(connection(
                    tcp,
                    Connection { peer, slot },
                    router.clone(),
                    limits,
                    evicted,
                    closing.clone(),
                    table.clone(),
                ));
                // Reap finished connection tasks as we go.
                while connections.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    stopping().await;
    tracing::info!(open = table.len(), "shutting down");
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "grace period over: dropping the connections still open"
        );
        connections.abort_all();
    }
    Ok(())
}

/// The answer to a connection refused at the limit: JSON in OpenAI's error
/// shape (`{"error": {"message", "type", "param", "code"}}`), which the
/// gateway's clients read and breakglass's page reads as any API error.
const BUSY_BODY: &str = r#"{"error":{"message":"too many connections are sending requests; try again in a moment","type":"server_error","param":null,"code":"too_many_connections"}}"#;

/// How long a refused connection is given to send its request head and
/// read its `503`; one that takes longer is closed unanswered.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// At most this much of a refused connection's request is read.
const REFUSAL_READ: usize = 16 * 1024;

/// Reads the request head (a client answered before it has sent its request
/// takes the answer for garbage), answers `503` with `Retry-After: 1`, and
/// closes; the rest of what the client sends is read and dropped, a little
/// for a moment, so closing does not reset the connection before the client
/// has read the answer. All of it within [`REFUSAL_LINGER`].
async fn refuse(mut tcp: tokio::net::TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BUSY_BODY}",
        BUSY_BODY.len()
    );
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut buf = [0u8; 1024];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await?;
            if n == 0 || head.len() >= REFUSAL_READ {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut left = REFUSAL_READ;
        while left > 0 {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Marks a request answered when its handling ends, however it ends.
struct Answered(Arc<Slot>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.in_request.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    conn: Connection,
    router: Router,
    limits: Limits,
    mut evicted: watch::Receiver<bool>,
    mut closing: watch::Receiver<bool>,
    table: Arc<Table>,
) {
    let id = conn.slot.id;
    let io = TokioIo::new(WriteDeadline::new(
        tcp,
        limits.write_timeout,
        Some(conn.slot.clone()),
    ));
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            // The head is whole: from receiving to being answered.
            let slot = conn.slot.clone();
            slot.in_request.fetch_add(1, Ordering::SeqCst);
            slot.receiving.store(false, Ordering::SeqCst);
            request.extensions_mut().insert(conn.clone());
            let mut router = router.clone();
            // A Router is always ready: calling it without poll_ready is sound.
            let answering = tower_service::Service::call(&mut router, request);
            async move {
                let _answered = Answered(slot);
                answering.await
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(16 * 1024);
    let serving = builder.serve_connection(io, service);
    tokio::pin!(serving);
    let closing_now = tokio::select! {
        _ = serving.as_mut() => false,
        _ = async { evicted.wait_for(|e| *e).await.map(|_| ()) } => false,
        _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => true,
    };
    if closing_now {
        serving.as_mut().graceful_shutdown();
        let _ = serving.as_mut().await;
    }
    table.close(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's state, as the accept loop's reader and service mark it.
    #[derive(Debug, Clone, Copy)]
    enum Doing {
        /// Connected, nothing read yet.
        Silent,
        /// Part of a request head has arrived.
        HeadArriving,
        /// Its request is with the router.
        Answered,
        /// Between requests on a kept-alive connection.
        KeptAliveIdle,
        /// It made an authenticated request.
        Proven,
    }

    fn mark(slot: &Slot, doing: Doing) {
        let heard = !matches!(doing, Doing::Silent);
        slot.heard.store(heard, Ordering::SeqCst);
        slot.receiving
            .store(matches!(doing, Doing::HeadArriving), Ordering::SeqCst);
        slot.in_request.store(
            u64::from(matches!(doing, Doing::Answered)),
            Ordering::SeqCst,
        );
        slot.proven
            .store(matches!(doing, Doing::Proven), Ordering::SeqCst);
    }

    /// Fills a table of limit 8 with connections doing `doing` (admitted at
    /// `t0`), admits one more at `at`, and says which were evicted (by
    /// position) and whether the newcomer got in.
    fn check(doing: &[Doing], at: Duration, want_evicted: &[usize], want_admitted: bool) {
        let table = Table::default();
        let t0 = Instant::now();
        let mut open = Vec::new();
        for d in doing {
            let admitted = table
                .admit(8, t0)
                .unwrap_or_else(|| panic!("room for {doing:?}"));
            mark(&admitted.0, *d);
            open.push(admitted);
        }
        let newcomer = table.admit(8, t0 + at);
        let evicted: Vec<usize> = open
            .iter()
            .enumerate()
            .filter(|(_, (_, e))| *e.borrow())
            .map(|(n, _)| n)
            .collect();
        assert_eq!(evicted, want_evicted, "{doing:?} at {at:?}");
        assert_eq!(newcomer.is_some(), want_admitted, "{doing:?} at {at:?}");
        let held = doing.len() - evicted.len() + usize::from(newcomer.is_some());
        assert_eq!(table.len(), held);
    }

    /// Churn evicts only a connection doing nothing (idle between requests,
    /// or silent past its grace), the oldest first; never one whose head is
    /// arriving or whose request is being answered: then the newcomer is
    /// refused.
    #[test]
    fn churn_evicts_only_a_connection_doing_nothing() {
        use Doing::{Answered, HeadArriving as Head, KeptAliveIdle as Idle, Silent};
        let now = Duration::ZERO;
        let later = FIRST_BYTES_GRACE;
        // Room left: nobody goes.
        check(&[Head, Head, Silent], now, &[], true);
        // Full of heads arriving and requests answered: refused, whenever.
        let busy = [Head, Answered, Head, Head, Answered, Head, Head, Head];
        check(&busy, now, &[], false);
        check(&busy, Duration::from_secs(3600), &[], false);
        // An idle kept-alive connection makes room, the oldest first.
        check(
            &[Head, Answered, Idle, Head, Idle, Head, Head, Head],
            now,
            &[2],
            true,
        );
        // A fresh silent connection (its head may be on its way) is left
        // alone; past its grace it makes room.
        let silent = [Head, Head, Silent, Head, Head, Silent, Head, Head];
        check(&silent, now, &[], false);
        check(&silent, later, &[2], true);
        // An idle connection goes before an older silent one that is still
        // in its grace.
        check(
            &[Silent, Head, Head, Head, Head, Head, Head, Idle],
            now,
            &[7],
            true,
        );
    }

    #[test]
    fn authenticated_connections_are_never_evicted_and_a_reserve_stays_open() {
        use Doing::{HeadArriving as Head, KeptAliveIdle as Idle, Proven};
        let now = Duration::ZERO;
        // Seven authenticated: unproven ones keep a reserve of one slot (an
        // eighth of the limit), which an idle one gives up.
        let mut doing = vec![Proven; 7];
        doing.push(Idle);
        check(&doing, now, &[7], true);
        // The reserve holds a head arriving: refused; the authenticated
        // ones stay.
        doing[7] = Head;
        check(&doing, now, &[], false);
        // All eight authenticated: the reserve is free.
        check(&[Proven; 8], now, &[], true);
    }
}
