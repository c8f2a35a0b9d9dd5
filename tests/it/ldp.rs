//! Local differential privacy through the real daemon (issue 25): a
//! randomised field's true value never reaches the store (not the queue,
//! not a freed page, not the WAL) nor the receiver, and what arrives is
//! the mechanism's report, which the library's estimator reads.

use consentry::catalogue::Catalogue;
use consentry::document::{Document, Origin};
use consentry::privacy::ldp::Frequencies;

use crate::support::{World, queued_records};

/// Values no other byte of the state directory could hold by chance.
const DOMAIN: [&str; 3] = ["amethyst-edition-7", "beryl-edition-7", "citrine-edition-7"];
const TRUE_VALUE: &str = "beryl-edition-7";
const REPORTS: usize = 40;

/// The built-in `kis` catalogue and one more purpose under `eula`, whose
/// only field is randomised by Hadamard response.
fn catalogue_text() -> String {
    let domain = DOMAIN.map(|v| format!("\"{v}\"")).join(", ");
    format!(
        "{}\n[[purpose]]\nid = \"ldp_probe\"\ntitle = \"Editions\"\nbasis = \"legitimate_interest\"\nclauses = [\"eula\"]\n\
privacy_budget = {{ epsilon_per_day = 4, reports_per_day = 1000 }}\n\n\
[[purpose.field]]\nname = \"edition\"\ntype = \"string\"\npersonal = \"none\"\nformat = \"identifier\"\nmax_len = 32\ndescription = \"Edition.\"\n\n\
[purpose.field.ldp]\nmechanism = \"hadamard\"\nepsilon = 0.004\ndomain = [{domain}]\n",
        consentry::catalogue::EMBEDDED
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_randomised_value_never_reaches_the_store_or_the_receiver() {
    let world = World::new().await;
    world.receiver.set_status(503);
    std::fs::write(world.path("catalogue.toml"), catalogue_text()).unwrap();
    let config = std::fs::read_to_string(&world.config).unwrap();
    world.write_config(&format!("catalogue = \"catalogue.toml\"\n{config}"));
    world.ok(&["consent", "grant", "eula"]).await;
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();

    let line = format!(
        "{{\"kind\":\"record\",\"purpose\":\"ldp_probe\",\"fields\":{{\"edition\":\"{TRUE_VALUE}\"}}}}\n"
    );
    let out = world
        .emit(&["-", "--json"], line.repeat(REPORTS).as_bytes())
        .await;
    assert!(out.status.success(), "{out:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], REPORTS, "{summary}");

    // Queued: one report each, none of them a domain value.
    let stored: Vec<String> =
        queued_records(&world.path("state/consentry.sqlite3"), |p| p == "ldp_probe")
            .into_iter()
            .map(|(_, fields)| fields)
            .collect();
    assert_eq!(stored.len(), REPORTS);
    let document = Document {
        origin: Origin::File("catalogue.toml".into()),
        text: catalogue_text(),
    };
    let catalogue = Catalogue::from_document(&document).unwrap();
    let declared = catalogue
        .purpose("ldp_probe")
        .unwrap()
        .field("edition")
        .unwrap();
    let mut tally = Frequencies::new(declared.ldp.as_ref().unwrap()).unwrap();
    for fields in &stored {
        let fields: serde_json::Value = serde_json::from_str(fields).unwrap();
        tally.add(fields["edition"].as_str().unwrap()).unwrap();
    }
    assert_eq!(tally.reports(), REPORTS as u64);

    // Not a byte of any domain value anywhere in the state directory.
    for entry in std::fs::read_dir(world.path("state")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let found = bytes
                .windows(b"-edition-7".len())
                .any(|w| w == b"-edition-7");
            assert!(!found, "{} holds a domain value", path.display());
        }
    }

    // `status` says what was spent today.
    let status = world.status().await;
    let spent = &status["daemon"]["privacy_budget"]["ldp_probe"];
    assert_eq!(spent["reports_today"], REPORTS, "{status}");
    assert_eq!(spent["reports_per_day"], 1000, "{status}");

    // Delivered as stored: reports, never the value.
    world.receiver.set_status(200);
    world.ok(&["flush"]).await;
    let delivered = world.delivered("ldp_probe");
    assert_eq!(delivered.len(), REPORTS);
    for record in &delivered {
        let report = record.fields["edition"].as_str().unwrap();
        assert!(!DOMAIN.contains(&report), "{report}");
    }
    daemon.drain_log();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_says_which_fields_only_their_report_leaves() {
    let world = World::new().await;
    let out = world.ok(&["preview", "geo_distribution", "--json"]).await;
    let preview: serde_json::Value = serde_json::from_str(&out).unwrap();
    let message = preview["previews"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("Randomised before anything is stored")
            && message.contains("`country_code` randomized before it is stored (Hadamard response"),
        "{message}"
    );
    // A purpose with nothing randomised says nothing of it.
    let out = world.ok(&["preview", "update_identity", "--json"]).await;
    let preview: serde_json::Value = serde_json::from_str(&out).unwrap();
    let message = preview["previews"][0]["message"].as_str().unwrap();
    assert!(!message.contains("Randomised"), "{message}");
}

/// A restart does not start the day afresh: today's reports sent before it
/// still count against `reports_per_day`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_reset_the_day_s_count_of_reports() {
    let world = World::new().await;
    world.receiver.set_status(503);
    let text = catalogue_text().replace("reports_per_day = 1000", "reports_per_day = 3");
    std::fs::write(world.path("catalogue.toml"), text).unwrap();
    let config = std::fs::read_to_string(&world.config).unwrap();
    world.write_config(&format!("catalogue = \"catalogue.toml\"\n{config}"));
    world.ok(&["consent", "grant", "eula"]).await;
    let line = format!(
        "{{\"kind\":\"record\",\"purpose\":\"ldp_probe\",\"fields\":{{\"edition\":\"{TRUE_VALUE}\"}}}}\n"
    );
    let queued = || {
        let db = rusqlite::Connection::open(world.path("state/consentry.sqlite3")).unwrap();
        db.query_row(
            "SELECT COALESCE(SUM(records), 0) FROM queue WHERE purpose = 'ldp_probe'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .unwrap()
    };

    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();
    let out = world
        .emit(&["-", "--json"], line.repeat(2).as_bytes())
        .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(queued(), 2);
    daemon.terminate().await;

    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();
    let _ = world
        .emit(&["-", "--json"], line.repeat(2).as_bytes())
        .await;
    assert_eq!(queued(), 3, "the third report of the day, and no fourth");
    let status = world.status().await;
    assert!(
        status.to_string().contains("privacy_budget"),
        "the refusal is counted: {status}"
    );
    daemon.terminate().await;
}
