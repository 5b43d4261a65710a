//! A run that lands through a pull request: the facts the watch tick
//! gathers about it (its pull request, the reviews, which commit to judge)
//! and the effects the state machine's landing rows name (open or adopt the
//! pull request, merge it, hand it over for review). Every effect is safe to
//! repeat: a tick that dies after it is finished by the next one, which
//! finds the pull request by its branch, sees it merged, or finds the label
//! already on.

use afk_core::Config;
use afk_core::doorbell::{Loudness, Message};
use afk_core::land::{PullFacts, PullState, review_state};
use afk_core::ports::{MergeOutcome, NewPull, PortError, PortResult, PullRequest, Review};
use afk_core::prompt::one_line;

use crate::Ports;
use crate::report::{About, ReportAction, TickReport};
use crate::runs::Run;

/// `e`, noted for the loop's health first: a token that may not open,
/// label or merge a pull request (a 403) is afk's credentials failing, and
/// a human hears it once (`afk_core::health`), not a run that errors at
/// every tick in silence.
pub(crate) fn noted(report: &mut TickReport, e: PortError) -> PortError {
    report.saw_tracker_error(&e);
    e
}

/// What the watch tick learnt about a run's pull request.
#[derive(Debug, Clone, Default)]
pub(crate) struct PullRead {
    /// The facts the state machine decides on (`None`: the run lands by a
    /// push).
    pub facts: Option<PullFacts>,
    /// The pull request, once opened.
    pub pull: Option<PullRequest>,
    /// afk's own open pull request for the run's branch, not recorded yet
    /// (a tick that died after opening it, or the agent pushing with
    /// afk's token): adopted when the machine says to open one.
    pub unrecorded: Option<PullRequest>,
    /// An open pull request for the run's branch that someone else
    /// opened, newly found.
    pub foreign: Option<u64>,
    /// The reviews a corrective turn would answer, oldest first.
    pub reviews: Vec<Review>,
    /// What the reading noticed that an operator should see, whatever
    /// is decided.
    pub notes: Vec<String>,
}

/// Reads the run's pull request and its reviews (when it is open); before
/// one is recorded and once the agent has `pushed`, the open pull request
/// for its branch, if any (afk's own to adopt, or someone else's: a fact
/// the machine hands back on).
pub(crate) async fn read(
    ports: &Ports<'_>,
    run: &Run,
    base: &str,
    pushed: bool,
) -> PortResult<PullRead> {
    let Some(landing) = &run.record.landing else {
        return Ok(PullRead::default());
    };
    if !afk_core::land::is_run_branch(&landing.branch, run.issue.number) {
        return Err(PortError::ContractViolation {
            message: format!(
                "the run record names branch `{}`, which is not a run branch of #{}",
                landing.branch, run.issue.number
            ),
        });
    }
    let mut facts = PullFacts {
        handed_over: landing.handed_over,
        foreign: landing.foreign_pull.is_some(),
        merge_refused: landing.merge_refused,
        ..PullFacts::NONE
    };
    let repo = &run.issue.repo;
    let Some(number) = landing.pull_request else {
        let mut read = PullRead::default();
        if pushed && !facts.foreign {
            // Only an open pull request into the default branch is the
            // run's; one retargeted elsewhere is left alone (a new one is
            // opened). One that someone else opened is never adopted: its
            // author controls its title, body and state.
            let found = ports
                .tracker
                .pull_for_branch(repo, &landing.branch)
                .await?
                .filter(|p| p.state == PullState::Open && p.base_branch == base);
            match found {
                Some(p) if !p.by_afk => {
                    facts.foreign = true;
                    read.foreign = Some(p.number);
                    read.notes.push(format!(
                        "pull request #{} for `{}` was opened by {}, not afk: not adopted",
                        p.number,
                        p.head_branch,
                        p.author.as_deref().unwrap_or("a deleted account")
                    ));
                }
                own => read.unrecorded = own,
            }
        }
        read.facts = Some(facts);
        return Ok(read);
    };
    let pull = ports.tracker.pull_request(repo, number).await?;
    if pull.head_branch != landing.branch {
        return Err(PortError::ContractViolation {
            message: format!(
                "pull request #{number} merges `{}`, not the run's branch `{}`",
                pull.head_branch, landing.branch
            ),
        });
    }
    // Retargeted by a human: never merged into another branch.
    facts.retargeted = pull.base_branch != base;
    facts.opened = true;
    facts.state = pull.state;
    facts.mergeable = pull.mergeable;
    let mut open = Vec::new();
    if pull.state == PullState::Open {
        let reviews = ports.tracker.reviews(repo, number).await?;
        let (state, answer) = review_state(&reviews, landing.answered_review);
        facts.review = state;
        open = answer.into_iter().cloned().collect();
    }
    Ok(PullRead {
        facts: Some(facts),
        pull: Some(pull),
        reviews: open,
        ..PullRead::default()
    })
}

/// Opens the run's pull request, or adopts `unrecorded`, afk's own already
/// open for its branch (the create is safe to repeat either way: GitHub's
/// "already exists" is answered with the open one); labels it in progress
/// and records its number.
pub(crate) async fn open(
    ports: &Ports<'_>,
    config: &Config,
    run: &mut Run,
    base: &str,
    unrecorded: Option<&PullRequest>,
    report: &mut TickReport,
) -> PortResult<()> {
    let (repo, number) = (run.issue.repo.clone(), run.issue.number);
    let Some(landing) = run.record.landing.as_mut() else {
        return Ok(());
    };
    let (pull, how) = match unrecorded {
        Some(p) => (p.clone(), "adopted the pull request open for"),
        None => {
            let new = NewPull {
                head: landing.branch.clone(),
                base: base.to_owned(),
                // No `#`: a title an issue's author edited after dispatch
                // cannot make the merge commit close another issue.
                title: one_line(&run.issue.title.replace('#', ""), 200),
                body: format!(
                    "Closes #{number}\n\nOpened by afk for {repo}#{number}: an agent's work on `{}`. \
                     afk merges it once CI is green and the repository's rules are met, \
                     or hands it over for review.",
                    landing.branch
                ),
            };
            let p = ports
                .tracker
                .create_pull(&repo, &new)
                .await
                .map_err(|e| noted(report, e))?;
            (p, "opened a pull request for")
        }
    };
    ports
        .tracker
        .add_label(&repo, pull.number, &config.in_progress_label)
        .await
        .map_err(|e| noted(report, e))?;
    landing.pull_request = Some(pull.number);
    report.info(
        About::run(&repo, number, &run.record.thread_id),
        ReportAction::OpenPullRequest,
        format!("{how} `{}`: #{}", pull.head_branch, pull.number),
    );
    Ok(())
}

/// Merges the run's pull request (its head as judged); a refusal by the
/// repository's rules is recorded (the machine hands it over for review);
/// a moved head is judged again next tick.
pub(crate) async fn merge(
    ports: &Ports<'_>,
    config: &Config,
    run: &mut Run,
    pull: &PullRequest,
    report: &mut TickReport,
) -> PortResult<()> {
    let repo = run.issue.repo.clone();
    let about = About::run(&repo, run.issue.number, &run.record.thread_id);
    let merged = ports
        .tracker
        .merge_pull(&repo, pull.number, &pull.head_sha, config.merge_method)
        .await
        .map_err(|e| noted(report, e))?;
    match merged {
        MergeOutcome::Merged { sha } => {
            report.info(
                about,
                ReportAction::Merge,
                format!(
                    "merged pull request #{} ({}) as {sha}; the issue closes once it is green on the default branch",
                    pull.number,
                    config.merge_method.as_str()
                ),
            );
            Ok(())
        }
        MergeOutcome::HeadMoved => {
            report.info(
                about,
                ReportAction::Wait,
                format!(
                    "pull request #{} moved since it was judged; judged again next tick",
                    pull.number
                ),
            );
            Ok(())
        }
        MergeOutcome::Refused { message } => {
            // Recorded, not acted on here: the machine hands it over for
            // review next (once), or, handed over already, it waits.
            let landing = run.record.landing.as_mut();
            let handed_over = landing.as_ref().is_some_and(|l| l.handed_over);
            if let Some(l) = landing {
                l.merge_refused = true;
            }
            report.info(
                about,
                ReportAction::Merge,
                format!(
                    "the repository's rules refuse to merge #{} ({}){}",
                    pull.number,
                    one_line(&message, 200),
                    if handed_over {
                        "; it waits for its review"
                    } else {
                        ": it is handed over for review"
                    }
                ),
            );
            Ok(())
        }
    }
}

/// Hands the pull request over for a human's review: the review label on
/// it, a doorbell of its own kind, then `handed_over` recorded (a doorbell
/// no notifier took is tried again next tick).
pub(crate) async fn hand_over(
    ports: &Ports<'_>,
    config: &Config,
    run: &mut Run,
    pull: &PullRequest,
    report: &mut TickReport,
) -> PortResult<()> {
    let (repo, number) = (run.issue.repo.clone(), run.issue.number);
    let about = About::run(&repo, number, &run.record.thread_id);
    ports
        .tracker
        .add_label(&repo, pull.number, &config.ready_for_review_label)
        .await
        .map_err(|e| noted(report, e))?;
    let message = Message {
        title: format!(
            "[REVIEW] {repo}#{number} pull request #{} needs a review",
            pull.number
        ),
        body: format!(
            "CI is green on pull request #{} for {repo}#{number}, and the repository's rules need a human's review \
             before it merges. It lands when merged (afk then watches the deploy and closes the issue); closed \
             without merging, the issue is handed back.{}",
            pull.number,
            pull.link
                .as_deref()
                .map(|l| format!("\nPull request: {l}"))
                .unwrap_or_default()
        ),
        loudness: Loudness::Loud,
        tags: vec!["afk".into(), "review".into(), repo.clone()],
        link: pull.link.clone(),
    };
    let rung = crate::ports::deliver_all(ports.notifiers, &message).await;
    report.rang(
        about,
        ReportAction::HandOverForReview,
        &message.title,
        &rung,
    )?;
    if let Some(landing) = run.record.landing.as_mut() {
        landing.handed_over = true;
    }
    Ok(())
}
