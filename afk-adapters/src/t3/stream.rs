//! The snapshot, read as a stream. v0.0.27's snapshot holds every thread
//! with all its messages, so on a long-lived server it only grows (100 MB is
//! ordinary). It is parsed while it arrives: each thread is read, reduced to
//! what afk keeps (its liveness, its message ids) and dropped before the
//! next one, so memory holds one thread's JSON at a time, never the whole
//! snapshot, and message text is skipped without being kept at all.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use afk_core::Timestamp;
use afk_core::ports::{ExecutorSnapshot, PortError, PortResult, ProjectInfo, ThreadInfo};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{WireProject, WireThread, liveness};

/// Chunks of the body, handed from the async reader to the parser thread.
struct Chunks {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.buf = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

struct Snapshot<'a> {
    since: &'a BTreeMap<String, Timestamp>,
}

impl<'de> DeserializeSeed<'de> for Snapshot<'_> {
    type Value = ExecutorSnapshot;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Snapshot<'_> {
    type Value = ExecutorSnapshot;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the orchestration snapshot object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = ExecutorSnapshot::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "projects" => {
                    let projects: Option<Vec<WireProject>> = map.next_value()?;
                    out.projects = projects
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| ProjectInfo {
                            id: p.id,
                            workspace_root: p.workspace_root,
                            deleted: p.deleted_at.is_some(),
                        })
                        .collect();
                }
                "threads" => {
                    out.threads = map.next_value_seed(Threads { since: self.since })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

struct Threads<'a> {
    since: &'a BTreeMap<String, Timestamp>,
}

impl<'de> DeserializeSeed<'de> for Threads<'_> {
    type Value = BTreeMap<String, ThreadInfo>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Threads<'_> {
    type Value = BTreeMap<String, ThreadInfo>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the snapshot's threads")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut threads = BTreeMap::new();
        // One thread at a time: read, reduce, drop.
        while let Some(t) = seq.next_element::<WireThread>()? {
            let status = liveness(&t, self.since.get(&t.id).copied());
            let info = ThreadInfo {
                project_id: t.project_id,
                deleted: t.deleted_at.is_some(),
                status,
                message_ids: t.messages.into_iter().map(|m| m.id).collect(),
                // T3's snapshot reports neither a turn's error text nor its
                // cost (docs/contracts/t3.md).
                said: None,
                cost: None,
            };
            threads.insert(t.id, info);
        }
        Ok(threads)
    }
}

/// Parses the snapshot from `response` as it arrives. `since` is the time of
/// afk's latest turn to each watched thread.
pub(super) async fn parse(
    mut response: reqwest::Response,
    since: BTreeMap<String, Timestamp>,
) -> PortResult<ExecutorSnapshot> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let parser = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::with_capacity(
            64 * 1024,
            Chunks {
                rx,
                buf: Vec::new(),
                at: 0,
            },
        );
        let mut de = serde_json::Deserializer::from_reader(reader);
        let snapshot = Snapshot { since: &since }.deserialize(&mut de)?;
        de.end()?;
        Ok::<_, serde_json::Error>(snapshot)
    });
    let mut broken = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                // The parser stopped (bad JSON): its error says why.
                if tx.send(chunk.to_vec()).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                broken = Some(crate::http::transport_error(&e));
                break;
            }
        }
    }
    drop(tx);
    let parsed = parser.await.map_err(|e| PortError::Transient {
        message: format!("the snapshot parser stopped: {e}"),
    })?;
    if let Some(e) = broken {
        return Err(e);
    }
    parsed.map_err(|e| PortError::ContractViolation {
        message: format!("T3 snapshot does not match the v0.0.27 read model: {e}"),
    })
}
