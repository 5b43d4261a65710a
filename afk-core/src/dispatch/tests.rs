//! The dispatch rules, checked: table-driven cases for each rule and its
//! order, and property tests of the laws against an oracle written plainly
//! from the module docs' rules, one issue at a time, calling nothing of the
//! policy or its machinery. This file is long because every rule has its
//! table of cases and its law.

use proptest::prelude::*;

use super::*;
use crate::types::same_repo;

/// The first rule `issue` fails, read straight from the rules' text: each
/// rule is a fact that must hold, in order.
fn plain_first_failure<'a>(
    issue: &'a Issue,
    config: &Config,
    in_flight: &[String],
) -> Option<SkipReason<'a>> {
    let rules = [
        (issue.has_label(&config.ready_label), SkipReason::NotReady),
        (config.allows(&issue.repo), SkipReason::NotAllowlisted),
        (
            !in_flight.iter().any(|r| same_repo(r, &issue.repo)),
            SkipReason::RepoInFlight,
        ),
        (
            !issue.has_label(&config.ready_for_human_label),
            SkipReason::HandedToHuman,
        ),
        (!issue.has_label(&config.stop_label), SkipReason::Stopped),
        (
            issue.label_trust != LabelTrust::Untrusted,
            SkipReason::Untrusted,
        ),
        (
            issue.label_trust != LabelTrust::NotRead,
            SkipReason::TrustNotRead,
        ),
        (
            issue.open_blockers.is_empty(),
            SkipReason::Blocked {
                open_blockers: &issue.open_blockers,
            },
        ),
    ];
    rules
        .into_iter()
        .find(|(holds, _)| !holds)
        .map(|(_, failed)| failed)
}

/// The whole plan by the rules, slowly: sort every issue by rule 4, then
/// walk them, giving each its first failed rule or its repository's slot if
/// still free.
fn oracle<'a>(issues: &'a [Issue], config: &Config, in_flight: &[String]) -> DispatchPlan<'a> {
    let mut ordered: Vec<&Issue> = issues.iter().collect();
    ordered.sort_by_key(|i| {
        (
            i.priority,
            i.number,
            i.repo.trim().to_ascii_lowercase(),
            i.repo.clone(),
            i.label_trust,
            i.open_blockers.clone(),
            i.labels.clone(),
            i.title.clone(),
        )
    });
    let mut plan = DispatchPlan::default();
    for issue in ordered {
        let failed = if config.kill_switch {
            Some(SkipReason::KillSwitch)
        } else {
            plain_first_failure(issue, config, in_flight)
        };
        let reason = failed.or_else(|| {
            plan.decisions
                .iter()
                .find(|d| same_repo(&d.repo, &issue.repo))
                .map(|d| SkipReason::LostSlot { winner: d.number })
        });
        match reason {
            Some(reason) => plan.skipped.push(Skip {
                repo: &issue.repo,
                number: issue.number,
                reason,
            }),
            None => plan.decisions.push(Decision {
                repo: issue.repo.clone(),
                number: issue.number,
                priority: issue.priority,
                reason: String::new(),
            }),
        }
    }
    for d in &mut plan.decisions {
        let competitors = issues
            .iter()
            .filter(|i| {
                same_repo(&i.repo, &d.repo) && plain_first_failure(i, config, in_flight).is_none()
            })
            .count();
        d.reason = format!(
            "priority {}, ready label applied by a trusted collaborator, no open blockers; best of {competitors} eligible issue(s) in {}",
            d.priority, d.repo
        );
    }
    plan
}

fn armed(allowlist: &[&str]) -> Config {
    Config {
        kill_switch: false,
        allowlist: allowlist.iter().map(|s| (*s).to_owned()).collect(),
        ..Config::default()
    }
}

fn issue(repo: &str, number: u64) -> Issue {
    Issue {
        repo: repo.to_owned(),
        number,
        title: format!("issue {number}"),
        labels: vec!["ready-for-agent".to_owned()],
        open_blockers: Vec::new(),
        label_trust: LabelTrust::Trusted,
        priority: 0,
    }
}

fn picked(issues: &[Issue], config: &Config, in_flight: &[&str]) -> Vec<String> {
    let in_flight: Vec<String> = in_flight.iter().map(|s| (*s).to_owned()).collect();
    select_dispatchable(issues, config, &in_flight)
        .into_iter()
        .map(|d| format!("{}#{}", d.repo, d.number))
        .collect()
}

#[test]
fn kill_switch_dispatches_nothing() {
    let config = Config {
        allowlist: vec!["infra".into()],
        ..Config::default()
    };
    let issues = [issue("infra", 1)];
    assert!(picked(&issues, &config, &[]).is_empty());
    let plan = plan_dispatch(&issues, &config, &[]);
    assert_eq!(plan.skipped[0].reason, SkipReason::KillSwitch);
}

#[track_caller]
fn check(i: Issue, in_flight: &[&str], expected: Option<SkipReason<'_>>) {
    let config = armed(&["infra", "web"]);
    let in_flight_owned: Vec<String> = in_flight.iter().map(|s| (*s).to_owned()).collect();
    let plan = plan_dispatch(std::slice::from_ref(&i), &config, &in_flight_owned);
    match expected {
        None => assert_eq!(plan.decisions.len(), 1, "{i:?}"),
        Some(reason) => {
            assert!(plan.decisions.is_empty(), "{i:?}");
            assert_eq!(plan.skipped[0].reason, reason, "{i:?}");
        }
    }
}

fn labelled(labels: &[&str], i: Issue) -> Issue {
    Issue {
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        ..i
    }
}

fn trust(label_trust: LabelTrust, i: Issue) -> Issue {
    Issue { label_trust, ..i }
}

#[test]
fn each_eligibility_rule_excludes() {
    use LabelTrust::{NotRead, Untrusted};
    check(issue("infra", 1), &[], None);
    check(
        labelled(&[], issue("infra", 1)),
        &[],
        Some(SkipReason::NotReady),
    );
    check(issue("other", 1), &[], Some(SkipReason::NotAllowlisted));
    check(
        issue("acme/infra", 1),
        &[],
        Some(SkipReason::NotAllowlisted),
    );
    check(
        issue("infra", 1),
        &["INFRA"],
        Some(SkipReason::RepoInFlight),
    );
    let human = ["ready-for-agent", "Ready-For-Human"];
    check(
        labelled(&human, issue("infra", 1)),
        &[],
        Some(SkipReason::HandedToHuman),
    );
    let stop = ["ready-for-agent", "afk-stop"];
    check(
        labelled(&stop, issue("infra", 1)),
        &[],
        Some(SkipReason::Stopped),
    );
    check(
        trust(Untrusted, issue("infra", 1)),
        &[],
        Some(SkipReason::Untrusted),
    );
    check(
        trust(NotRead, issue("infra", 1)),
        &[],
        Some(SkipReason::TrustNotRead),
    );
    let blocked = Issue {
        open_blockers: vec![3],
        ..issue("infra", 1)
    };
    let open_blockers = &[3];
    check(blocked, &[], Some(SkipReason::Blocked { open_blockers }));
}

#[test]
fn a_skip_names_the_first_rule_it_fails() {
    use LabelTrust::{NotRead, Untrusted};
    let untrusted = |i| trust(Untrusted, i);
    let not_read = |i| trust(NotRead, i);
    let blocked = |i| Issue {
        open_blockers: vec![3],
        ..i
    };
    // Trust comes after every fact the scan yields ...
    check(
        untrusted(labelled(&[], issue("infra", 1))),
        &[],
        Some(SkipReason::NotReady),
    );
    check(
        not_read(issue("other", 1)),
        &[],
        Some(SkipReason::NotAllowlisted),
    );
    check(
        not_read(issue("infra", 1)),
        &["infra"],
        Some(SkipReason::RepoInFlight),
    );
    let human = ["ready-for-agent", "ready-for-human", "afk-stop"];
    check(
        not_read(labelled(&human, issue("infra", 1))),
        &[],
        Some(SkipReason::HandedToHuman),
    );
    let stop = ["ready-for-agent", "afk-stop"];
    check(
        untrusted(labelled(&stop, issue("infra", 1))),
        &[],
        Some(SkipReason::Stopped),
    );
    // ... and before blockers.
    check(
        untrusted(blocked(issue("infra", 1))),
        &[],
        Some(SkipReason::Untrusted),
    );
    check(
        not_read(blocked(issue("infra", 1))),
        &[],
        Some(SkipReason::TrustNotRead),
    );
}

#[test]
fn one_per_repository_best_eligible_wins() {
    let config = armed(&["infra", "web"]);
    let urgent_but_blocked = Issue {
        priority: -5,
        open_blockers: vec![1],
        ..issue("infra", 2)
    };
    let urgent_but_not_read = Issue {
        priority: -4,
        label_trust: LabelTrust::NotRead,
        ..issue("infra", 1)
    };
    let issues = vec![
        issue("infra", 9),
        Issue {
            priority: 1,
            ..issue("infra", 3)
        },
        urgent_but_blocked,
        urgent_but_not_read,
        issue("web", 4),
        issue("infra", 5),
    ];
    assert_eq!(picked(&issues, &config, &[]), ["web#4", "infra#5"]);
}

#[test]
fn reasons_are_snapshotted() {
    let config = armed(&["infra", "web"]);
    let issues = vec![
        issue("infra", 9),
        issue("infra", 5),
        Issue {
            label_trust: LabelTrust::Untrusted,
            ..issue("web", 1)
        },
        issue("web", 2),
        Issue {
            label_trust: LabelTrust::NotRead,
            ..issue("infra", 3)
        },
        Issue {
            label_trust: LabelTrust::Untrusted,
            priority: -1,
            ..issue("infra", 4)
        },
    ];
    let plan = plan_dispatch(&issues, &config, &["web".to_owned()]);
    let mut out = String::new();
    for d in &plan.decisions {
        out.push_str(&format!("dispatch {}#{}: {}\n", d.repo, d.number, d.reason));
    }
    for s in &plan.skipped {
        out.push_str(&format!("skip {}#{}: {}\n", s.repo, s.number, s.reason));
    }
    insta::assert_snapshot!(out, @r"
    dispatch infra#5: priority 0, ready label applied by a trusted collaborator, no open blockers; best of 2 eligible issue(s) in infra
    skip infra#4: ready label was not applied by a trusted collaborator
    skip web#1: repository already has a run in flight
    skip web#2: repository already has a run in flight
    skip infra#3: the ready label's trust was not read this tick
    skip infra#9: #5 takes this repository's slot first
    ");
}

#[test]
fn the_oracle_can_tell_a_wrong_plan() {
    // The oracle is what the properties lean on: it must see a skip that
    // names a later rule, and a slot given to the second best.
    let config = armed(&["infra"]);
    let issues = vec![
        issue("infra", 2),
        issue("infra", 1),
        Issue {
            label_trust: LabelTrust::NotRead,
            labels: vec!["ready-for-agent".into(), "afk-stop".into()],
            ..issue("infra", 3)
        },
    ];
    let expected = oracle(&issues, &config, &[]);
    assert_eq!(plan_dispatch(&issues, &config, &[]), expected);
    assert_eq!(expected.decisions[0].number, 1);
    assert_eq!(expected.skipped[1].reason, SkipReason::Stopped);
}

/// Labels from a small pool, in mixed case, so the policy's labels (any of
/// [`arb_config`]'s) are carried sometimes.
fn arb_labels() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "ready-for-agent",
            "Ready-For-Agent",
            "ready-for-human",
            "afk-stop",
            "AFK-Stop",
            "bug",
            "go",
            "GO",
            "ready-for-an-agent-to-pick-up",
            "Ready-for-an-agent-to-pick-UP",
        ]),
        0..4,
    )
    .prop_map(|labels| labels.into_iter().map(str::to_owned).collect())
}

fn arb_issue() -> impl Strategy<Value = Issue> {
    (
        prop::sample::select(vec![
            "infra",
            "web",
            "api",
            "Infra",
            "docs",
            " web",
            "acme/infra",
        ]),
        prop_oneof![6 => 1u64..40, 2 => 1u64..5000, 1 => Just(0), 1 => Just(u64::MAX)],
        prop_oneof![8 => -2i64..4, 1 => Just(i64::MIN), 1 => Just(i64::MAX)],
        prop::sample::select(LabelTrust::ALL),
        prop::collection::vec(1u64..5, 0..2),
        arb_labels(),
        prop::sample::select(vec!["", "t"]),
    )
        .prop_map(
            |(repo, number, priority, label_trust, open_blockers, labels, title)| Issue {
                repo: repo.to_owned(),
                number,
                title: title.to_owned(),
                labels,
                open_blockers,
                label_trust,
                priority,
            },
        )
}

/// Issues, some of them near duplicates of others (as a paginated read
/// that shifted gives): equal but for one field, so that only the rest of
/// the issue orders them.
fn arb_issues() -> impl Strategy<Value = Vec<Issue>> {
    (
        prop::collection::vec(arb_issue(), 0..24),
        prop::collection::vec((any::<prop::sample::Index>(), 0..6usize), 0..8),
    )
        .prop_map(|(mut issues, copies)| {
            if issues.is_empty() {
                return issues;
            }
            for (of, field) in copies {
                let mut copy = issues[of.index(issues.len())].clone();
                match field {
                    0 => copy.repo = copy.repo.to_ascii_uppercase(),
                    1 => {
                        copy.label_trust = match copy.label_trust {
                            LabelTrust::Trusted => LabelTrust::NotRead,
                            LabelTrust::Untrusted => LabelTrust::Trusted,
                            LabelTrust::NotRead => LabelTrust::Untrusted,
                        }
                    }
                    2 => copy.open_blockers.push(9),
                    3 => copy.labels.push("bug".to_owned()),
                    4 => copy.title.push('!'),
                    _ => {}
                }
                issues.push(copy);
            }
            issues
        })
}

fn arb_config() -> impl Strategy<Value = Config> {
    (
        prop_oneof![1 => Just(true), 3 => Just(false)],
        prop::sample::subsequence(vec!["infra", "web", "api", "docs", "ACME/infra"], 0..5),
        prop::sample::select(vec![
            "ready-for-agent",
            "go",
            "ready-for-an-agent-to-pick-up",
        ]),
    )
        .prop_map(|(kill_switch, allow, ready)| Config {
            kill_switch,
            allowlist: allow.into_iter().map(str::to_owned).collect(),
            ready_label: ready.to_owned(),
            ..Config::default()
        })
}

fn arb_in_flight() -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(vec!["infra", "WEB", "docs "], 0..3)
        .prop_map(|r| r.into_iter().map(str::to_owned).collect())
}

/// `items` in another order, chosen by `seed`.
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut out = items.to_vec();
    let mut state = seed;
    for i in (1..out.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from(state >> 33).unwrap_or(0) % (i + 1);
        out.swap(i, j);
    }
    out
}

proptest! {
    #[test]
    fn dispatch_laws(
        issues in arb_issues(),
        config in arb_config(),
        in_flight in arb_in_flight(),
        seed in any::<u64>(),
    ) {
        let before = issues.clone();
        let plan = plan_dispatch(&issues, &config, &in_flight);
        let decisions = select_dispatchable(&issues, &config, &in_flight);
        // The rules, as the oracle works them out.
        prop_assert_eq!(&plan, &oracle(&issues, &config, &in_flight));
        prop_assert_eq!(&decisions, &plan.decisions);
        // No mutation.
        prop_assert_eq!(&issues, &before);
        // Nothing under the kill switch.
        if config.kill_switch {
            prop_assert!(decisions.is_empty());
        }
        // Totality: every issue is decided or skipped, once.
        let mut planned: Vec<(&str, u64)> = plan.decisions.iter().map(|d| (d.repo.as_str(), d.number))
            .chain(plan.skipped.iter().map(|s| (s.repo, s.number)))
            .collect();
        let mut given: Vec<(&str, u64)> = issues.iter().map(|i| (i.repo.as_str(), i.number)).collect();
        planned.sort_unstable();
        given.sort_unstable();
        prop_assert_eq!(planned, given);
        // At most one decision per repository.
        let mut repos: Vec<String> = decisions.iter().map(|d| d.repo.trim().to_ascii_lowercase()).collect();
        repos.sort();
        let n = repos.len();
        repos.dedup();
        prop_assert_eq!(repos.len(), n);
        // Independent of input order.
        let other = shuffled(&issues, seed);
        prop_assert_eq!(&plan_dispatch(&other, &config, &in_flight), &plan);
        prop_assert_eq!(&select_dispatchable(&other, &config, &in_flight), &decisions);
    }

    #[test]
    fn no_decision_is_made_on_trust_that_is_not_read_as_trusted(
        issues in prop::collection::vec(arb_issue(), 0..30),
        doubts in prop::collection::vec(prop::option::of(prop::sample::select(vec![LabelTrust::Untrusted, LabelTrust::NotRead])), 30),
        config in arb_config(),
        in_flight in arb_in_flight(),
    ) {
        // Whatever else holds of an issue, trust that is untrusted or not
        // read is never dispatched, and its skip names its own trust or a
        // rule before trust: never a lost slot or its blockers.
        let mut issues = issues;
        for (i, (issue, doubt)) in issues.iter_mut().zip(&doubts).enumerate() {
            issue.number = i as u64 + 1;
            if let Some(doubt) = doubt {
                issue.label_trust = *doubt;
            }
        }
        let plan = plan_dispatch(&issues, &config, &in_flight);
        prop_assert_eq!(&select_dispatchable(&issues, &config, &in_flight), &plan.decisions);
        let of = |number: u64| &issues[usize::try_from(number - 1).unwrap_or(usize::MAX)];
        for d in &plan.decisions {
            prop_assert_eq!(of(d.number).label_trust, LabelTrust::Trusted, "{:?}", d);
        }
        for s in &plan.skipped {
            let i = of(s.number);
            let fits = match (i.label_trust, &s.reason) {
                (LabelTrust::Trusted, _) => true,
                (_, SkipReason::LostSlot { .. } | SkipReason::Blocked { .. }) => false,
                (LabelTrust::Untrusted, reason) => *reason != SkipReason::TrustNotRead,
                (LabelTrust::NotRead, reason) => *reason != SkipReason::Untrusted,
            };
            prop_assert!(fits, "{:?} skipped for {:?}", i, s.reason);
        }
        if issues.iter().all(|i| i.label_trust != LabelTrust::Trusted) {
            prop_assert!(plan.decisions.is_empty());
        }
    }

    #[test]
    fn many_repositories_decide_like_the_plain_rules(
        picks in prop::collection::vec((0u32..700, 1u64..5, any::<bool>(), -1i64..3), 0..300),
        allowed in prop::collection::vec(0u32..700, 0..400),
    ) {
        // Hundreds of repositories, named alike but for their last
        // characters and their case: the repository cache's slots are
        // shared and evicted, and must never mix two names up.
        let name = |n: u32, upper: bool| {
            let s = format!("Acme-Org/service-{n:04}");
            if upper { s.to_ascii_uppercase() } else { s }
        };
        let issues: Vec<Issue> = picks.iter().map(|(r, number, upper, priority)| Issue {
            priority: *priority,
            ..issue(&name(*r, *upper), *number)
        }).collect();
        let allowlist: Vec<String> = allowed.iter().map(|r| name(*r, false)).collect();
        let config = Config { allowlist, ..armed(&[]) };
        let plan = plan_dispatch(&issues, &config, &[]);
        prop_assert_eq!(&plan, &oracle(&issues, &config, &[]));
        prop_assert_eq!(&select_dispatchable(&issues, &config, &[]), &plan.decisions);
    }
}

fn decision(repo: &str, number: u64) -> Decision {
    Decision {
        repo: repo.into(),
        number,
        priority: 0,
        reason: String::new(),
    }
}

#[test]
fn rule_6_only_free_slots_start_the_first_decisions_in_order() {
    let plan = vec![decision("a", 1), decision("b", 2), decision("c", 3)];
    let (start, wait) = hold_for_capacity(plan.clone(), None);
    assert_eq!((start.len(), wait.len()), (3, 0));
    for (running, max, starts) in [(0, 2, 2), (1, 2, 1), (2, 2, 0), (5, 2, 0), (0, 9, 3)] {
        let (start, wait) = hold_for_capacity(plan.clone(), Some(Capacity { running, max }));
        assert_eq!(start.len(), starts, "{running} of {max} running");
        assert_eq!(start.len() + wait.len(), 3);
        let order: Vec<u64> = start.iter().chain(&wait).map(|d| d.number).collect();
        assert_eq!(order, [1, 2, 3], "the plan's order is kept");
    }
}

#[test]
fn the_operators_limits_hold_decisions_with_the_limit_they_met() {
    let plan = select_dispatchable(
        &[issue("a", 1), issue("b", 2), issue("c", 3)],
        &armed(&["a", "b", "c"]),
        &[],
    );
    let limited = |max_runs, per_tick| Config {
        max_runs,
        max_dispatch_per_tick: per_tick,
        ..armed(&["a", "b", "c"])
    };
    let (start, wait) = hold_for_limits(plan.clone(), &limited(None, None), Some(40));
    assert_eq!(
        (start.len(), wait.len()),
        (3, 0),
        "no limit set: every decision starts"
    );
    let (start, wait) = hold_for_limits(plan.clone(), &limited(None, Some(2)), None);
    assert_eq!(
        (start.len(), wait.len()),
        (2, 1),
        "uncounted runs matter only to a run limit"
    );
    let (start, wait) = hold_for_limits(plan.clone(), &limited(Some(9), None), None);
    assert!(start.is_empty() && wait.iter().all(|(_, h)| *h == Hold::Uncounted { max: 9 }));
    let (start, wait) = hold_for_limits(plan.clone(), &limited(None, None), None);
    assert_eq!(
        (start.len(), wait.len()),
        (3, 0),
        "no limit set: every decision starts"
    );
    let cases = [
        // (max runs, per tick, in flight) -> starts, and the first hold.
        (
            (Some(5), None, 3),
            2,
            Some(Hold::MaxRuns {
                max: 5,
                in_flight: 3,
            }),
        ),
        (
            (Some(5), None, 5),
            0,
            Some(Hold::MaxRuns {
                max: 5,
                in_flight: 5,
            }),
        ),
        (
            (Some(5), None, 9),
            0,
            Some(Hold::MaxRuns {
                max: 5,
                in_flight: 9,
            }),
        ),
        (
            (None, Some(1), 0),
            1,
            Some(Hold::MaxDispatchPerTick { max: 1 }),
        ),
        (
            (Some(10), Some(2), 7),
            2,
            Some(Hold::MaxDispatchPerTick { max: 2 }),
        ),
        (
            (Some(8), Some(2), 7),
            1,
            Some(Hold::MaxRuns {
                max: 8,
                in_flight: 7,
            }),
        ),
        ((Some(10), Some(9), 0), 3, None),
    ];
    for ((max_runs, per_tick, in_flight), starts, first_hold) in cases {
        let (start, wait) =
            hold_for_limits(plan.clone(), &limited(max_runs, per_tick), Some(in_flight));
        assert_eq!(start.len(), starts, "{max_runs:?} {per_tick:?} {in_flight}");
        assert_eq!(wait.first().map(|(_, h)| *h), first_hold);
        let order: Vec<u64> = start
            .iter()
            .chain(wait.iter().map(|(d, _)| d))
            .map(|d| d.number)
            .collect();
        assert_eq!(order, [1, 2, 3], "the plan's order is kept");
    }
    assert!(
        Hold::MaxRuns {
            max: 5,
            in_flight: 5
        }
        .to_string()
        .contains("AFK_MAX_RUNS")
            && Hold::MaxDispatchPerTick { max: 1 }
                .to_string()
                .contains("AFK_MAX_DISPATCH_PER_TICK")
    );
}

proptest! {
    /// Whatever the limits: never more runs in flight than AFK_MAX_RUNS
    /// after the tick (unless already past it), never more starts than
    /// AFK_MAX_DISPATCH_PER_TICK, and the starts are the plan's first.
    #[test]
    fn the_limits_are_never_exceeded(
        n in 0usize..12,
        max_runs in proptest::option::of(1u32..10),
        per_tick in proptest::option::of(1u32..10),
        in_flight in 0usize..12,
    ) {
        let repos: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        let refs: Vec<&str> = repos.iter().map(String::as_str).collect();
        let issues: Vec<Issue> = repos.iter().enumerate().map(|(i, r)| issue(r, i as u64 + 1)).collect();
        let mut config = armed(&refs);
        config.max_runs = max_runs;
        config.max_dispatch_per_tick = per_tick;
        let plan = select_dispatchable(&issues, &config, &[]);
        let (start, wait) = hold_for_limits(plan.clone(), &config, Some(in_flight));
        if let Some(max) = max_runs {
            prop_assert!(start.is_empty() || in_flight + start.len() <= max as usize);
        }
        if let Some(max) = per_tick {
            prop_assert!(start.len() <= max as usize);
        }
        prop_assert_eq!(start.len() + wait.len(), plan.len());
        prop_assert_eq!(&plan[..start.len()], &start[..]);
    }
}
