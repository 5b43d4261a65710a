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
//!   leave of the limit, and always a reserve of an eighth of it; past that,
//!   a new connection evicts the oldest unproven one. A flood of
//!   unauthenticated connections cannot lock out the owner, and a crowd of
//!   authenticated ones cannot lock out `/health` or a new login.
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
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// Open connections at most.
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

#[derive(Debug)]
struct Slot {
    id: u64,
    proven: AtomicBool,
    /// Bytes of a request head arrived and the request is not yet handed
    /// over: never evicted then (the header timeout bounds it).
    receiving: AtomicBool,
    /// Requests handed to the router and not yet answered.
    in_request: AtomicU64,
    evict: watch::Sender<bool>,
}

impl Slot {
    /// Unproven and doing nothing: connected but silent, or idle between
    /// requests. Only such a connection is evicted to make room.
    fn evictable(&self) -> bool {
        !self.proven.load(Ordering::SeqCst)
            && !self.receiving.load(Ordering::SeqCst)
            && self.in_request.load(Ordering::SeqCst) == 0
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

    /// A slot for a new connection. Unproven connections may hold what the
    /// authenticated ones leave of `max`, and never less than a reserve of
    /// `max / 8` (at least 1); past that the oldest unproven connection that
    /// is doing nothing is evicted to make room: never one whose request
    /// head is arriving or whose request is being answered (churn must not
    /// cut a request short; the header timeout bounds a slow head). When
    /// every unproven connection is busy, the newest is still admitted, up
    /// to twice `max` in all; past that it is refused (`None`).
    fn admit(&self, max: usize) -> Option<(Arc<Slot>, watch::Receiver<bool>)> {
        let mut open = self.lock();
        let max = max.max(1);
        let proven = open
            .iter()
            .filter(|s| s.proven.load(Ordering::SeqCst))
            .count();
        let unproven = open.len() - proven;
        let room = max.saturating_sub(proven).max((max / 8).max(1));
        if unproven >= room {
            // The oldest idle one first (churn: connections that come and
            // go); only when none is idle, the oldest whose head is still
            // arriving (a flood of half-sent heads must not lock out the
            // owner). A request being answered is never cut.
            let victim = open.iter().position(|s| s.evictable()).or_else(|| {
                open.iter().position(|s| {
                    !s.proven.load(Ordering::SeqCst) && s.in_request.load(Ordering::SeqCst) == 0
                })
            });
            match victim {
                Some(oldest) => {
                    if let Some(evicted) = open.remove(oldest) {
                        let _ = evicted.evict.send(true);
                    }
                }
                None if open.len() >= max.saturating_mul(2) => return None,
                None => {}
            }
        }
        let (evict, evicted) = watch::channel(false);
        let slot = Arc::new(Slot {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            proven: AtomicBool::new(false),
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
            && slot.in_request.load(Ordering::SeqCst) == 0
        {
            // The bytes of a request head: busy until it is handed over.
            slot.receiving.store(true, Ordering::SeqCst);
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
                let Some((slot, evicted)) = table.admit(limits.max_connections) else {
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

    #[test]
    fn unauthenticated_connections_make_room_and_a_reserve_stays_open() {
        let table = Table::default();
        let admit = |t: &Table| t.admit(8).unwrap_or_else(|| panic!("always room"));
        // Eight unproven connections fill the limit; the ninth evicts the
        // oldest unproven one.
        let first: Vec<_> = (0..8).map(|_| admit(&table)).collect();
        let (_, _) = admit(&table);
        assert!(
            *first[0].1.borrow(),
            "the oldest unproven connection made room"
        );
        assert_eq!(table.len(), 8);
        // Seven authenticate: unproven ones keep the reserve (one slot here).
        for (slot, _) in &first[1..8] {
            slot.proven.store(true, Ordering::SeqCst);
        }
        let (newest, newest_evicted) = admit(&table);
        let (_, _) = admit(&table);
        assert!(
            *newest_evicted.borrow(),
            "past the reserve the oldest unproven goes"
        );
        assert!(
            first[1..8].iter().all(|(_, e)| !*e.borrow()),
            "authenticated connections are never evicted"
        );
        table.close(newest.id);
    }

    /// Connection churn never evicts a connection whose request head is
    /// arriving, nor one being answered: the oldest idle one goes instead,
    /// and with none idle the newest is still admitted, up to twice the
    /// limit.
    #[test]
    fn churn_never_evicts_a_request_in_flight() {
        let table = Table::default();
        let admit = |t: &Table| t.admit(8);
        let first: Vec<_> = (0..8).map(|_| admit(&table).unwrap()).collect();
        // The oldest is receiving a head, the second is being answered.
        first[0].0.receiving.store(true, Ordering::SeqCst);
        first[1].0.in_request.store(1, Ordering::SeqCst);
        let _ninth = admit(&table).unwrap();
        assert!(!*first[0].1.borrow(), "a head that is arriving was cut");
        assert!(!*first[1].1.borrow(), "a request being answered was cut");
        assert!(*first[2].1.borrow(), "the oldest idle one made room");
        // With none idle, the oldest head still arriving goes (a flood of
        // half-sent heads); never a request being answered.
        for (slot, _) in &first[3..] {
            slot.receiving.store(true, Ordering::SeqCst);
        }
        _ninth.0.receiving.store(true, Ordering::SeqCst);
        let _tenth = admit(&table).unwrap();
        assert!(*first[0].1.borrow(), "the oldest half-sent head made room");
        assert!(!*first[1].1.borrow(), "a request being answered was cut");
        // Every unproven connection being answered: still admitted, to
        // twice the limit, then refused.
        let table = Table::default();
        let mut all = Vec::new();
        while let Some(admitted) = admit(&table) {
            admitted.0.in_request.store(1, Ordering::SeqCst);
            all.push(admitted);
            assert!(table.len() <= 16, "past twice the limit");
        }
        assert_eq!(table.len(), 16);
        assert!(all.iter().all(|(_, e)| !*e.borrow()));
    }
}
