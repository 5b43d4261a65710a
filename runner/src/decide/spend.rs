//! What a campaign spent, against its budget (`afk run --budget-usd`).
//!
//! The rule for one agent run:
//!
//! - a cost it reports (claude's `total_cost_usd`) counts as reported;
//! - one that reports nothing (it crashed, was killed at the timeout or by a
//!   stop) but was given a cap (claude's `--max-budget-usd`) counts as
//!   having spent its whole cap: it may have spent up to it, and the budget
//!   is a promise about the most that was spent, not the least;
//! - one that reports nothing and was given no cap is *not reported*, never
//!   guessed at.
//!
//! The budget is the campaign's: what earlier runs spent is carried into
//! each run ([`Tally`], kept in `.afk/spend.json` by the runner), so running
//! the same command again continues from what was spent.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What agent runs spent, counted by the rule above: the campaign's running
/// total (`.afk/spend.json`), or one run's share of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    /// Dollars counted: reported costs and the caps of runs that reported
    /// nothing.
    pub spent_usd: f64,
    /// The part of `spent_usd` that is caps of runs that reported nothing.
    #[serde(default)]
    pub assumed_usd: f64,
    /// Agent runs that reported nothing and were counted at their cap.
    #[serde(default)]
    pub capped: u64,
    /// Agent runs that reported nothing and had no cap: not counted.
    #[serde(default)]
    pub unreported: u64,
}

impl Tally {
    /// Counts one agent run: its reported cost (`None`: it reported none)
    /// and the cap it was given (`None`: none, or it never started). A cost
    /// or cap that is not a finite amount of at least 0 counts as absent.
    pub fn charge(&mut self, cost: Option<f64>, cap: Option<f64>) {
        let amount = |v: Option<f64>| v.filter(|c| c.is_finite() && *c >= 0.0);
        match (amount(cost), amount(cap)) {
            (Some(c), _) => self.spent_usd += c,
            (None, Some(cap)) => {
                self.spent_usd += cap;
                self.assumed_usd += cap;
                self.capped += 1;
            }
            (None, None) => self.unreported += 1,
        }
    }

    /// This tally and `other` together.
    pub fn plus(&self, other: &Tally) -> Tally {
        Tally {
            spent_usd: self.spent_usd + other.spent_usd,
            assumed_usd: self.assumed_usd + other.assumed_usd,
            capped: self.capped + other.capped,
            unreported: self.unreported + other.unreported,
        }
    }
}

/// One run's spend, against the campaign's budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// Dollars this run's agents spent, by the rule above (reported costs
    /// and the caps of runs that reported nothing).
    pub spent_usd: f64,
    /// The budget, when there is one: for the campaign, not only this run.
    pub budget_usd: Option<f64>,
    /// This run's agent runs that reported nothing and had no cap.
    pub unreported: u64,
    /// The part of `spent_usd` that is caps of runs that reported nothing.
    #[serde(default)]
    pub assumed_usd: f64,
    /// This run's agent runs that reported nothing and were counted at
    /// their cap.
    #[serde(default)]
    pub capped: u64,
    /// What the campaign had spent before this run.
    #[serde(default)]
    pub before_usd: f64,
}

/// Checks a `--budget-usd` amount: a positive, finite number of dollars.
///
/// # Errors
/// A message naming the amount.
pub fn parse_budget(text: &str) -> Result<f64, String> {
    let amount: f64 = text
        .trim()
        .trim_start_matches('$')
        .parse()
        .map_err(|_| format!("--budget-usd {text:?} is not a number of dollars"))?;
    check_budget(amount).map_err(|_| format!("--budget-usd {text:?} must be more than 0 dollars"))
}

/// Checks a budget given as a number (not through [`parse_budget`]).
///
/// # Errors
/// A message naming the amount.
pub fn check_budget(amount: f64) -> Result<f64, String> {
    if amount.is_finite() && amount > 0.0 {
        Ok(amount)
    } else {
        Err(format!("--budget-usd {amount} must be more than 0 dollars"))
    }
}

impl Spend {
    /// No spend yet, against `budget`.
    pub fn with_budget(budget_usd: Option<f64>) -> Spend {
        Spend {
            budget_usd,
            ..Spend::default()
        }
    }

    /// A run that starts after the campaign spent `before_usd`.
    pub fn carrying(mut self, before_usd: f64) -> Spend {
        self.before_usd = before_usd.max(0.0);
        self
    }

    /// Counts one agent run; see [`Tally::charge`].
    pub fn charge(&mut self, cost: Option<f64>, cap: Option<f64>) {
        let mut tally = self.tally();
        tally.charge(cost, cap);
        self.spent_usd = tally.spent_usd;
        self.assumed_usd = tally.assumed_usd;
        self.capped = tally.capped;
        self.unreported = tally.unreported;
    }

    /// This run's share, as a [`Tally`].
    pub fn tally(&self) -> Tally {
        Tally {
            spent_usd: self.spent_usd,
            assumed_usd: self.assumed_usd,
            capped: self.capped,
            unreported: self.unreported,
        }
    }

    /// What the campaign has spent: before this run and in it.
    pub fn campaign_usd(&self) -> f64 {
        self.before_usd + self.spent_usd
    }

    /// What is left of the budget (never below 0); `None` without one.
    pub fn left(&self) -> Option<f64> {
        self.budget_usd.map(|b| (b - self.campaign_usd()).max(0.0))
    }

    /// Whether the budget is spent: nothing new may start.
    pub fn exhausted(&self) -> bool {
        self.left().is_some_and(|l| l <= 0.0)
    }
}

impl fmt::Display for Spend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.4}", self.campaign_usd())?;
        match self.budget_usd {
            Some(b) => write!(f, " of ${b:.2}")?,
            None => f.write_str(" (no budget)")?,
        }
        if self.before_usd > 0.0 {
            write!(f, " (${:.4} before this run)", self.before_usd)?;
        }
        match self.capped {
            0 => {}
            1 => write!(
                f,
                "; ${:.4} of it is the cap of 1 agent run that reported no cost",
                self.assumed_usd
            )?,
            n => write!(
                f,
                "; ${:.4} of it is the caps of {n} agent runs that reported no cost",
                self.assumed_usd
            )?,
        }
        match self.unreported {
            0 => Ok(()),
            1 => f.write_str("; 1 agent run reported no cost"),
            n => write!(f, "; {n} agent runs reported no cost"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_a_positive_number_of_dollars() {
        assert_eq!(parse_budget("2.5"), Ok(2.5));
        assert_eq!(parse_budget("$10"), Ok(10.0));
        for bad in ["0", "-1", "NaN", "inf", "ten", ""] {
            let err = parse_budget(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert_eq!(check_budget(0.5), Ok(0.5));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(
                check_budget(bad)
                    .unwrap_err()
                    .contains("must be more than 0")
            );
        }
    }

    /// One agent run counted: (reported cost, cap given) → (spent, of it
    /// assumed, runs counted at their cap, runs not reported).
    fn check_charge(cost: Option<f64>, cap: Option<f64>, want: (f64, f64, u64, u64)) {
        let mut t = Tally::default();
        t.charge(cost, cap);
        assert_eq!(
            (t.spent_usd, t.assumed_usd, t.capped, t.unreported),
            want,
            "cost {cost:?}, cap {cap:?}"
        );
    }

    #[test]
    fn a_run_that_reports_nothing_counts_its_cap_if_it_had_one() {
        // Reported: the report counts, whatever the cap.
        check_charge(Some(0.25), None, (0.25, 0.0, 0, 0));
        check_charge(Some(0.25), Some(1.0), (0.25, 0.0, 0, 0));
        check_charge(Some(0.0), Some(1.0), (0.0, 0.0, 0, 0));
        // Nothing reported, a cap given: it may have spent all of it.
        check_charge(None, Some(0.6), (0.6, 0.6, 1, 0));
        check_charge(Some(f64::NAN), Some(0.6), (0.6, 0.6, 1, 0));
        check_charge(Some(-3.0), Some(0.6), (0.6, 0.6, 1, 0));
        // Nothing reported, no cap: not reported, never guessed at.
        check_charge(None, None, (0.0, 0.0, 0, 1));
        check_charge(None, Some(f64::INFINITY), (0.0, 0.0, 0, 1));
        check_charge(Some(f64::NAN), Some(-1.0), (0.0, 0.0, 0, 1));
    }

    #[test]
    fn a_run_continues_from_what_the_campaign_spent() {
        let mut s = Spend::with_budget(Some(2.0)).carrying(1.2);
        assert_eq!(s.left(), Some(0.8));
        s.charge(Some(0.4), Some(0.8));
        assert!((s.left().unwrap() - 0.4).abs() < 1e-9);
        assert_eq!(s.spent_usd, 0.4, "this run's own share");
        assert_eq!(s.to_string(), "$1.6000 of $2.00 ($1.2000 before this run)");
        s.charge(None, Some(0.4));
        assert!(s.exhausted());
        assert_eq!(
            s.to_string(),
            "$2.0000 of $2.00 ($1.2000 before this run); $0.4000 of it is the cap of 1 agent run that reported no cost"
        );
        let before = Tally {
            spent_usd: 1.2,
            assumed_usd: 0.2,
            capped: 1,
            unreported: 2,
        };
        assert_eq!(
            before.plus(&s.tally()),
            Tally {
                spent_usd: 2.0,
                assumed_usd: 0.6000000000000001,
                capped: 2,
                unreported: 2,
            }
        );
    }

    #[test]
    fn only_reported_costs_count_and_the_rest_is_said() {
        let mut s = Spend::with_budget(Some(1.0));
        s.charge(Some(0.25), None);
        s.charge(None, None);
        s.charge(Some(f64::NAN), None);
        s.charge(Some(-3.0), None);
        assert_eq!(s.spent_usd, 0.25);
        assert_eq!(s.unreported, 3);
        assert_eq!(s.left(), Some(0.75));
        assert!(!s.exhausted());
        assert_eq!(
            s.to_string(),
            "$0.2500 of $1.00; 3 agent runs reported no cost"
        );
        s.charge(Some(0.8), None);
        assert_eq!(s.left(), Some(0.0));
        assert!(s.exhausted());
        let free = Spend::with_budget(None);
        assert!(!free.exhausted());
        assert_eq!(free.left(), None);
        assert_eq!(free.to_string(), "$0.0000 (no budget)");
    }
}
