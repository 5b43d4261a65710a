//! breakglass: the attachable emergency console.
//!
//! When the development VM is wedged, its owner opens breakglass on a phone
//! and either chats with a repair agent that runs on the cluster, or
//! power-cycles the VM with no AI in the path. The phone's connection is
//! unreliable, so the server owns the conversation and clients attach to it:
//!
//! - [`session`]: sessions with an append-only event log (the newest
//!   events in memory, every one in the session's file), read by attached
//!   subscribers, and at most one detached agent turn;
//! - [`event`]: the event vocabulary and the agent's stream-json translator;
//! - [`sse`]: the attach stream (replay, `caught-up`, live tail, keepalive);
//! - [`power`]: the whitelisted VM power verbs over ssh;
//! - [`auth`]: bearer token or trusted identity header;
//! - [`server`]: the axum router: routes, auth, the JSON and same-origin
//!   guard on mutating requests, audit lines.
//!
//! It is served by `afk-edge`'s accept loop (request-head and write
//! deadlines, a connection limit that keeps room for authenticated work, a
//! bounded shutdown), the edge it shares with `afk-gateway`. Agent turns
//! and power verbs are started, watched and stopped by the `afk-process`
//! toolkit, the same code the checklist runner uses.
//!
//! It does not persist sessions across restarts (a restart starts with none)
//! and it is not part of the AFK loop.

pub mod auth;
pub mod event;
pub mod power;
pub mod server;
pub mod session;
pub mod sse;
