//! `consentry disclosure`: the committed documents in `docs/disclosures/`
//! are exactly what the binary generates from the embedded catalogue, a
//! changed catalogue changes the document, and the HTML is well-formed and
//! self-contained.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{World, run_with_config};

const REGIONS: [&str; 5] = ["global", "eu", "uk", "br", "us-ca"];

fn committed(product: &str, region: &str, format: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("docs/disclosures/{product}/{region}.{format}"))
}

fn stdout_of(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `consentry disclosure --catalogue PRODUCT --region REGION --format
/// FORMAT` with no config file: a built-in catalogue and the store's
/// default record age.
async fn generated(product: &str, region: &str, format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = run_with_config(
        &dir.path().join("absent.toml"),
        &[
            "disclosure",
            "--catalogue",
            product,
            "--region",
            region,
            "--format",
            format,
        ],
    )
    .await;
    stdout_of(output, &format!("disclosure {product} {region} {format}"))
}

/// One set of documents per product, each region's edition in both formats.
#[tokio::test]
async fn committed_disclosures_match_the_embedded_catalogue() {
    let mut stale = Vec::new();
    let products = consentry::catalogue::BuiltIn::ALL.map(|b| b.id());
    for (product, region) in products
        .iter()
        .flat_map(|p| REGIONS.iter().map(move |r| (*p, *r)))
    {
        for format in ["md", "html"] {
            let path = committed(product, region, format);
            let text = generated(product, region, format).await;
            if std::env::var_os("CONSENTRY_BLESS").is_some() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "these disclosures no longer match the built-in catalogues (config/catalogue/): {stale:?}; review the change, then regenerate them with `CONSENTRY_BLESS=1 cargo test --test it disclosures`"
    );
}

#[tokio::test]
async fn disclosures_follow_the_catalogue_the_config_names() {
    let world = World::new().await;
    let old = "description = \"Word size of the operating system: 32 or 64.\"";
    let new = "description = \"Word size | of the <OS> & its \\\"kernel\\\".\"";
    assert!(consentry::catalogue::EMBEDDED.contains(old));
    std::fs::write(
        world.path("catalogue.toml"),
        consentry::catalogue::EMBEDDED.replace(old, new),
    )
    .unwrap();
    let config = std::fs::read_to_string(&world.config).unwrap();
    world.write_config(&format!("catalogue = \"catalogue.toml\"\n{config}"));

    // No --region: the config's (global here).
    let markdown = stdout_of(world.run(&["disclosure"]).await, "disclosure");
    assert!(markdown.starts_with("# What consentry sends, and why: Global edition"));
    assert!(
        !markdown.contains("of the operating system: 32 or 64"),
        "{markdown}"
    );
    assert!(
        markdown.contains(
            "| `os_bitness` | integer | Word size \\| of the &lt;OS&gt; & its \"kernel\". |"
        ),
        "{markdown}"
    );
    let html = stdout_of(
        world.run(&["disclosure", "--format", "html"]).await,
        "disclosure --format html",
    );
    assert!(html.contains("Word size | of the &lt;OS&gt; &amp; its &quot;kernel&quot;."));
    let embedded = generated("kis", "global", "md").await;
    assert!(
        embedded.contains("of the operating system: 32 or 64"),
        "the embedded one is unchanged"
    );

    let json = stdout_of(
        world
            .run(&["disclosure", "--region", "us-ca", "--json"])
            .await,
        "disclosure --json",
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["schema"], "consentry.disclosure/1");
    assert_eq!(json["region"], "us-ca");
    assert_eq!(json["opt_out_signals"].as_array().unwrap().len(), 2);

    let output = world.run(&["disclosure", "--region", "mars"]).await;
    assert_eq!(output.status.code(), Some(2), "a usage error");
}

/// Parse errors of an HTML5 document, and what no disclosure may hold.
fn html_problems(html: &str) -> Vec<String> {
    let document = scraper::Html::parse_document(html);
    let mut problems: Vec<String> = document.errors.iter().map(|e| e.to_string()).collect();
    for selector in [
        "script", "link", "img", "iframe", "object", "embed", "[src]", "[href]",
    ] {
        let found = document
            .select(&scraper::Selector::parse(selector).unwrap())
            .count();
        if found > 0 {
            problems.push(format!("{found} × {selector}"));
        }
    }
    for scheme in ["http://", "https://", "<script"] {
        if html.to_ascii_lowercase().contains(scheme) {
            problems.push(format!("contains {scheme}"));
        }
    }
    problems
}

#[tokio::test]
async fn html_disclosures_are_well_formed_and_self_contained() {
    assert!(
        !html_problems("<!DOCTYPE html><p>a<b>c</p><script>x</script>").is_empty(),
        "the check can fail"
    );
    for region in REGIONS {
        let html = generated("kis", region, "html").await;
        let problems = html_problems(&html);
        assert!(problems.is_empty(), "{region}: {problems:?}");
        let document = scraper::Html::parse_document(&html);
        let tables = document
            .select(&scraper::Selector::parse("table").unwrap())
            .count();
        assert!(tables > 4, "{region}: fields are in tables");
    }

    // Catalogue text that looks like markup stays text.
    let world = World::new().await;
    let old = "title = \"Security Network statement\"";
    let hostile = "title = \"<script>alert('x')</script> & \\\"https://evil.example\\\"\"";
    std::fs::write(
        world.path("catalogue.toml"),
        consentry::catalogue::EMBEDDED.replace(old, hostile),
    )
    .unwrap();
    let config = std::fs::read_to_string(&world.config).unwrap();
    world.write_config(&format!("catalogue = \"catalogue.toml\"\n{config}"));
    let html = stdout_of(
        world.run(&["disclosure", "--format", "html"]).await,
        "disclosure --format html",
    );
    let document = scraper::Html::parse_document(&html);
    assert!(document.errors.is_empty(), "{:?}", document.errors);
    assert_eq!(
        document
            .select(&scraper::Selector::parse("script").unwrap())
            .count(),
        0
    );
    let heading = document
        .select(&scraper::Selector::parse("h3#clause-ksn").unwrap())
        .next()
        .unwrap();
    assert!(
        heading
            .text()
            .collect::<String>()
            .starts_with("<script>alert('x')</script> & \"https://evil.example\"")
    );
}
