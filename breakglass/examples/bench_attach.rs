//! Benchmark (not a test): event fan-out and replay through the real server.
//!
//! Run: `cargo run --release -p breakglass --example bench_attach [events] [subscribers]`
//!
//! Method: the real router serves on 127.0.0.1 (in this process, on a
//! multi-threaded tokio runtime). Clients are raw HTTP/1.1 connections, so
//! the measurement includes framing, chunked transfer and the loopback TCP
//! stack, but no client library.
//!
//! - **Fan-out**: `subscribers` clients (default 100) attach to one session
//!   and wait for `caught-up`. Then `events` events (default 20,000; each a
//!   `text` event of about 80 bytes of JSON) are appended as fast as one task
//!   can. The clock runs from the first append until every client has read
//!   the last event. Reported: events per second through the session, and
//!   deliveries per second (events × subscribers). Repeated 3 times; the
//!   median run is reported with the others.
//! - **Replay**: a session holding 10,000 events; a reconnecting client
//!   (no `Last-Event-ID`) connects and reads until `caught-up`. The clock
//!   runs from connect to `caught-up`. 20 runs after one warm-up; minimum,
//!   median and maximum are reported.
//!
//! - **Hostile load** (memory figures are the process's resident set, read
//!   from `/proc/self/status` `VmRSS` and `VmHWM`, so they include the
//!   benchmark's own clients):
//!   - 2,000 idle connections, each holding half a request head; the clock
//!     measures `GET /health` (a fresh connection) while they are open (it
//!     is answered `503` at once: a head that is arriving is never evicted,
//!     and they fill the room for unauthenticated connections), and how many
//!     of them the server has closed 12 s later (past its 10 s head
//!     deadline, or refused at its connection limit);
//!   - 2,000 slow readers attached to one session with a small receive
//!     window that never read, during a 20,000-event turn; measured:
//!     `/health` during the flood, how many readers the server disconnected
//!     (write deadline), and the resident set before, at the peak, and after
//!     the readers are gone.
//!
//! Every client checks that it saw the last event's marker, so a lossy
//! stream cannot produce a fast number.

// A benchmark reports on standard output; that is its whole job.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use breakglass::auth::Auth;
use breakglass::power::PowerSettings;
use breakglass::server::{App, Settings, serve};
use breakglass::session::AgentSettings;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "bench-token";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Connects, sends the attach request, and reads until `marker` has been
/// seen `after_caught_up` (only after the caught-up frame) or at all.
async fn attach_until(
    addr: &str,
    session: &str,
    marker: &str,
    ready: Option<tokio::sync::mpsc::Sender<()>>,
) -> Result<usize, Error> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "GET /api/session/{session}/stream HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut window = String::new();
    let mut total = 0usize;
    let mut ready = ready;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err("the stream ended early".into());
        }
        total += n;
        window.push_str(&String::from_utf8_lossy(&buf[..n]));
        if window.contains("event: caught-up")
            && let Some(tx) = ready.take()
        {
            let _ = tx.send(()).await;
        }
        if window.contains(marker) {
            return Ok(total);
        }
        // Keep only a tail long enough to hold a marker split across reads.
        if window.len() > 4096 {
            let cut = window.len() - 256;
            let cut = (cut..window.len())
                .find(|i| window.is_char_boundary(*i))
                .unwrap_or(window.len());
            window.drain(..cut);
        }
    }
}

fn body(n: u64) -> breakglass::event::Body {
    match json!({"type": "text", "text": format!("line {n:06} of the repair agent's answer, long enough to be typical")})
    {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "min {:.3?}  median {:.3?}  max {:.3?}",
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    )
}

async fn run(events: u64, subscribers: usize) -> Result<(), Error> {
    let settings = Settings {
        auth: Auth::new(Some(TOKEN), None, Default::default())?,
        agent: AgentSettings {
            bin: "/bin/false".into(),
            model: None,
            sessions_dir: std::env::temp_dir().join("breakglass-bench"),
            turn_timeout: Duration::from_secs(60),
        },
        keepalive: Duration::from_secs(20),
        power: PowerSettings {
            ssh_bin: "/bin/false".into(),
            host: None,
            timeout: Duration::from_secs(1),
        },
        // The defaults an operator gets, but room for the fan-out's clients.
        limits: afk_edge::listen::Limits {
            max_connections: 1024,
            ..Default::default()
        },
        max_sessions: 64,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let app = App::new(settings);
    tokio::spawn(serve(listener, app.clone(), std::future::pending()));

    // Fan-out.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let session = app.sessions.create(64).ok_or("no room for a session")?;
        let id = session.id.to_string();
        let (tx, mut rx) = tokio::sync::mpsc::channel(subscribers);
        let marker = format!("line {:06} ", events - 1);
        let mut clients = Vec::new();
        for _ in 0..subscribers {
            let (addr, id, marker, tx) = (addr.clone(), id.clone(), marker.clone(), tx.clone());
            clients.push(tokio::spawn(async move {
                attach_until(&addr, &id, &marker, Some(tx)).await
            }));
        }
        for _ in 0..subscribers {
            rx.recv().await.ok_or("a subscriber never caught up")?;
        }
        let start = Instant::now();
        let writer = {
            let session = Arc::clone(&session);
            tokio::spawn(async move {
                for n in 0..events {
                    session.append(body(n));
                    if n % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        writer.await?;
        let mut bytes = 0;
        for c in clients {
            bytes += c.await??;
        }
        runs.push((start.elapsed(), bytes));
    }
    runs.sort();
    let (median, bytes) = runs[1];
    let secs = median.as_secs_f64();
    println!(
        "fan-out: {events} events, {subscribers} subscribers, 3 runs: {:?}",
        runs.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    println!(
        "  median run {median:.3?}: {:.0} events/s through the session, {:.0} deliveries/s, {:.1} MiB read by clients",
        events as f64 / secs,
        events as f64 * subscribers as f64 / secs,
        bytes as f64 / (1024.0 * 1024.0)
    );

    // Replay.
    let session = app.sessions.create(64).ok_or("no room for a session")?;
    for n in 0..10_000 {
        session.append(body(n));
    }
    let id = session.id.to_string();
    let mut samples = Vec::new();
    for i in 0..=20 {
        let start = Instant::now();
        let read = attach_until(&addr, &id, "event: caught-up", None).await?;
        if i > 0 {
            samples.push(start.elapsed());
        }
        if i == 20 {
            println!(
                "replay: 10000-event log ({:.1} MiB on the wire), 20 reconnects after one warm-up",
                read as f64 / (1024.0 * 1024.0)
            );
        }
    }
    println!("  connect → caught-up: {}", stats(samples));
    hostile(&addr, &app).await
}

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// How long `GET /health` takes on a fresh connection (or why it failed),
/// answered 200 or, with `busy_ok`, 503 (refused at the connection limit).
async fn health(addr: &str, busy_ok: bool) -> Result<Duration, Error> {
    let start = Instant::now();
    let mut stream =
        tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(addr)).await??;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await??;
    if !(answer.starts_with(b"HTTP/1.1 200") || busy_ok && answer.starts_with(b"HTTP/1.1 503")) {
        return Err("health did not answer 200".into());
    }
    Ok(start.elapsed())
}

/// Whether the server has closed `stream` (reads return end or error at once).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(10), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

async fn hostile(addr: &str, app: &Arc<App>) -> Result<(), Error> {
    let (rss, _) = memory();
    println!("hostile load (resident set before: {rss:.1} MiB)");
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        if let Ok(mut c) = TcpStream::connect(addr).await {
            let _ = c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
            idle.push(c);
        }
    }
    let during = health(addr, true).await?;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut dropped = 0;
    for c in &mut idle {
        if closed(c).await {
            dropped += 1;
        }
    }
    let (rss, peak) = memory();
    println!(
        "  {} idle half-sent connections: /health answered (200 or 503) in {during:.1?} during them; {dropped} closed by the server after 12 s; resident {rss:.1} MiB (peak {peak:.1} MiB)",
        idle.len()
    );
    drop(idle);

    let session = app.sessions.create(64).ok_or("no room for a session")?;
    let id = session.id.to_string();
    let mut readers = Vec::new();
    for _ in 0..2_000 {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let mut c = socket.connect(addr.parse()?).await?;
        c.write_all(
            format!("GET /api/session/{id}/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        readers.push(c);
    }
    let (before, _) = memory();
    let writer = {
        let session = Arc::clone(&session);
        tokio::spawn(async move {
            for n in 0..20_000 {
                session.append(body(n));
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let during = health(addr, false).await?;
    writer.await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut disconnected = 0;
    for c in &mut readers {
        if closed(c).await {
            disconnected += 1;
        }
    }
    let (at_flood, peak) = memory();
    drop(readers);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, _) = memory();
    println!(
        "  2000 slow readers, 20000-event turn: /health in {during:.1?} during the flood; {disconnected} readers disconnected (write deadline); resident {before:.1} MiB before, {at_flood:.1} MiB after the flood (peak {peak:.1} MiB), {after:.1} MiB once they are gone"
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000)
        .max(1);
    let subscribers: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(events, subscribers))
}
