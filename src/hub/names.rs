//! Namespacing of tool and prompt names at `/mcp`.
//!
//! The scheme: `{upstream}__{name}`. Upstream names are `[a-z0-9-]` only (the config refuses
//! anything else, `_` included), so the first `_` of a namespaced name is always the first
//! character of the separator: splitting at the first `__` gives back exactly the upstream and
//! the original name, whatever the original name contains. Two upstreams can therefore never
//! produce the same namespaced name; the collision a single-`_` scheme would have (upstream
//! `a` with tool `b_c` beside upstream `a_b` with tool `c`) cannot be configured, because
//! `a_b` is refused at load. The result stays within the MCP tool-name rules (`[A-Za-z0-9_.-]`,
//! at most 128 characters) when the original name does; a longer result is reported and the
//! tool left out, never truncated.

/// Separator between the upstream name and the original name.
pub const SEP: &str = "__";

/// Longest name the MCP specification allows for tools.
pub const MAX_LEN: usize = 128;

/// Why a name cannot be namespaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The namespaced name would exceed [`MAX_LEN`].
    #[error("namespaced name {0:?} is longer than 128 characters")]
    TooLong(String),
    /// The original name is empty.
    #[error("empty name")]
    Empty,
}

/// `{upstream}__{name}`.
pub fn join(upstream: &str, name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let mut s = String::with_capacity(upstream.len() + SEP.len() + name.len());
    s.push_str(upstream);
    s.push_str(SEP);
    s.push_str(name);
    if s.chars().count() > MAX_LEN {
        return Err(NameError::TooLong(s));
    }
    Ok(s)
}

/// The upstream and original name of a namespaced name, or `None` when it has no separator.
pub fn split(name: &str) -> Option<(&str, &str)> {
    let i = name.find(SEP)?;
    let (upstream, rest) = (&name[..i], &name[i + SEP.len()..]);
    (!upstream.is_empty() && !rest.is_empty()).then_some((upstream, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_single_underscore_collision_cannot_happen() {
        // Upstream "a" with tool "b_c", and (if it could exist) upstream "a_b" with tool "c".
        let x = join("a", "b_c").unwrap();
        assert_eq!(x, "a__b_c");
        assert_eq!(split(&x), Some(("a", "b_c")));
        // "a_b" is not a valid upstream name; had it been, it would still split differently.
        assert_eq!(split("a_b__c"), Some(("a_b", "c")));
        assert_ne!(x, "a_b__c");
    }

    #[test]
    fn names_with_separators_inside_round_trip() {
        for tool in ["x__y", "__lead", "trail__", "_", "a.b-c", "ünï"] {
            let j = join("up-1", tool).unwrap();
            assert_eq!(split(&j), Some(("up-1", tool)), "{j}");
        }
        assert_eq!(split("plain"), None);
        assert_eq!(split("__x"), None);
        assert_eq!(split("x__"), None);
    }

    #[test]
    fn too_long_is_an_error_not_a_truncation() {
        let long = "t".repeat(MAX_LEN);
        assert!(matches!(join("demo", &long), Err(NameError::TooLong(_))));
        let fits = "t".repeat(MAX_LEN - 6);
        assert_eq!(join("demo", &fits).unwrap().len(), MAX_LEN);
        assert_eq!(join("demo", ""), Err(NameError::Empty));
    }

    proptest! {
        #[test]
        fn join_then_split_is_identity(up in "[a-z0-9-]{1,20}", tool in "[A-Za-z0-9_.-]{1,60}") {
            let j = join(&up, &tool).unwrap();
            prop_assert_eq!(split(&j), Some((up.as_str(), tool.as_str())));
        }

        #[test]
        fn distinct_pairs_never_collide(
            a in "[a-z0-9-]{1,8}", b in "[a-z0-9-]{1,8}",
            x in "[A-Za-z0-9_]{1,12}", y in "[A-Za-z0-9_]{1,12}",
        ) {
            prop_assume!((a.as_str(), x.as_str()) != (b.as_str(), y.as_str()));
            prop_assert_ne!(join(&a, &x).unwrap(), join(&b, &y).unwrap());
        }
    }
}
