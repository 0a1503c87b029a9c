//! Issue 14, point 4: the milter between a real Postfix and a real clamd (both from
//! Debian's packages, each a throwaway instance in a temporary directory), with messages
//! sent over SMTP: every verdict, the quarantine and its release, and nothing lost when
//! clamd or the milter is down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use patchday_lab::{require, Requirement};
use patchday_milter::samples::{self, Attachment};
use patchday_testkit::{Bins, Catalog, Server};

use crate::support::clamd::Clamd;

const PATIENCE: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `patchday milter run`.
struct Milter {
    child: Child,
}

impl Milter {
    fn start(dir: &Path, port: u16, clamd_socket: &Path, server: &Server) -> Milter {
        let mut child = Command::new(env!("CARGO_BIN_EXE_patchday"))
            .args(["milter", "run", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--server", &server.url, "--token", server.admin.trim()])
            .arg("--policy")
            .arg(dir.join("policy.toml"))
            .arg("--clamd")
            .arg(format!("unix:{}", clamd_socket.display()))
            .args(["--clamd-timeout", "30"])
            .arg("--quarantine")
            .arg(dir.join("quarantine"))
            .arg("--log")
            .arg(dir.join("verdicts.jsonl"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("milter.stderr")).unwrap())
            .spawn()
            .unwrap();
        wait_for("the milter to listen", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the milter exited ({status}): {}",
                    std::fs::read_to_string(dir.join("milter.stderr")).unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Milter { child }
    }
}

impl Drop for Milter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway Postfix: its own config and queue directory, smtpd on 127.0.0.1:`port`,
/// the milter as smtpd_milters, virtual delivery into maildirs under `dir/mail`.
struct Postfix {
    conf: PathBuf,
    mail: PathBuf,
}

fn id_of(flag: &str) -> String {
    let out = Command::new("id").args([flag, "postfix"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Postfix {
    fn start(dir: &Path, port: u16, milter_port: u16) -> Postfix {
        let conf = dir.join("postfix");
        let mail = dir.join("mail");
        let data = dir.join("postfix-data");
        let queue = dir.join("postfix-queue");
        for d in [&conf, &mail, &data, &queue] {
            std::fs::create_dir_all(d).unwrap();
        }
        let (uid, gid) = (id_of("-u"), id_of("-g"));
        for d in [&mail, &data] {
            let ok = Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(d)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let d = dir.display();
        std::fs::write(
            conf.join("main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {d}/postfix-queue\n\
                 data_directory = {d}/postfix-data\n\
                 mail_owner = postfix\n\
                 setgid_group = postdrop\n\
                 myhostname = mx.patchday.test\n\
                 mydomain = patchday.test\n\
                 mydestination =\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 mynetworks = 127.0.0.0/8\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
                 virtual_mailbox_domains = acme.example, globex.example\n\
                 virtual_mailbox_base = {d}/mail\n\
                 virtual_mailbox_maps = static:inbox/\n\
                 virtual_uid_maps = static:{uid}\n\
                 virtual_gid_maps = static:{gid}\n\
                 alias_maps =\n\
                 alias_database =\n\
                 biff = no\n\
                 smtputf8_enable = no\n\
                 maillog_file_prefixes = {d}\n\
                 maillog_file = {d}/maillog\n\
                 smtpd_milters = inet:127.0.0.1:{milter_port}\n\
                 milter_default_action = tempfail\n\
                 milter_protocol = 6\n"
            ),
        )
        .unwrap();
        std::fs::write(
            conf.join("master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd\n\
                 pickup unix n - n 60 1 pickup\n\
                 cleanup unix n - n - 0 cleanup\n\
                 qmgr unix n - n 300 1 qmgr\n\
                 rewrite unix - - n - - trivial-rewrite\n\
                 bounce unix - - n - 0 bounce\n\
                 defer unix - - n - 0 bounce\n\
                 trace unix - - n - 0 bounce\n\
                 verify unix - - n - 1 verify\n\
                 flush unix n - n 1000? 0 flush\n\
                 proxymap unix - - n - - proxymap\n\
                 smtp unix - - n - - smtp\n\
                 showq unix n - n - - showq\n\
                 error unix - - n - - error\n\
                 retry unix - - n - - error\n\
                 discard unix - - n - - discard\n\
                 virtual unix - n n - - virtual\n\
                 anvil unix - - n - 1 anvil\n\
                 scache unix - - n - 1 scache\n\
                 postlog unix-dgram n - n - 1 postlogd\n"
            ),
        )
        .unwrap();
        let out = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(&conf)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postfix start: {}{} (maillog: {})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("maillog")).unwrap_or_default()
        );
        let postfix = Postfix { conf, mail };
        wait_for("Postfix's smtpd to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        postfix
    }

    /// Delivered messages, oldest first.
    fn delivered(&self) -> Vec<Vec<u8>> {
        let new = self.mail.join("inbox/new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(new)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .output();
    }
}

/// One SMTP transaction; the server's answer to the end of DATA (where the milter speaks).
fn send(port: u16, from: &str, to: &str, message: &[u8]) -> (u16, String) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let reply = |reader: &mut BufReader<TcpStream>| -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.len() >= 4, "short SMTP reply {line:?}");
            text.push_str(line[4..].trim_end());
            text.push(' ');
            if line.as_bytes()[3] == b' ' {
                return (line[..3].parse().unwrap(), text.trim().to_string());
            }
        }
    };
    let greeting = reply(&mut reader);
    assert_eq!(greeting.0, 220, "{greeting:?}");
    // Postfix answers a missing milter already here (4xx): that answer is the result.
    for (cmd, expect) in [
        ("EHLO client.patchday.test".to_string(), 250),
        (format!("MAIL FROM:<{from}>"), 250),
        (format!("RCPT TO:<{to}>"), 250),
        ("DATA".to_string(), 354),
    ] {
        writer.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let answer = reply(&mut reader);
        if answer.0 != expect {
            let _ = writer.write_all(b"QUIT\r\n");
            return answer;
        }
    }
    let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
    for line in text.lines() {
        let stuffed = if line.starts_with('.') { "." } else { "" };
        writer
            .write_all(format!("{stuffed}{line}\r\n").as_bytes())
            .unwrap();
    }
    writer.write_all(b".\r\n").unwrap();
    let answer = reply(&mut reader);
    let _ = writer.write_all(b"QUIT\r\n");
    answer
}

fn verdicts(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("verdicts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Sends and checks the SMTP answer's class, its text, and the logged verdict.
fn expect(
    dir: &Path,
    port: u16,
    to: &str,
    message: &[u8],
    class: u16,
    says: &str,
    verdict: &str,
) -> serde_json::Value {
    let before = verdicts(dir).len();
    let (code, text) = send(port, "sender@outside.example", to, message);
    assert_eq!(code / 100, class, "{code} {text}");
    assert!(text.contains(says), "{code} {text:?} should say {says:?}");
    wait_for("the verdict in the log", || verdicts(dir).len() > before);
    let last = verdicts(dir).pop().unwrap();
    assert_eq!(last["verdict"], verdict, "{last}");
    last
}

fn normalized(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "\n")
}

#[test]
fn postfix_and_clamd_give_every_verdict_and_lose_nothing() {
    if !require(Requirement::POSTFIX) || !require(Requirement::CLAMD) || !require(Requirement::Root)
    {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("patchday-milter-")
        .tempdir_in("/tmp")
        .unwrap();
    // PATCHDAY_KEEP_TEST_DIR=1 keeps Postfix's maillog, clamd's log and the milter's.
    let dir = if std::env::var_os("PATCHDAY_KEEP_TEST_DIR").is_some() {
        dir.keep()
    } else {
        dir.path().to_path_buf()
    };
    let dir = dir.as_path();
    // Postfix's daemons run as `postfix` and must reach their queue below it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        r#"
        [[tenant]]
        name = "acme"
        domains = ["acme.example"]
        macros = "quarantine"
        encrypted_archives = "reject"
        max_expanded_bytes = 8388608

        [[tenant]]
        name = "globex"
        domains = ["globex.example"]
        macros = "reject"
        "#,
    )
    .unwrap();

    // The Patchday server the milter reports its verdicts to.
    let bins = Bins::new(env!("CARGO_BIN_EXE_patchday"));
    let cat = Catalog::new(&bins, dir);
    let server = Server::start(&bins, dir, &cat.root());
    server.cli(&["tenant", "create", "acme"]);
    server.cli(&["tenant", "create", "globex"]);

    let clamd = Clamd::start(dir);
    let (milter_port, smtp_port) = (free_port(), free_port());
    let mut milter = Milter::start(dir, milter_port, &clamd.socket, &server);
    let postfix = Postfix::start(dir, smtp_port, milter_port);
    let msg = |subject: &str, to: &str, name: &str, ct: &str, bytes: &[u8]| {
        samples::message(
            "sender@outside.example",
            to,
            subject,
            "Please see the attachment.",
            &[Attachment {
                name,
                content_type: ct,
                bytes,
            }],
        )
    };
    let acme = "bob@acme.example";

    // A clean message is delivered, its body intact.
    let notes = samples::zip(&[("notes.txt", b"quarterly numbers")]).unwrap();
    let clean = samples::message(
        "sender@outside.example",
        acme,
        "clean",
        "Two harmless files.",
        &[
            Attachment {
                name: "report.pdf",
                content_type: "application/pdf",
                bytes: &samples::pdf(),
            },
            Attachment {
                name: "notes.zip",
                content_type: "application/zip",
                bytes: &notes,
            },
        ],
    );
    let v = expect(dir, smtp_port, acme, &clean, 2, "", "accept");
    assert_eq!(v["tenants"], serde_json::json!(["acme"]));
    wait_for("the clean message in the mailbox", || {
        postfix.delivered().len() == 1
    });
    let body_start = normalized(&clean).find("\n\n").unwrap();
    let sent_body = &normalized(&clean)[body_start..];
    assert!(
        normalized(&postfix.delivered()[0]).ends_with(sent_body),
        "the delivered message's body differs from the one sent"
    );

    // The EICAR file: clamd's hash signature, rejected with the signature's name.
    expect(
        dir,
        smtp_port,
        acme,
        &msg(
            "eicar",
            acme,
            "eicar.com",
            "application/octet-stream",
            &samples::eicar(),
        ),
        5,
        "Patchday.Test.EICAR",
        "reject",
    );
    // The test sample: clamd's body signature.
    let sample = format!("log excerpt\n{}\nend\n", samples::TEST_SAMPLE_MARKER);
    expect(
        dir,
        smtp_port,
        acme,
        &msg("sample", acme, "log.txt", "text/plain", sample.as_bytes()),
        5,
        "Patchday.Test.Sample",
        "reject",
    );
    // A real executable named invoice.pdf: refused by content, before clamd.
    let elf = std::fs::read("/bin/true").unwrap();
    expect(
        dir,
        smtp_port,
        acme,
        &msg("invoice", acme, "invoice.pdf", "application/pdf", &elf),
        5,
        "invoice.pdf is a blocked type (elf)",
        "reject",
    );
    // A zip bomb: 64 MiB of zeros against an 8 MiB budget.
    let bomb = samples::zip_bomb(64 << 20).unwrap();
    expect(
        dir,
        smtp_port,
        acme,
        &msg("bomb", acme, "photos.zip", "application/zip", &bomb),
        5,
        "archive bomb",
        "reject",
    );
    // An encrypted archive: acme's policy rejects what nobody can look into.
    expect(
        dir,
        smtp_port,
        acme,
        &msg(
            "secret",
            acme,
            "secret.zip",
            "application/zip",
            &samples::encrypted_zip().unwrap(),
        ),
        5,
        "secret.zip/secret.txt is encrypted",
        "reject",
    );
    // A macro document: globex rejects it; acme quarantines it (the sender sees success).
    let docm = samples::docm_with_macros().unwrap();
    let globex = "carol@globex.example";
    expect(
        dir,
        smtp_port,
        globex,
        &msg(
            "macro",
            globex,
            "report.docm",
            "application/vnd.ms-word.document.macroEnabled.12",
            &docm,
        ),
        5,
        "report.docm is an Office document with macros",
        "reject",
    );
    let held = msg(
        "macro",
        acme,
        "report.docm",
        "application/vnd.ms-word.document.macroEnabled.12",
        &docm,
    );
    let v = expect(dir, smtp_port, acme, &held, 2, "", "quarantine");
    let id = v["quarantine_id"].as_str().unwrap().to_string();
    assert!(dir.join("quarantine").join(format!("{id}.eml")).exists());
    let listed = Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["milter", "list", "--quarantine"])
        .arg(dir.join("quarantine"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    assert_eq!(
        postfix.delivered().len(),
        1,
        "a quarantined message was delivered"
    );
    // Released through Postfix's sendmail, it reaches the mailbox (not held again).
    let released = Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["milter", "release", &id, "--quarantine"])
        .arg(dir.join("quarantine"))
        .arg("--postfix-config")
        .arg(&postfix.conf)
        .output()
        .unwrap();
    assert!(
        released.status.success(),
        "release: {}",
        String::from_utf8_lossy(&released.stderr)
    );
    wait_for("the released message in the mailbox", || {
        postfix.delivered().len() == 2
    });
    let held_body = &normalized(&held)[normalized(&held).find("\n\n").unwrap()..];
    // Maildir names sort by second, then device and inode: two messages delivered in one
    // second come in either order.
    assert!(postfix
        .delivered()
        .iter()
        .any(|m| normalized(m).ends_with(held_body)));
    assert!(dir
        .join("quarantine/released")
        .join(format!("{id}.eml"))
        .exists());

    // clamd down: a clean message is tempfailed (4xx), so it stays with the sender ...
    let later = msg(
        "later",
        acme,
        "report.pdf",
        "application/pdf",
        &samples::pdf(),
    );
    let (conf, socket) = clamd.stop();
    expect(
        dir,
        smtp_port,
        acme,
        &later,
        4,
        "virus scan unavailable",
        "tempfail",
    );
    // ... and is delivered when the sender tries again after clamd is back.
    let _clamd = Clamd::start_with(conf, socket);
    expect(dir, smtp_port, acme, &later, 2, "", "accept");
    wait_for("the retried message in the mailbox", || {
        postfix.delivered().len() == 3
    });

    // The verdicts are reported in the background after Postfix has its answer; the
    // milter is killed below only once they are on the server (a verdict decided in the
    // instant before a SIGKILL is in the milter's own log, not necessarily on the server).
    let on_server = || {
        let (status, body) =
            server.http_get("/v1/tenants/acme/mail/verdicts", Some(server.admin.trim()));
        status == 200
            && serde_json::from_str::<Vec<serde_json::Value>>(&body).map_or(0, |v| v.len()) == 9
    };
    wait_for(
        "the verdicts on the server before the milter goes",
        on_server,
    );

    // The milter down: Postfix tempfails too (milter_default_action = tempfail).
    milter.child.kill().unwrap();
    milter.child.wait().unwrap();
    let (code, text) = send(smtp_port, "sender@outside.example", acme, &later);
    assert_eq!(code / 100, 4, "{code} {text}");
    assert_eq!(postfix.delivered().len(), 3);

    // Every verdict reached the server, each under its tenant.
    let reported = |tenant: &str| -> Vec<serde_json::Value> {
        let (status, body) = server.http_get(
            &format!("/v1/tenants/{tenant}/mail/verdicts"),
            Some(server.admin.trim()),
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    wait_for("the verdicts on the server", || reported("acme").len() == 9);
    let kinds: Vec<String> = reported("acme")
        .iter()
        .map(|v| v["verdict"].as_str().unwrap().to_string())
        .collect();
    for kind in ["accept", "reject", "quarantine", "tempfail"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing in {kinds:?}"
        );
    }
    wait_for("globex's verdict on the server", || {
        reported("globex").len() == 1
    });
    let globex = reported("globex");
    assert!(globex[0]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("Office document with macros"));
}
