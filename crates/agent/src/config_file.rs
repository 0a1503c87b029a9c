//! Issue 11, point 7: `--config FILE` for `patchday-agent` and `patchday server`.
//!
//! The file is TOML whose keys are the command's long flags with `_` or `-`
//! (`catalog_root = "/etc/patchday/root.json"`, `interval = 3600`, `dpkg-arg = [...]`).
//! The keys are read from the clap definition itself, so every flag has a key and a new
//! flag gets one without anyone remembering to; a key that is not a flag is an error
//! that lists the valid keys (what serde's `deny_unknown_fields` would do, without a
//! second list of fields to keep in step). Each value goes through the flag's own parser.
//! Precedence: flags, then environment (`PATCHDAY_SERVER`, ...), then the file.

use anyhow::Context;
use std::ffi::OsString;
use std::path::Path;

/// The flag that names the file.
const CONFIG: &str = "config";

/// `argv` with the settings of the `--config` file put in front of the command's own
/// flags, when `argv` runs the subcommand `path` of `cmd` (an empty path: `cmd` itself)
/// and has `--config FILE`; otherwise `argv` unchanged.
pub fn expand(
    cmd: &clap::Command,
    argv: Vec<OsString>,
    path: &[&str],
) -> anyhow::Result<Vec<OsString>> {
    // The subcommand's definition, and where its own arguments start in argv.
    let mut sub = cmd.clone();
    for (i, name) in path.iter().enumerate() {
        if argv.get(i + 1).and_then(|a| a.to_str()) != Some(*name) {
            return Ok(argv);
        }
        sub = match sub.find_subcommand(name) {
            Some(s) => s.clone(),
            None => return Ok(argv),
        };
    }
    let start = path.len() + 1;
    let Some(file) = flag_value(&argv[start.min(argv.len())..], CONFIG) else {
        return Ok(argv);
    };
    let from_file = file_args(&sub, &argv[start.min(argv.len())..], Path::new(&file))?;
    let mut out: Vec<OsString> = argv[..start.min(argv.len())].to_vec();
    out.extend(from_file);
    out.extend(argv[start.min(argv.len())..].iter().cloned());
    Ok(out)
}

/// The value of `--NAME VALUE` or `--NAME=VALUE` in `args`.
fn flag_value(args: &[OsString], name: &str) -> Option<OsString> {
    let long = format!("--{name}");
    let eq = format!("--{name}=");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            return None;
        }
        if s == long {
            return it.next().cloned();
        }
        if let Some(v) = s.strip_prefix(&eq) {
            return Some(v.into());
        }
    }
    None
}

/// Whether the command line or the environment already sets `arg`.
fn given(arg: &clap::Arg, args: &[OsString]) -> bool {
    let Some(long) = arg.get_long() else {
        return false;
    };
    let on_line = args.iter().any(|a| {
        let s = a.to_string_lossy();
        s == format!("--{long}") || s.starts_with(&format!("--{long}="))
    });
    let in_env = arg
        .get_env()
        .is_some_and(|e| std::env::var_os(e).is_some_and(|v| !v.is_empty()));
    on_line || in_env
}

/// The flags the file stands for, checked against `cmd`'s definition.
fn file_args(cmd: &clap::Command, args: &[OsString], file: &Path) -> anyhow::Result<Vec<OsString>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the config file {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    let settable: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| {
            a.get_long()
                .is_some_and(|l| !matches!(l, "help" | "version" | CONFIG))
        })
        .collect();
    let mut out = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let Some(arg) = settable
            .iter()
            .find(|a| a.get_long() == Some(long.as_str()))
        else {
            let mut keys: Vec<String> = settable
                .iter()
                .filter_map(|a| a.get_long())
                .map(|l| l.replace('-', "_"))
                .collect();
            keys.sort();
            anyhow::bail!(
                "{}: unknown key {key:?}; the keys are the flags of `{}`: {}",
                file.display(),
                cmd.get_name(),
                keys.join(", ")
            );
        };
        if given(arg, args) {
            continue; // flags and the environment override the file
        }
        let flag = OsString::from(format!("--{long}"));
        let takes_value = arg.get_action().takes_values();
        let scalar = |v: &toml::Value| -> anyhow::Result<String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                toml::Value::Datetime(d) => Ok(d.to_string()),
                _ => anyhow::bail!(
                    "{}: {key} takes a string, number or boolean (a list for a repeatable flag)",
                    file.display()
                ),
            }
        };
        match (&value, takes_value) {
            (toml::Value::Boolean(b), false) => {
                if *b {
                    out.push(flag);
                }
            }
            (_, false) => anyhow::bail!(
                "{}: {key} is a switch: write {key} = true or false",
                file.display()
            ),
            (toml::Value::Array(items), true) => {
                for v in items {
                    out.push(flag.clone());
                    out.push(scalar(v)?.into());
                }
            }
            (v, true) => {
                out.push(flag);
                out.push(scalar(v)?.into());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Demo {
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        #[arg(long)]
        server: Option<String>,
        #[arg(long, default_value_t = 3600)]
        interval: u64,
        #[arg(long)]
        once: bool,
        #[arg(long = "dpkg-arg", allow_hyphen_values = true)]
        dpkg_args: Vec<String>,
    }

    fn argv(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_keys_are_flags_flags_override_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("agent.toml");
        std::fs::write(
            &f,
            "server = \"https://a.example\"\ninterval = 60\nonce = true\ndpkg_arg = [\"--force-confold\", \"--no-triggers\"]\n",
        )
        .unwrap();
        let p = f.to_str().unwrap();
        let args = expand(&Demo::command(), argv(&["agent", "--config", p]), &[]).unwrap();
        let d = Demo::try_parse_from(args).unwrap();
        assert_eq!(d.server.as_deref(), Some("https://a.example"));
        assert_eq!(d.interval, 60);
        assert!(d.once);
        assert_eq!(d.dpkg_args, ["--force-confold", "--no-triggers"]);

        let args = expand(
            &Demo::command(),
            argv(&[
                "agent",
                "--interval=5",
                "--config",
                p,
                "--server",
                "https://b.example",
            ]),
            &[],
        )
        .unwrap();
        let d = Demo::try_parse_from(args).unwrap();
        assert_eq!(
            d.server.as_deref(),
            Some("https://b.example"),
            "the flag wins"
        );
        assert_eq!(d.interval, 5);

        std::fs::write(&f, "server = \"x\"\nintervall = 60\n").unwrap();
        let e = expand(&Demo::command(), argv(&["agent", "--config", p]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key \"intervall\""), "{e}");
        assert!(e.contains("dpkg_arg, interval, once, server"), "{e}");

        std::fs::write(&f, "once = \"yes\"\n").unwrap();
        let e = expand(&Demo::command(), argv(&["agent", "--config", p]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("once is a switch"), "{e}");
        // A bad value is refused by the flag's own parser.
        std::fs::write(&f, "interval = \"soon\"\n").unwrap();
        let args = expand(&Demo::command(), argv(&["agent", "--config", p]), &[]).unwrap();
        assert!(Demo::try_parse_from(args).is_err());
    }

    #[test]
    fn without_config_or_for_another_subcommand_argv_is_unchanged() {
        let cmd = clap::Command::new("patchday")
            .subcommand(Demo::command().name("server"))
            .subcommand(clap::Command::new("report"));
        let a = argv(&["patchday", "report", "--config", "/nonexistent"]);
        assert_eq!(expand(&cmd, a.clone(), &["server"]).unwrap(), a);
        let a = argv(&["patchday", "server", "--once"]);
        assert_eq!(expand(&cmd, a.clone(), &["server"]).unwrap(), a);
    }
}
