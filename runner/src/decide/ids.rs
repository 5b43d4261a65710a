//! Row ids: each names a directory (`runs/<tier>/<id>/`) and a table cell.

/// Whether an item id is safe as a directory name and a table cell.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Why a row's id cannot name its run directory (`runs/<tier>/<id>/`), if
/// it cannot: an id must be one safe path component.
pub fn unsafe_id(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("it is empty")
    } else if id.chars().count() > 100 {
        Some("it is over 100 characters")
    } else if id == "." || id == ".." {
        Some("it names a directory itself")
    } else if id.contains('/') || id.contains('\\') {
        Some("it holds a path separator")
    } else if id.chars().any(char::is_control) {
        Some("it holds a control character")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_must_be_one_safe_path_component() {
        for id in ["CORE-001", "sec.2", "x y", "É-1"] {
            assert_eq!(unsafe_id(id), None, "{id}");
        }
        for (id, why) in [
            ("", "empty"),
            ("..", "directory itself"),
            (".", "directory itself"),
            ("../../../x", "path separator"),
            ("a\\b", "path separator"),
            ("a\0b", "control character"),
            ("a\nb", "control character"),
        ] {
            assert!(unsafe_id(id).is_some_and(|w| w.contains(why)), "{id:?}");
        }
        assert!(unsafe_id(&"x".repeat(101)).is_some());
    }
}
