//! What a run spent, against its budget (`afk run --budget-usd`).
//!
//! Only a cost an agent reports is counted (claude's `total_cost_usd`); a run
//! that reports none is counted as such, never guessed at.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One run's spend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// Dollars the agents reported spending.
    pub spent_usd: f64,
    /// The budget, when there is one.
    pub budget_usd: Option<f64>,
    /// Agent runs that ended without reporting a cost.
    pub unreported: u64,
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

    /// Counts one agent run's reported cost (`None`: it reported none). A
    /// cost that is not a finite amount of at least 0 counts as unreported.
    pub fn charge(&mut self, cost: Option<f64>) {
        match cost.filter(|c| c.is_finite() && *c >= 0.0) {
            Some(c) => self.spent_usd += c,
            None => self.unreported += 1,
        }
    }

    /// What is left of the budget (never below 0); `None` without one.
    pub fn left(&self) -> Option<f64> {
        self.budget_usd.map(|b| (b - self.spent_usd).max(0.0))
    }

    /// Whether the budget is spent: nothing new may start.
    pub fn exhausted(&self) -> bool {
        self.left().is_some_and(|l| l <= 0.0)
    }
}

impl fmt::Display for Spend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.4}", self.spent_usd)?;
        match self.budget_usd {
            Some(b) => write!(f, " of ${b:.2}")?,
            None => f.write_str(" (no budget)")?,
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

    #[test]
    fn only_reported_costs_count_and_the_rest_is_said() {
        let mut s = Spend::with_budget(Some(1.0));
        s.charge(Some(0.25));
        s.charge(None);
        s.charge(Some(f64::NAN));
        s.charge(Some(-3.0));
        assert_eq!(s.spent_usd, 0.25);
        assert_eq!(s.unreported, 3);
        assert_eq!(s.left(), Some(0.75));
        assert!(!s.exhausted());
        assert_eq!(
            s.to_string(),
            "$0.2500 of $1.00; 3 agent runs reported no cost"
        );
        s.charge(Some(0.8));
        assert_eq!(s.left(), Some(0.0));
        assert!(s.exhausted());
        let free = Spend::with_budget(None);
        assert!(!free.exhausted());
        assert_eq!(free.left(), None);
        assert_eq!(free.to_string(), "$0.0000 (no budget)");
    }
}
