//! What one tick came to: its report and the request budget it saw, for its
//! summary line and its metrics.

use afk_loop::TickReport;

/// What one tick came to, for its summary line.
#[derive(Debug)]
pub struct TickRun {
    /// The tick's report.
    pub report: TickReport,
    /// Requests made.
    pub api_calls: u64,
    /// The REST budget left, as last reported.
    pub rate_limit_remaining: Option<u64>,
    /// The GraphQL budget, as last reported.
    pub rate_budget: Option<afk_core::ports::RateBudget>,
    /// Whose budget the tick spent: `app` (a GitHub App's installation)
    /// or `token` (a personal token's owner); `None` when nothing ran.
    pub github_budget: Option<&'static str>,
}
