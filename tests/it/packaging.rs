//! The `.deb`'s maintainer scripts (`packaging/debian/`), run the way dpkg
//! runs them: the postinst under debconf's real frontend (which runs the
//! config script first and loads the templates beside it), with a debconf
//! database in a temporary directory, the real `consentry` against the test
//! world's config, and stubs for the tools that would change the system
//! (`systemd-sysusers`, `adduser`, `deb-systemd-helper`, `systemctl`).
//! A person's answers come through debconf's `teletype` frontend on stdin.
//! Without debconf (not a Debian system) the tests say SKIPPED and pass.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::{BIN, World};

const FRONTEND: &str = "/usr/share/debconf/frontend";

/// A package "installed" into a test world: its control files as dpkg
/// keeps them (`info/consentry.*`), a debconf database, and a `PATH` whose
/// system tools are stubs that log their arguments.
struct Package {
    root: PathBuf,
    config: PathBuf,
}

/// The tools the postinst calls that would change this machine.
const STUBS: [&str; 5] = [
    "systemd-sysusers",
    "adduser",
    "getent",
    "deb-systemd-helper",
    "systemctl",
];

impl Package {
    /// `None` (and SKIPPED on stderr) without debconf.
    fn unpack(world: &World) -> Option<Self> {
        if !Path::new(FRONTEND).exists() {
            eprintln!("SKIPPED: no debconf on this machine ({FRONTEND})");
            return None;
        }
        let root = world.path("package");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/debian");
        std::fs::create_dir_all(root.join("info")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        for name in ["postinst", "config", "templates", "postrm"] {
            std::fs::copy(
                source.join(name),
                root.join(format!("info/consentry.{name}")),
            )
            .unwrap();
        }
        for stub in STUBS {
            let path = root.join("bin").join(stub);
            let log = root.join("stubs.log");
            std::fs::write(
                &path,
                format!("#!/bin/sh\necho \"{stub} $*\" >> '{}'\n", log.display()),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::symlink(BIN, root.join("bin/consentry")).unwrap();
        std::fs::write(
            root.join("debconf.conf"),
            format!(
                "Config: configdb\nTemplates: templatedb\n\n\
                 Name: configdb\nDriver: File\nMode: 644\nFilename: {0}/config.dat\n\n\
                 Name: templatedb\nDriver: File\nMode: 644\nFilename: {0}/templates.dat\n",
                root.display()
            ),
        )
        .unwrap();
        Some(Self {
            root,
            config: world.config.clone(),
        })
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>, frontend: &str) -> Command {
        let mut command = Command::new(program);
        let path = format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            self.root.join("bin").display()
        );
        for inherited in [
            "DEBIAN_HAS_FRONTEND",
            "DEBCONF_REDIR",
            "DEBCONF_RECONFIGURE",
            "DEBIAN_PRIORITY",
            "DEBCONF_NONINTERACTIVE_SEEN",
            "CONSENTRY_LOG",
        ] {
            command.env_remove(inherited);
        }
        command
            .env("PATH", path)
            .env("DEBCONF_SYSTEMRC", self.root.join("debconf.conf"))
            .env("DEBIAN_FRONTEND", frontend)
            .env("CONSENTRY_CONFIG", &self.config)
            .env("HOME", &self.root)
            .kill_on_drop(true);
        command
    }

    /// Runs `postinst ARGS` as dpkg would, under `frontend`, with `answers`
    /// on stdin; it must succeed (nothing about consent fails an install).
    /// Returns what it said: the frontend's questions (stdout), then the
    /// scripts' own lines (stderr).
    async fn postinst(&self, args: &[&str], frontend: &str, answers: &str) -> String {
        let mut command = self.command("sh", frontend);
        command
            .arg(self.root.join("info/consentry.postinst"))
            .args(args);
        let output = run(command, answers).await;
        let said = said(&output);
        assert!(output.status.success(), "postinst {args:?} failed: {said}");
        said
    }

    /// What `dpkg-reconfigure consentry` does: the config script with
    /// `reconfigure`, then the postinst with `configure`, under one
    /// frontend, with `DEBCONF_RECONFIGURE=1`.
    async fn reconfigure(&self, frontend: &str, answers: &str) -> String {
        let script = self.root.join("reconfigure.pl");
        std::fs::write(&script, RECONFIGURE).unwrap();
        let mut command = self.command("perl", frontend);
        command.arg(&script).arg(self.root.join("info"));
        let output = run(command, answers).await;
        let said = said(&output);
        assert!(output.status.success(), "reconfigure failed: {said}");
        said
    }

    /// `debconf-set-selections`: an administrator's preseeded answer.
    async fn preseed(&self, line: &str) {
        let command = self.command("debconf-set-selections", "noninteractive");
        let output = run(command, &format!("{line}\n")).await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn stub_calls(&self) -> String {
        std::fs::read_to_string(self.root.join("stubs.log")).unwrap_or_default()
    }
}

/// dpkg-reconfigure's steps (`/usr/sbin/dpkg-reconfigure`: priority low,
/// seen questions shown again), without dpkg's database (the control files
/// are in `ARGV[0]`).
const RECONFIGURE: &str = r#"
use strict;
use Debconf::Db;
use Debconf::AutoSelect qw(:all);
use Debconf::Template;
use Debconf::Config;
Debconf::Config->priority('low');
Debconf::Db->load;
Debconf::Config->reshow(1);
$ENV{DEBCONF_RECONFIGURE} = 1;
my $info = shift;
Debconf::Template->load("$info/consentry.templates", "consentry");
my $frontend = make_frontend();
for my $step (["config", "reconfigure"], ["postinst", "configure"]) {
    my $confmodule = make_confmodule("$info/consentry.$step->[0]", $step->[1], "0.1.0-1");
    $confmodule->owner("consentry");
    1 while ($confmodule->communicate);
    exit $confmodule->exitcode if $confmodule->exitcode > 0;
}
$frontend->shutdown;
Debconf::Db->save;
"#;

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn run(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(crate::support::PATIENCE, child.wait_with_output())
        .await
        .expect("a maintainer script hung")
        .unwrap()
}

async fn ksn_receipts(world: &World) -> Vec<serde_json::Value> {
    let history: serde_json::Value =
        serde_json::from_str(&world.ok(&["consent", "history", "--json"]).await).unwrap();
    history["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["clause"]["id"] == "ksn")
        .cloned()
        .collect()
}

async fn ksn_state(world: &World) -> String {
    let list: serde_json::Value =
        serde_json::from_str(&world.ok(&["consent", "list", "--json"]).await).unwrap();
    list["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clause"] == "ksn")
        .map(|c| format!("{} {}", c["state"], c["accepted"]["method"]))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_eula_the_question_is_not_asked_and_the_install_says_why() {
    let world = World::new().await;
    let Some(package) = Package::unpack(&world) else {
        return;
    };
    // Even a preseeded yes records nothing: the Security Network takes
    // effect only with the EULA, which the package accepts for no one.
    package
        .preseed("consentry consentry/ksn boolean true")
        .await;
    let said = package.postinst(&["configure"], "noninteractive", "").await;
    assert!(
        said.contains("the Security Network question was not asked")
            && said.contains("grant eula first")
            && said.contains("consentry consent grant ksn"),
        "{said}"
    );
    assert!(
        !world.path("consent.toml").exists(),
        "the install accepted something"
    );
    assert!(
        !world.path(".consent.toml.lock").exists(),
        "asking left a lock file in the consent file's directory"
    );
    assert!(ksn_receipts(&world).await.is_empty());
    // The rest of the postinst ran as before.
    let calls = package.stub_calls();
    assert!(
        calls.contains("deb-systemd-helper enable consentry.service"),
        "{calls}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_interactive_install_answers_no_and_records_nothing() {
    let world = World::new().await;
    let Some(package) = Package::unpack(&world) else {
        return;
    };
    world
        .ok(&["consent", "grant", "eula", "--method", "installer"])
        .await;
    let said = package.postinst(&["configure"], "noninteractive", "").await;
    assert!(!said.contains("not recorded"), "{said}");
    assert_eq!(ksn_state(&world).await, "\"not_accepted\" null");
    // Nobody was asked, so nobody declined.
    assert!(ksn_receipts(&world).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_s_yes_is_granted_and_a_no_declined_as_the_installer_s() {
    let world = World::new().await;
    let Some(package) = Package::unpack(&world) else {
        return;
    };
    world
        .ok(&["consent", "grant", "eula", "--method", "installer"])
        .await;
    let show: serde_json::Value =
        serde_json::from_str(&world.ok(&["consent", "show", "ksn", "--json"]).await).unwrap();
    let shown = show["clause"]["text_sha256"].as_str().unwrap().to_owned();

    // A first install; the person says no.
    let said = package.postinst(&["configure"], "teletype", "no\n").await;
    assert!(
        said.contains("Participate in the Security Network?"),
        "{said}"
    );
    // The question showed the statement, as `consent show` prints it.
    assert!(said.contains(&shown), "{said}");
    assert_eq!(ksn_state(&world).await, "\"not_accepted\" null");
    let receipts = ksn_receipts(&world).await;
    assert_eq!(receipts.len(), 1, "{receipts:#?}");
    assert_eq!(receipts[0]["event"], "decline");
    assert_eq!(receipts[0]["collection_method"], "installer");
    assert!(receipts[0]["act_id"].is_string());
    assert_eq!(receipts[0]["clause"]["text_sha256"], shown.as_str());

    // An upgrade asks nothing and records nothing.
    package
        .postinst(&["configure", "0.1.0-1"], "teletype", "yes\n")
        .await;
    assert_eq!(ksn_receipts(&world).await.len(), 1);

    // dpkg-reconfigure asks again; this time the person says yes.
    let said = package.reconfigure("teletype", "yes\n").await;
    assert!(said.contains("accepted ksn version 4"), "{said}");
    assert_eq!(ksn_state(&world).await, "\"accepted\" \"installer\"");
    let receipts = ksn_receipts(&world).await;
    assert_eq!(receipts.len(), 2, "{receipts:#?}");
    assert_eq!(receipts[1]["event"], "grant");
    assert_eq!(receipts[1]["collection_method"], "installer");
    assert!(receipts[1]["act_id"].is_string());
    assert_eq!(receipts[1]["clause"]["text_sha256"], shown.as_str());

    // Accepted: reconfiguring asks nothing (withdrawing is a revoke), and
    // an answer remembered by debconf is never replayed.
    world.ok(&["consent", "revoke", "ksn"]).await;
    package.reconfigure("noninteractive", "").await;
    package
        .postinst(&["configure", "0.1.0-1"], "noninteractive", "")
        .await;
    assert_eq!(ksn_state(&world).await, "\"not_accepted\" null");
    assert_eq!(ksn_receipts(&world).await.len(), 3, "only the revoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preseeded_yes_is_the_administrator_s_and_recorded_as_the_installer_s() {
    let world = World::new().await;
    let Some(package) = Package::unpack(&world) else {
        return;
    };
    world
        .ok(&["consent", "grant", "eula", "--method", "installer"])
        .await;
    package
        .preseed("consentry consentry/ksn boolean true")
        .await;
    package.postinst(&["configure"], "noninteractive", "").await;
    assert_eq!(ksn_state(&world).await, "\"accepted\" \"installer\"");
    let receipts = ksn_receipts(&world).await;
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0]["event"], "grant");
    assert_eq!(receipts[0]["collection_method"], "installer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_about_consent_fails_the_install() {
    let world = World::new().await;
    let Some(package) = Package::unpack(&world) else {
        return;
    };
    world
        .ok(&["consent", "grant", "eula", "--method", "installer"])
        .await;
    // The person says yes; the store cannot be written when the answer is
    // recorded (the state directory is a file).
    let config = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(world.path("not-a-dir"), "").unwrap();
    world.write_config(&config.replace("state_dir = \"state\"", "state_dir = \"not-a-dir\""));
    let said = package.postinst(&["configure"], "teletype", "yes\n").await;
    assert!(
        said.contains("the answer to the Security Network question was not recorded")
            || said.contains("not recorded here"),
        "{said}"
    );
    // A broken agent config: nothing is asked, the install goes on.
    world.write_config("region = \n");
    package.postinst(&["configure"], "noninteractive", "").await;
}
