//! Running helper programs: spawn errors, bounded waits, readable failures.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::LabError;

/// The effective uid of this process (the owner of `/proc/self`).
pub(crate) fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// The program name of a command, for messages.
pub(crate) fn program_name(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

/// Run to completion, capturing output; only a failure to start is an error.
pub(crate) fn output(cmd: &mut Command) -> Result<Output, LabError> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            program: program_name(cmd),
            source,
        })
}

/// Run to completion and turn a non-zero exit into `CommandFailed` saying `what`.
pub(crate) fn checked(
    cmd: &mut Command,
    what: impl FnOnce() -> String,
) -> Result<Output, LabError> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(failed(what(), &out))
    }
}

/// A `CommandFailed` built from a finished program's status and output.
pub(crate) fn failed(what: String, out: &Output) -> LabError {
    LabError::CommandFailed {
        what,
        status: status_text(out.status),
        detail: tail(out),
    }
}

fn status_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// The last lines of stderr and stdout, enough to see what went wrong.
pub(crate) fn tail(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push_str(" | stdout: ");
        }
        text.push_str(stdout.trim());
    }
    const MAX: usize = 2000;
    if text.len() > MAX {
        let mut cut = text.len() - MAX;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = format!("...{}", &text[cut..]);
    }
    if text.is_empty() {
        "no output".to_string()
    } else {
        text
    }
}

/// Run with a time limit; on expiry kill the program and return `Timeout`.
pub(crate) fn output_within(
    cmd: &mut Command,
    limit: Duration,
    what: &str,
) -> Result<Output, LabError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            program: program_name(cmd),
            source,
        })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= limit => {
                kill(&mut child);
                return Err(LabError::Timeout {
                    what: what.to_string(),
                    seconds: limit.as_secs(),
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(25)),
            Err(source) => {
                kill(&mut child);
                return Err(LabError::Spawn {
                    program: program_name(cmd),
                    source,
                });
            }
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn kill(child: &mut Child) {
    // Already exited or not ours any more: nothing else to do.
    let _ = child.kill();
    let _ = child.wait();
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error just truncates what we show.
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}
