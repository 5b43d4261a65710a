//! The one integration-test binary of `afk-gateway` (one binary per crate
//! keeps link times down on two cores): a real gateway on 127.0.0.1 with
//! the scripted CLI of `fixtures/gateway/` behind it, and the official
//! `openai` Python client in front of it.

// A test that meets a broken fixture or a missing tool should stop loudly:
// helpers outside `#[test]` functions panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chat;
mod common;
mod conversational;
mod hostile;
mod openai_client;
mod warm;
