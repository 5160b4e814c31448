//! Name lists as help texts and error messages write them, so each table of names (losses, threshold modes) is
//! typed once and every message follows it.

/// `a, b or c`.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// The canonical name of `name`: itself when it is in `names`, else the name it is an alias of.
pub fn canonical(
    name: &str,
    names: &[&'static str],
    aliases: &[(&str, &'static str)],
) -> Option<&'static str> {
    names
        .iter()
        .copied()
        .find(|n| *n == name)
        .or_else(|| aliases.iter().find(|(a, _)| *a == name).map(|(_, n)| *n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_prose() {
        assert_eq!(one_of(&["a"]), "a");
        assert_eq!(one_of(&["a", "b", "c"]), "a, b or c");
        assert_eq!(canonical("x", &["a"], &[("x", "a")]), Some("a"));
        assert_eq!(canonical("y", &["a"], &[("x", "a")]), None);
    }
}
