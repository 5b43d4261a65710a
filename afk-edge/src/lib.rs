//! afk-edge: the hardened HTTP edge that afk's servers (`breakglass`,
//! `afk-gateway`) share, so each holds against a hostile network the same
//! way:
//!
//! - [`listen`]: the accept loop on hyper: a deadline for request heads, a
//!   write deadline that disconnects stalled readers, a connection limit
//!   where unauthenticated connections make room, a bounded shutdown with a
//!   hook for the server's own stopping;
//! - [`auth`]: a bearer token compared in constant time, never shown;
//! - [`audit`]: the one shape of an audit line.
//!
//! It takes an axum [`axum::Router`] and knows nothing of the routes, their
//! state, or their error bodies: those are each server's own. It does not
//! start processes or read settings.

pub mod audit;
pub mod auth;
pub mod listen;
