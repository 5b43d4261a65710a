//! What one row may hold: a cell (its title above all) is one line of a
//! table, and it reaches the agent's environment.

use checklist::sut::Item;

/// The most bytes one cell of a row may hold: a title (or any cell) is one
/// line of a table, and it reaches the agent's environment
/// (`AFK_ITEM_TITLE`), where Linux takes at most 128 KiB per variable.
pub const CELL_CAP: usize = 4096;

/// Why a row cannot be run as it is: a cell over [`CELL_CAP`]; `None` when
/// every cell fits.
pub fn oversized_cell(item: &Item) -> Option<String> {
    let named = [
        ("Title", item.title.as_str()),
        ("Priority", item.priority.as_str()),
        ("Risk", item.risk.as_str()),
        ("Industry", item.industry.as_deref().unwrap_or("")),
        ("Deployment", item.deployment.as_deref().unwrap_or("")),
    ];
    let extra = item.extra.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    named
        .into_iter()
        .chain(extra)
        .find(|(_, v)| v.len() > CELL_CAP)
        .map(|(name, v)| {
            format!(
                "its {name} cell is {} bytes, over the cap of {CELL_CAP} bytes for one cell: shorten it",
                v.len()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_with_a_cell_over_the_cap_is_named() {
        let big = "x".repeat(CELL_CAP + 1);
        let fits = "x".repeat(CELL_CAP);
        for (cells, want) in [
            (("t", "P1", "r", ""), None),
            ((fits.as_str(), "P1", "r", ""), None),
            (
                (big.as_str(), "P1", "r", ""),
                Some(
                    "its Title cell is 4097 bytes, over the cap of 4096 bytes for one cell: shorten it",
                ),
            ),
            (
                (fits.as_str(), "P1", big.as_str(), ""),
                Some("its Risk cell"),
            ),
            (("t", "P1", "r", big.as_str()), Some("its Owner cell")),
        ] {
            let (title, priority, risk, owner) = cells;
            let text = format!(
                "## Tier 1: t\n\n| Status | ID | Title | Priority | Risk | Owner |\n|---|---|---|---|---|---|\n| ☐ | X-1 | {title} | {priority} | {risk} | {owner} |\n"
            );
            let (c, d) = checklist::sut::parse(&text);
            assert!(d.is_empty(), "{d:?}");
            let got = oversized_cell(&c.items[0]);
            match want {
                None => assert_eq!(got, None),
                Some(part) => assert!(
                    got.as_deref().is_some_and(|g| g.starts_with(part)),
                    "{got:?}"
                ),
            }
        }
    }
}
