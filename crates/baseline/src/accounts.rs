//! The host's local users and groups, read from `<root>/etc/passwd` and `<root>/etc/group`,
//! to turn the names a policy uses into the ids nftables matches.

use crate::{BaselineError, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Local user and group names with their ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    /// User name → uid.
    pub users: BTreeMap<String, u32>,
    /// Group name → gid.
    pub groups: BTreeMap<String, u32>,
}

impl Accounts {
    /// Reads the accounts of the system at `root` (files only; NSS sources such as LDAP
    /// are not consulted: use numeric ids for those).
    pub fn read(root: &Path) -> Result<Accounts> {
        let read = |rel: &str| {
            std::fs::read_to_string(root.join(rel)).map_err(|e| {
                BaselineError::Host(format!("cannot read {}: {e}", root.join(rel).display()))
            })
        };
        Ok(Accounts::parse(&read("etc/passwd")?, &read("etc/group")?))
    }

    /// Parses the text of `passwd` and `group` (`name:x:id:...`); malformed lines are skipped.
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        let ids = |text: &str| {
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let id = f.nth(1)?.parse::<u32>().ok()?;
                    (!name.is_empty() && !name.starts_with('#')).then(|| (name.to_owned(), id))
                })
                .collect()
        };
        Accounts {
            users: ids(passwd),
            groups: ids(group),
        }
    }

    /// The uid of a user name (or a number given as is).
    pub fn uid(&self, user: &str) -> Result<u32> {
        lookup(&self.users, user, "user", "/etc/passwd")
    }

    /// The gid of a group name (or a number given as is).
    pub fn gid(&self, group: &str) -> Result<u32> {
        lookup(&self.groups, group, "group", "/etc/group")
    }
}

fn lookup(map: &BTreeMap<String, u32>, name: &str, what: &str, file: &str) -> Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    map.get(name).copied().ok_or_else(|| {
        BaselineError::Host(format!(
            "the policy names {what} {name:?}, which this host's {file} does not have; create it, or use its numeric id"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let a = Accounts::parse(
            "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nbroken\n",
            "root:x:0:\ndev:x:1001:alice,bob\n",
        );
        assert_eq!(a.uid("www-data").unwrap(), 33);
        assert_eq!(a.uid("4242").unwrap(), 4242);
        assert_eq!(a.gid("dev").unwrap(), 1001);
        let e = a.gid("ops").unwrap_err().to_string();
        assert!(e.contains("\"ops\"") && e.contains("numeric id"), "{e}");
    }
}
