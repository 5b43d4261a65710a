//! The loop's network adapters: the services the AFK loop talks to over
//! HTTP (local processes and files are `afk-process`'s and `runner`'s).
//!
//! Each adapter implements a port of `afk-loop` and nothing else: it gathers
//! the service's facts, maps its wire format into `afk-core`'s domain values
//! and its failures into [`afk_core::ports::PortError`]. Where a fact needs a
//! rule to become an answer (who may arm an issue, what check runs and
//! statuses add up to, which links reach an agent), the adapter calls the
//! core's rule (`afk_core::trust`, `afk_core::ci`) rather than writing its
//! own; whether to dispatch, close or escalate is the core's decision. The
//! wire structs are private to their module.
//!
//! - [`http`]: the shared client, secrets, retries, request counting;
//! - [`t3`]: the T3 Code executor;
//! - [`github`]: the GitHub tracker and the build stage (checks, statuses);
//! - [`woodpecker`]: the deploy stage;
//! - [`rollout`]: the Kubernetes rollout stage;
//! - [`notify`]: Slack, ntfy and log doorbells;
//! - [`metrics`]: each tick's numbers for Prometheus (a textfile, a
//!   Pushgateway);
//! - [`services`]: all of them built from typed settings, a tick run with
//!   them, and its report logged;
//! - [`settings`]: the checks of raw settings every binary shares;
//! - [`state`]: what afk remembers between ticks (`AFK_STATE_FILE`);
//! - [`health`]: the loop's own health doorbells, once per cause;
//! - [`setup`]: `afk setup labels`, the labels afk uses on every enrolled
//!   repository;
//! - [`tick`]: what one tick came to;
//! - [`rounds`]: `afk loop`'s rounds of ticks, and how stop requests end
//!   them.
//!
//! Local agent processes and the checklist runner's files are not here: they
//! belong to the `runner` crate and the `afk-process` toolkit, so that
//! nothing local links the HTTP and Kubernetes clients.

pub mod github;
pub mod health;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod rollout;
pub mod rounds;
pub mod services;
pub mod settings;
pub mod setup;
pub mod state;
pub mod t3;
pub mod tick;
pub mod woodpecker;
