//! ARCHITECTURE.md's structural invariants, read from the source itself:
//! what the library's production code (everything under `src/` but
//! `main.rs`, `cli/` and test code) may import, bind, spawn and handle.
//! These are text scans, not a type system: they name what they look for
//! and fail on the first new occurrence, for a person to judge.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each production source file of the library: its path under `src/`
/// and its text without test modules and `//` comments.
fn library_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect_rs(&src, &mut files);
    let mut sources = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let name = relative.rsplit('/').next().unwrap();
        if relative == "main.rs"
            || relative.starts_with("cli/")
            || name == "tests.rs"
            || name == "proptests.rs"
            || relative.contains("/tests/")
        {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        sources.push((relative, production_code(&text)));
    }
    assert!(sources.len() > 50, "found only {} files", sources.len());
    sources
}

fn collect_rs(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// The text without `#[cfg(test)] mod … { … }` blocks (nor `mod tests;`
/// declarations) and without lines that are only a comment.
fn production_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let next = lines.get(i + 1).map_or("", |l| l.trim());
        if line == "#[cfg(test)]" && (next.starts_with("mod ") || next.starts_with("pub mod ")) {
            if next.ends_with(';') {
                i += 2;
                continue;
            }
            let mut depth = 0i64;
            let mut j = i + 1;
            while j < lines.len() {
                depth += lines[j].matches('{').count() as i64;
                depth -= lines[j].matches('}').count() as i64;
                if depth == 0 && lines[j].contains('}') {
                    break;
                }
                j += 1;
            }
            i = j + 1;
            continue;
        }
        if !line.starts_with("//") {
            kept.push(lines[i]);
        }
        i += 1;
    }
    kept.join("\n")
}

/// The crate's top-level module a file belongs to: `store/open.rs` → `store`.
fn top_module(relative: &str) -> &str {
    let first = relative.split('/').next().unwrap();
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Each top-level module's production imports of the others (`crate::x`),
/// with one file that makes each.
fn module_graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (relative, code) in library_sources() {
        let from = top_module(&relative).to_owned();
        if from == "lib" {
            continue;
        }
        for (at, _) in code.match_indices("crate::") {
            let to: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !to.is_empty() && to != from {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| relative.clone());
            }
        }
    }
    graph
}

#[test]
fn data_flows_one_way_leaf_modules_import_only_leaves_and_no_module_imports_itself_back() {
    let graph = module_graph();
    let imports = |from: &str| -> BTreeSet<String> {
        graph
            .get(from)
            .map(|to| to.keys().cloned().collect())
            .unwrap_or_default()
    };
    // Leaf modules import nothing of the crate but each other.
    let leaves = ["clock", "record", "document"];
    for leaf in leaves {
        for to in imports(leaf) {
            assert!(
                leaves.contains(&to.as_str()),
                "leaf module {leaf} imports crate::{to} ({})",
                graph[leaf][&to]
            );
        }
    }
    // collect → gate → store → upload: no stage imports `collect`, the gate
    // imports neither the store nor the uploader, the store not the uploader.
    for (from, forbidden) in [
        ("gate", &["collect", "store", "upload"][..]),
        ("store", &["collect", "upload"][..]),
        ("upload", &["collect"][..]),
    ] {
        for to in forbidden {
            assert!(
                !imports(from).contains(*to),
                "{from} imports crate::{to} ({}): data would flow back",
                graph[from][*to]
            );
        }
    }
    // No cycle among top-level modules: no module reaches itself.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = imports(start)
            .into_iter()
            .map(|to| (to.clone(), vec![start.clone(), to]))
            .collect();
        while let Some((module, path)) = stack.pop() {
            assert!(
                module != *start,
                "import cycle: {} (first import of each: {:?})",
                path.join(" → "),
                path.windows(2)
                    .map(|pair| graph[&pair[0]][&pair[1]].clone())
                    .collect::<Vec<_>>()
            );
            if seen.insert(module.clone()) {
                for to in imports(&module) {
                    let mut longer = path.clone();
                    longer.push(to.clone());
                    stack.push((to, longer));
                }
            }
        }
    }
}

#[test]
fn library_code_installs_no_signal_handler_binds_no_fixed_path_and_spawns_only_tracked_tasks() {
    let sources = library_sources();
    let mut spawns = Vec::new();
    for (relative, code) in &sources {
        for handler in [
            "tokio::signal",
            "signal_hook",
            "SignalKind",
            "sigaction",
            "signal::",
        ] {
            assert!(
                !code.contains(handler),
                "{relative} handles signals ({handler}): only main.rs and cli/ may"
            );
        }
        for (at, _) in code.match_indices("bind(") {
            let argument = code[at + "bind(".len()..].trim_start();
            if let Some(literal) = argument.strip_prefix('"') {
                let literal = literal.split('"').next().unwrap();
                assert_eq!(
                    literal, "127.0.0.1:0",
                    "{relative} binds a fixed address or path: {literal:?}"
                );
                assert_eq!(relative, "receiver/mod.rs", "{relative} binds {literal:?}");
            }
        }
        for spawner in [
            "tokio::spawn(",
            "tokio::task::spawn(",
            "std::thread::spawn(",
        ] {
            spawns.extend(
                code.matches(spawner)
                    .map(|_| (relative.clone(), spawner.to_owned())),
            );
        }
    }
    // Tasks are spawned through the daemon's `TaskTracker` (with the
    // shutdown token passed in); the untracked spawns are these, each
    // bounded otherwise. A new one fails here until it is judged.
    let allowed = [
        // the acknowledger, awaited by its connection task on every path
        ("ingest/connection.rs", "tokio::spawn("),
        // the loopback receiver (demo and tests only): its accept loop ends
        // on the receiver's own cancellation token, its connections with it
        ("receiver/mod.rs", "tokio::spawn("),
        ("receiver/mod.rs", "tokio::spawn("),
        // a request on the wire, owned by its `AbortOnDropHandle`: it is
        // abandoned with the upload round that sent it, never outlives it
        ("upload/sender/window.rs", "tokio::spawn("),
    ];
    let allowed: Vec<(String, String)> = allowed
        .iter()
        .map(|(file, spawner)| ((*file).to_owned(), (*spawner).to_owned()))
        .collect();
    spawns.sort();
    assert_eq!(spawns, allowed, "untracked spawns in library code");
}

#[test]
fn only_the_daemon_s_notifier_speaks_to_the_service_manager() {
    for (relative, code) in library_sources() {
        if code.contains("sd_notify::") {
            assert_eq!(
                relative, "daemon/notify.rs",
                "{relative} talks to the service manager"
            );
        }
        if code.contains("notify::run(") {
            assert_eq!(
                relative, "daemon/mod.rs",
                "{relative} starts the notifier: only daemon::run may"
            );
        }
    }
    // The notifier's first act: nothing at all without NOTIFY_SOCKET.
    let notify =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/daemon/notify.rs"))
            .unwrap();
    let run = notify
        .split("pub(crate) async fn run(")
        .nth(1)
        .expect("notify::run");
    let first_send = run.find("send(").expect("run sends");
    let check = run
        .find(r#"if std::env::var_os("NOTIFY_SOCKET").is_none() {"#)
        .expect("run checks NOTIFY_SOCKET");
    assert!(
        check < first_send,
        "notify::run sends before it checks NOTIFY_SOCKET"
    );
}

#[test]
fn only_consent_touches_the_consent_file_only_the_registry_decides_and_only_the_gate_makes_what_is_queued()
 {
    let io = [
        "fs::read",
        "read_to_string(",
        "File::open(",
        "File::create(",
        "OpenOptions",
        "fs::write(",
        "fs::rename(",
        "remove_file(",
    ];
    for (relative, code) in library_sources() {
        // The consent file is opened only by `consent` (`Reading::of`, the
        // file's acts, `ConsentLock`): elsewhere a statement naming it does
        // no reading or writing (metadata and watching only).
        if !relative.starts_with("consent/") {
            for statement in code.split(';').filter(|s| s.contains("consent_file")) {
                for call in io {
                    assert!(
                        !statement.contains(call),
                        "{relative} opens the consent file itself ({call}):\n{statement}"
                    );
                }
            }
        }
        // Whether a purpose may send is decided in `consent::Registry`.
        for decider in ["fn decide(", "fn decide_purpose("] {
            if code.contains(decider) {
                assert_eq!(relative, "consent/registry.rs", "{relative}: {decider}");
            }
        }
        // A `GatedRecord`, or the `GatedLine` a draft is admitted as, is
        // made by the gate alone ...
        for made in [
            "-> GatedRecord",
            "<GatedRecord,",
            "Option<GatedRecord>",
            "GatedLine {",
        ] {
            if code.contains(made) {
                assert!(
                    relative.starts_with("gate/"),
                    "{relative} makes a gated record ({made})"
                );
            }
        }
        // A segment's lines change through `segment::trim` alone, which
        // keeps its count, size, oldest time and checksum true with them
        // (besides the migrations, which run before any segment exists).
        if code.contains("UPDATE queue") {
            assert!(
                ["store/segment/mod.rs", "store/schema.rs"].contains(&relative.as_str()),
                "{relative} rewrites a segment"
            );
        }
        // ... and the queue takes rows from `Filling::push(GatedLine)`
        // (`Segments::of(&[GatedRecord])` included) only (what `enqueue`
        // inserts), besides the store's own moves of rows it already held.
        if code.contains("INSERT INTO queue") {
            assert!(
                [
                    "store/segment/rows.rs",
                    "store/recover.rs",
                    "store/schema.rs"
                ]
                .contains(&relative.as_str()),
                "{relative} inserts into the queue"
            );
        }
    }
}

#[test]
fn certificates_made_at_run_time_are_the_demo_s_and_nothing_weakens_the_uploader_s_tls() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("#[cfg(feature = \"demo\")]\npub mod receiver;"),
        "the loopback receiver is not behind the demo feature"
    );
    for (relative, code) in library_sources() {
        if code.contains("rcgen") {
            assert!(
                relative.starts_with("receiver/"),
                "{relative} makes certificates"
            );
        }
        for weakening in [".dangerous()", "impl ServerCertVerifier for"] {
            if code.contains(weakening) {
                assert_eq!(relative, "upload/tls.rs", "{relative}: {weakening}");
            }
        }
        // A verifier that waves a handshake signature through.
        assert!(
            !code.contains("HandshakeSignatureValid::assertion()"),
            "{relative} accepts a handshake signature unverified"
        );
        assert!(
            !code.contains("danger_accept_invalid") && !code.contains("accept_invalid_cert"),
            "{relative} accepts invalid certificates"
        );
    }
    let tls = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/upload/tls.rs"))
        .unwrap();
    assert!(
        tls.contains("&[&rustls::version::TLS13, &rustls::version::TLS12];"),
        "the uploader's protocol versions changed"
    );
    assert!(tls.contains(".with_protocol_versions(PROTOCOL_VERSIONS)"));
}

#[test]
fn the_consent_owner_alone_reads_the_consent_file_for_the_daemon_and_publishes() {
    for (relative, code) in library_sources() {
        // `gate::evaluate` (behind `Config::evaluate_consent`) reads it for
        // the CLI's views; the daemon's one read is the owner's.
        if code.contains("Reading::of(") {
            assert!(
                ["daemon/consent.rs", "gate/mod.rs", "consent/reading.rs"]
                    .contains(&relative.as_str()),
                "{relative} reads the consent file"
            );
        }
        if relative != "config.rs" {
            assert!(
                !code.contains("evaluate_consent(") && !code.contains("gate::evaluate("),
                "{relative} evaluates the consent file itself"
            );
        }
        if code.contains(".publish(") {
            assert!(
                ["daemon/consent.rs", "daemon/consent/activation.rs"].contains(&relative.as_str()),
                "{relative} publishes consent decisions"
            );
        }
    }
}

#[test]
fn the_uploader_reaches_the_store_through_named_operations_only() {
    // `store::writer::upload_ops` names every job the uploader runs on the
    // writer thread: no closure over a raw connection in `upload/`.
    for (relative, code) in library_sources() {
        if !relative.starts_with("upload/") {
            continue;
        }
        for raw in [".call(", ".call_unsynced(", "rusqlite::"] {
            assert!(
                !code.contains(raw),
                "{relative} reaches the store through `{raw}`"
            );
        }
    }
}

#[test]
fn unsafe_code_lives_in_the_footprint_module_alone() {
    // Cargo.toml denies `unsafe_code`; one reviewed function allows it
    // (`daemon::footprint::release_code_pages`, an `madvise` over the
    // process's own code mappings). Any other `unsafe`, test code and the
    // binary's included, fails here for a person to review.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect_rs(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if ["unsafe {", "unsafe fn", "unsafe impl", "unsafe_code"]
                .iter()
                .any(|word| code.contains(word))
            {
                let relative = file.strip_prefix(&src).unwrap().display().to_string();
                found.push(format!("{relative}:{}", number + 1));
            }
        }
    }
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .all(|at| at.starts_with("daemon/footprint.rs:")),
        "{found:?}"
    );
}

#[test]
fn only_the_consent_owner_and_the_scheduler_run_closures_on_the_writer_and_the_cli_none() {
    // Everything else reaches the store through named operations
    // (`store::writer::ops`, `upload_ops`, `Store`'s own). The consent
    // owner's transactions (a read's receipts, its purge and the KSN
    // window's discard, in one commit) and the scheduler's window close
    // still run as closures over the connection and the KSN window.
    let allowed = [
        "daemon/consent.rs",
        "daemon/consent/activation.rs",
        "daemon/scheduler.rs",
    ];
    for (relative, code) in library_sources() {
        if relative.starts_with("store/") || allowed.contains(&relative.as_str()) {
            continue;
        }
        for raw in [".call(", ".call_unsynced("] {
            assert!(
                !code.contains(raw),
                "{relative} runs a closure on the writer (`{raw}`): name the operation in store::writer"
            );
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut cli = vec![src.join("main.rs")];
    collect_rs(&src.join("cli"), &mut cli);
    for file in cli {
        let code = production_code(&fs::read_to_string(&file).unwrap());
        for raw in [".call(", ".call_unsynced(", ".write(|", ".execute("] {
            assert!(
                !code.contains(raw),
                "{} writes the store directly (`{raw}`)",
                file.display()
            );
        }
    }
}
