//! afk-gateway: the conversational gateway. A no-tools conversational agent
//! (the `claude` CLI, one run per turn) behind an authenticated HTTP edge,
//! for a voice client that speaks OpenAI's chat completions (and re-sends
//! the whole history every turn) and a voice gateway that holds multi-turn
//! conversations (`/v1/conversational`, each turn resuming the CLI session).
//! What it does and its settings: `docs/gateway.md`.
//!
//! - [`settings`]: the `AFK_GATEWAY_*` settings, validated;
//! - [`request`] and [`openai`]: the wire formats (requests into a
//!   dialogue prompt; chunks, completions, errors);
//! - [`cli`]: the CLI's argument vector, input line and stream-json output;
//! - [`turn`]: one process, one turn, its whole tree stopped whatever ends
//!   it;
//! - [`pool`]: processes started ahead of turns (per model, per
//!   conversation being resumed);
//! - [`conversations`] and [`admission`]: one turn at a time per
//!   conversation, a bounded number at once;
//! - [`server`] and [`routes`]: the HTTP surface, on `afk-edge`'s accept
//!   loop (deadlines, connection caps, bearer auth, audit lines).
//!
//! Processes are started, watched and stopped only through `afk-process`.
//! It runs no tools, ever, and does not persist conversations across
//! restarts.

pub mod admission;
pub mod cli;
pub mod conversations;
pub mod openai;
pub mod pool;
pub mod request;
mod routes;
pub mod server;
pub mod settings;
pub mod state;
pub mod turn;
