//! Issue 10, point 7 (first half): a superseded update is declined by itself once its
//! successor is installed wherever it was needed. Pure: the caller reads the states.

use patchday_types::{HostId, UpdateState};
use std::collections::HashMap;

/// How many hosts needed `old`, when every one of them has its successor installed;
/// `None` while one still lacks it (or no host ever needed `old`).
pub fn successor_everywhere(
    old: &[(HostId, UpdateState)],
    successor: &[(HostId, UpdateState)],
) -> Option<usize> {
    let new: HashMap<&HostId, UpdateState> = successor.iter().map(|(h, s)| (h, *s)).collect();
    let needed: Vec<&HostId> = old
        .iter()
        .filter(|(_, s)| {
            !matches!(
                s,
                UpdateState::NotApplicable
                    | UpdateState::Declined
                    | UpdateState::Removed
                    | UpdateState::RemoveFailed
            )
        })
        .map(|(h, _)| h)
        .collect();
    let done = needed
        .iter()
        .all(|h| new.get(h) == Some(&UpdateState::Installed));
    (done && !needed.is_empty()).then_some(needed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use UpdateState as S;

    fn h(n: &str) -> HostId {
        HostId::new(n).unwrap()
    }

    #[test]
    fn declined_only_when_every_host_that_needed_it_has_the_successor() {
        let old = vec![
            (h("a"), S::Superseded),
            (h("b"), S::Needed),
            (h("c"), S::NotApplicable),
        ];
        let partly = vec![(h("a"), S::Installed), (h("b"), S::Approved)];
        assert_eq!(successor_everywhere(&old, &partly), None);
        let pending = vec![(h("a"), S::Installed), (h("b"), S::InstalledPendingReboot)];
        assert_eq!(
            successor_everywhere(&old, &pending),
            None,
            "back from the reboot first"
        );
        let all = vec![(h("a"), S::Installed), (h("b"), S::Installed)];
        assert_eq!(successor_everywhere(&old, &all), Some(2));
    }

    #[test]
    fn an_update_no_host_needed_is_left_alone() {
        assert_eq!(successor_everywhere(&[], &[(h("a"), S::Installed)]), None);
        assert_eq!(
            successor_everywhere(&[(h("a"), S::NotApplicable)], &[]),
            None
        );
    }
}
