//! The only afk code that talks to the world.
//!
//! Each adapter implements a port from `afk-core` and nothing else: it maps
//! the service's wire format into domain values and its failures into
//! [`afk_core::ports::PortError`]. No adapter decides policy (whether to
//! dispatch, close or escalate is the core's decision); the wire structs are
//! private to their module.
//!
//! - [`http`]: the shared client, secrets, retries, request counting;
//! - [`t3`]: the T3 Code executor;
//! - [`github`]: the GitHub tracker and the build stage (checks, statuses);
//! - [`woodpecker`]: the deploy stage;
//! - [`rollout`]: the Kubernetes rollout stage;
//! - [`notify`]: Slack, ntfy and log doorbells;
//! - [`services`]: all of them built from typed settings, and a tick run
//!   with them.
//!
//! Local agent processes and the checklist runner's files are not here: they
//! belong to the `runner` crate and the `afk-process` toolkit, so that
//! nothing local links the HTTP and Kubernetes clients.

pub mod github;
pub mod http;
pub mod notify;
pub mod rollout;
pub mod services;
pub mod t3;
pub mod woodpecker;
