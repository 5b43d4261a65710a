//! The Kubernetes executor against the simulated API server
//! (`afk_sim::k8s`), which validates every request against the Kubernetes
//! 1.33 schemas and answers as the API server, the Job controller and the
//! garbage collector do (`docs/contracts/kubernetes.md`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;
mod executor;
mod forged;
mod world;
