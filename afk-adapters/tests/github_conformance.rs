//! GitHub's own API description as the referee: every GraphQL document afk
//! sends is validated against GitHub's public schema; every REST call the
//! adapter makes (method, path template, query parameters) must be an
//! operation of GitHub's OpenAPI description, and every REST answer the
//! simulator gives must fit that operation's JSON schema, for api.github.com
//! and for GitHub Enterprise Server. So the adapter and the simulator can no
//! longer agree on something GitHub does not do.
//!
//! The descriptions are npm packages pinned in `fixtures/github-api/`
//! (`npm ci --prefix fixtures/github-api`, which `.ci/run` does):
//! `@octokit/graphql-schema` (`schema.graphql`) and `@octokit/openapi`
//! (`api.github.com.json`, `ghes-3.19.json`). GraphQL validation is Apollo's
//! `apollo-compiler` (the spec's validation rules: fields exist on their
//! types, arguments exist and type-check, variables are declared and used,
//! fragments apply); answers are validated by the `jsonschema` crate, after
//! OpenAPI 3.0's `nullable` is rewritten as JSON Schema says it. Without the
//! packages the tests say they skipped,
//! except under `CI=true`, where a missing package fails them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use afk_adapters::github::{
    BODIES_QUERY, HEAD_QUERY, LABELED_QUERY, LABELS_QUERY, TRUST_QUERY, page_document,
    scan_document, slices_document, states_document,
};
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use serde_json::Value;

use crate::stage_contract::github_stage_exchanges;
use crate::tracker_contract;

type Reply = (String, String, u16, Option<Value>);

/// Every request the GitHub adapter made, and every REST answer the
/// simulator gave, while the tracker's and the build stage's contracts ran.
async fn every_request() -> (Vec<wiremock::Request>, Vec<Reply>) {
    let (mut requests, mut replies) = tracker_contract::every_request().await;
    let (stage_requests, stage_replies) = github_stage_exchanges().await;
    requests.extend(stage_requests);
    replies.extend(stage_replies);
    let (setup_requests, setup_replies) = crate::setup_labels::setup_exchanges().await;
    requests.extend(setup_requests);
    replies.extend(setup_replies);
    (requests, replies)
}

/// `fixtures/github-api/node_modules/@octokit`, or `None` (outside CI) when
/// the packages are not installed.
#[allow(clippy::print_stderr)] // a skipped test must say so
fn octokit() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/github-api/node_modules/@octokit");
    if dir.join("graphql-schema/schema.graphql").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "GitHub's API description is not installed under CI: npm ci --prefix fixtures/github-api"
    );
    eprintln!(
        "skipped: GitHub's API description is not installed (npm ci --prefix fixtures/github-api)"
    );
    None
}

fn schema(dir: &std::path::Path) -> Valid<Schema> {
    let path = dir.join("graphql-schema/schema.graphql");
    let sdl = std::fs::read_to_string(&path).unwrap();
    match Schema::parse_and_validate(sdl, &path) {
        Ok(s) => s,
        // GitHub's published SDL declares a few fields twice (e.g.
        // `EnterpriseOwnerInfo.repositoryDeployKeySetting`, in 15.26.1);
        // the schema is used as parsed when that is its only fault.
        Err(with) => {
            let faults: Vec<String> = with.errors.iter().map(|d| d.error.to_string()).collect();
            assert!(
                faults
                    .iter()
                    .all(|f| f.starts_with("duplicate definitions for")),
                "GitHub's schema does not load: {}",
                with.errors
            );
            Valid::assume_valid(with.partial)
        }
    }
}

fn check(schema: &Valid<Schema>, doc: &str) -> Result<(), String> {
    ExecutableDocument::parse_and_validate(schema, doc, "afk.graphql")
        .map(|_| ())
        .map_err(|with| with.errors.to_string())
}

#[tokio::test]
async fn every_graphql_document_afk_sends_is_valid_against_github_s_schema() {
    let Some(dir) = octokit() else { return };
    let schema = schema(&dir);
    // The documents the adapter builds, at the sizes it builds them…
    // (the comment look-up's rely on these facts of the schema:
    // `Issue.timelineItems(itemTypes:, first:, last:, after:, skip:)` with
    // `ISSUE_COMMENT` and `LABELED_EVENT` items and a `totalCount`;
    // `IssueComment { id fullDatabaseId createdAt body author }`;
    // `LabeledEvent { createdAt label actor }`; `Query.nodes(ids: [ID!]!)`.)
    let mut docs: BTreeSet<String> = [
        TRUST_QUERY.to_owned(),
        HEAD_QUERY.to_owned(),
        LABELED_QUERY.to_owned(),
        BODIES_QUERY.to_owned(),
        slices_document(&[(0, 1)]),
        slices_document(&(0..60).map(|i| (i * 100, 100)).collect::<Vec<_>>()),
        LABELS_QUERY.to_owned(),
        scan_document(1, true),
        scan_document(25, true),
        scan_document(1, false),
        scan_document(25, false),
        page_document(true),
        page_document(false),
        states_document(&[1]),
        states_document(&(1..=100).collect::<Vec<u64>>()),
    ]
    .into();
    // …and every one it sent while the tracker contract ran (the comment
    // look-up's every kind among them).
    let mut sent = BTreeSet::new();
    for r in every_request().await.0 {
        if r.url.path() == "/graphql" {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            sent.insert(body["query"].as_str().unwrap().to_owned());
        }
    }
    for name in ["AfkCommentsHead", "AfkCommentSlices", "AfkCommentBodies"] {
        assert!(
            sent.iter().any(|d| d.contains(name)),
            "{name} was not sent while the contract ran"
        );
    }
    docs.extend(sent);
    assert!(docs.len() >= 7);
    for doc in &docs {
        if let Err(e) = check(&schema, doc) {
            panic!("GitHub's schema refuses a document afk sends:\n{doc}\n{e}");
        }
    }
    // The referee is not a rubber stamp: a misspelt field, a wrong argument
    // and an undeclared variable are refused.
    for bad in [
        "query { rateLimit { costs } }",
        // `skip` is the timeline's, not the comments connection's.
        "query { repository(owner: \"a\", name: \"b\") { issue(number: 1) { comments(first: 1, skip: 5) { totalCount } } } }",
        "query { nodes(ids: [\"x\"]) { ... on IssueComment { bodyy } } }",
        "query { repository(owner: \"a\", name: \"b\") { issues(first: 1, label: [\"x\"]) { totalCount } } }",
        "query { repository(owner: $o, name: \"b\") { name } }",
    ] {
        assert!(check(&schema, bad).is_err(), "accepted: {bad}");
    }
}

/// The operation of `spec` that a request answers to: its path template and
/// the query parameters it declares.
fn operation(spec: &Value, method: &str, path: &str) -> Option<(String, BTreeSet<String>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let paths = spec["paths"].as_object()?;
    for (template, item) in paths {
        let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
        let fits = parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s);
        if !fits {
            continue;
        }
        let Some(op) = item.get(method) else {
            continue;
        };
        let mut params = BTreeSet::new();
        let lists = [item.get("parameters"), op.get("parameters")];
        for p in lists
            .into_iter()
            .flatten()
            .flat_map(|l| l.as_array().cloned().unwrap_or_default())
        {
            let p = match p.get("$ref").and_then(Value::as_str) {
                Some(r) => spec
                    .pointer(r.trim_start_matches('#'))
                    .cloned()
                    .unwrap_or(Value::Null),
                None => p,
            };
            if p["in"] == "query" {
                params.insert(p["name"].as_str().unwrap_or_default().to_owned());
            }
        }
        return Some((template.clone(), params));
    }
    None
}

#[tokio::test]
async fn every_rest_call_afk_makes_is_an_operation_of_github_s_openapi_description() {
    let Some(dir) = octokit() else { return };
    let (requests, _) = every_request().await;
    let mut calls: BTreeSet<(String, String, BTreeSet<String>)> = BTreeSet::new();
    for r in &requests {
        if r.url.path() == "/graphql" {
            continue;
        }
        let query: BTreeSet<String> = r.url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        calls.insert((
            r.method.as_str().to_ascii_lowercase(),
            r.url.path().to_owned(),
            query,
        ));
    }
    assert!(
        calls.len() > 10,
        "the contract exercised the REST face: {calls:?}"
    );
    for file in ["api.github.com.json", "ghes-3.19.json"] {
        let spec: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("openapi/generated").join(file)).unwrap(),
        )
        .unwrap();
        let mut templates = BTreeSet::new();
        for (method, path, query) in &calls {
            let Some((template, allowed)) = operation(&spec, method, path) else {
                panic!(
                    "{file}: GitHub has no operation {} {path}",
                    method.to_uppercase()
                );
            };
            for q in query {
                assert!(
                    allowed.contains(q),
                    "{file}: {} {template} takes no query parameter {q:?} (it takes {allowed:?})",
                    method.to_uppercase()
                );
            }
            templates.insert(format!("{} {template}", method.to_uppercase()));
        }
        // The referee is not a rubber stamp.
        assert!(operation(&spec, "get", "/repos/acme/infra/issuez").is_none());
        assert!(operation(&spec, "put", "/repos/acme/infra/issues/1/comments").is_none());
        assert!(templates.len() >= 8, "{templates:?}");
    }
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema (2020-12) says it: the
/// type list (and an enum) gains `null`, or the schema becomes "this or
/// null".
fn json_schema(mut v: Value) -> Value {
    match &mut v {
        Value::Array(items) => {
            for i in items.iter_mut() {
                *i = json_schema(i.take());
            }
        }
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                // `example`s and extensions are documentation.
                if k != "example" && k != "examples" && !k.starts_with("x-") {
                    *x = json_schema(x.take());
                }
            }
            if map.remove("nullable") == Some(Value::Bool(true)) {
                // An enum lists the values allowed: null is one of them.
                if let Some(Value::Array(values)) = map.get_mut("enum") {
                    values.push(Value::Null);
                }
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), serde_json::json!([t, "null"]));
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(map));
                        return serde_json::json!({"anyOf": [inner, {"type": "null"}]});
                    }
                }
            }
        }
        _ => {}
    }
    v
}

/// The JSON schema of the answer `status` to `method template`, as a
/// pointer into the spec's components, or inline.
fn answer_schema(spec: &Value, method: &str, template: &str, status: u16) -> Option<Value> {
    let responses = &spec["paths"][template][method]["responses"];
    let response = responses
        .get(status.to_string())
        .or_else(|| responses.get("default"))?;
    let response = match response.get("$ref").and_then(Value::as_str) {
        Some(r) => spec.pointer(r.trim_start_matches('#'))?,
        None => response,
    };
    response
        .pointer("/content/application~1json/schema")
        .cloned()
}

#[tokio::test]
async fn every_answer_the_simulator_gives_fits_github_s_openapi_description() {
    let Some(dir) = octokit() else { return };
    let (_, replies) = every_request().await;
    let mut checked = BTreeSet::new();
    let mut faults = Vec::new();
    for file in ["api.github.com.json", "ghes-3.19.json"] {
        let spec: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("openapi/generated").join(file)).unwrap(),
        )
        .unwrap();
        let components = json_schema(spec["components"].clone());
        for (method, path, status, body) in &replies {
            let method = method.to_ascii_lowercase();
            let Some((template, _)) = operation(&spec, &method, path) else {
                faults.push(format!("{file}: {method} {path}: no such operation"));
                continue;
            };
            let Some(body) = body else {
                continue;
            };
            let Some(schema) = answer_schema(&spec, &method, &template, *status) else {
                // GitHub documents no body for this answer (a 404 of an
                // endpoint that lists none, say): nothing to hold it to.
                continue;
            };
            let mut root = json_schema(schema);
            if let Value::Object(map) = &mut root {
                map.insert("components".into(), components.clone());
            }
            let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| {
                panic!("{file}: {method} {template} {status}: schema does not compile: {e}")
            });
            let errors: Vec<String> = validator
                .iter_errors(body)
                .take(5)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            if !errors.is_empty() {
                faults.push(format!(
                    "{file}: {} {template} {status}: {errors:#?}",
                    method.to_uppercase()
                ));
            }
            checked.insert(format!("{} {template} {status}", method.to_uppercase()));
        }
    }
    faults.sort();
    faults.dedup();
    assert!(
        faults.is_empty(),
        "the simulator answers what GitHub does not:\n{}",
        faults.join("\n")
    );
    assert!(checked.len() >= 8, "{checked:#?}");
    // The build stage's reads are among them.
    assert!(
        checked.contains("GET /repos/{owner}/{repo}/commits/{ref}/check-runs 200"),
        "{checked:#?}"
    );
}
