//! TLS and credentials against a real receiver: which servers the agent
//! trusts (`ca_file`, `server_certificate`, `pin_sha256`), the bearer token
//! from `token_file`, and what `check --connect` says when it cannot reach
//! the endpoint.

use std::process::Output;

use consentry::receiver::LoopbackPki;

use crate::support::{PATIENCE, TRUST_CA_FILE, World, eventually};

const CA_ADVICE: &str = "the server's certificate is a CA certificate (CA:TRUE) used as the server's own; issue a leaf certificate from it, or trust exactly this certificate with `server_certificate`";

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `check --connect`, which must fail; its stdout.
async fn connect_fails(world: &World) -> String {
    let output = world.run(&["check", "--connect"]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "check --connect should fail: {}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// Waits for the daemon to try twice more once a record is queued (the
/// receiver counts each refused handshake), then proves that nothing
/// arrived and that what was queued is still queued.
async fn nothing_delivered(world: &World) -> u64 {
    world
        .status_until("queued a record", |s| {
            s["daemon"]["records_queued"].as_u64() >= Some(1)
        })
        .await;
    let before = world.records_queued().await;
    let tried = world.receiver.attempts().len();
    eventually("tried twice more", PATIENCE, async || {
        let attempts = world.receiver.attempts().len() - tried;
        if attempts >= 2 {
            Ok(())
        } else {
            Err(format!("{attempts} attempt(s)"))
        }
    })
    .await;
    assert!(
        world.receiver.requests().is_empty(),
        "a batch reached an untrusted server"
    );
    assert_eq!(
        world.records_queued().await,
        before,
        "records left the queue"
    );
    before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_true_self_signed_certificate_in_ca_file_is_explained_and_nothing_is_sent() {
    let pki = LoopbackPki::self_signed_ca().unwrap();
    let world = World::with_pki(pki, TRUST_CA_FILE, "").await;
    world.ok(&["consent", "grant", "eula"]).await;
    world.ok(&["check"]).await;

    let out = connect_fails(&world).await;
    assert!(out.contains(CA_ADVICE), "{out}");

    let daemon = world.spawn_daemon().await;
    nothing_delivered(&world).await;
    let (_, log) = daemon.terminate().await;
    assert!(log.contains(CA_ADVICE), "the log explains it too: {log}");
    let history = world.ok(&["history"]).await;
    assert!(history.contains("CA:TRUE"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_trusts_that_self_signed_ca_certificate() {
    let pki = LoopbackPki::self_signed_ca().unwrap();
    let world = World::with_pki(pki, "server_certificate = \"server.pem\"", "").await;
    world.ok(&["consent", "grant", "eula"]).await;
    let out = world.ok(&["check", "--connect"]).await;
    assert!(
        out.contains(": ok (TLS handshake and probe answered 204)"),
        "{out}"
    );
    assert!(
        world.receiver.requests().is_empty(),
        "a probe is not recorded as a batch"
    );
    assert_eq!(world.receiver.probes(), 1);

    let daemon = world.spawn_daemon().await;
    assert!(
        world.receiver.wait_for_requests(1, PATIENCE).await,
        "nothing delivered"
    );
    assert_eq!(world.receiver.requests()[0].status, 200);
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_refuses_a_server_with_another_certificate() {
    let world = World::with_pki(
        LoopbackPki::generate().unwrap(),
        "server_certificate = \"other.pem\"",
        "",
    )
    .await;
    let other = LoopbackPki::self_signed_ca().unwrap();
    std::fs::write(world.path("other.pem"), &other.server_pem).unwrap();
    let out = connect_fails(&world).await;
    assert!(
        out.contains(&format!(
            "different certificate than `server_certificate` (its key is sha256//{})",
            world.pki.server_pin
        )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_pin_on_a_valid_chain_delivers() {
    let pki = LoopbackPki::generate().unwrap();
    let pin = format!("pin_sha256 = [\"{}\"]", pki.server_pin);
    let world = World::with_pki(pki, TRUST_CA_FILE, &pin).await;
    world.ok(&["consent", "grant", "eula"]).await;
    world.ok(&["check", "--connect"]).await;
    let daemon = world.spawn_daemon().await;
    assert!(
        world.receiver.wait_for_requests(1, PATIENCE).await,
        "nothing delivered"
    );
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_mismatch_refuses_a_valid_chain_keeps_the_queue_and_names_the_actual_pin() {
    let world =
        World::with_upload_extra("pin_sha256 = [\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"]")
            .await;
    world.ok(&["consent", "grant", "eula"]).await;
    let out = connect_fails(&world).await;
    let expected = format!(
        "the server's public key matches none of `pin_sha256`; the server presents sha256//{}",
        world.pki.server_pin
    );
    assert!(out.contains(&expected), "{out}");

    let daemon = world.spawn_daemon().await;
    nothing_delivered(&world).await;
    let (_, log) = daemon.terminate().await;
    assert!(log.contains(&expected), "{log}");

    // The pin it printed, pasted into the config, is accepted.
    world.write_config(&world.config_text(&format!(
        "pin_sha256 = [\"sha256//{}\"]",
        world.pki.server_pin
    )));
    world.ok(&["check", "--connect"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_comes_from_token_file_and_is_never_shown() {
    use std::os::unix::fs::PermissionsExt as _;
    const TOKEN: &str = "it-Tok3n-never-printed";
    let world = World::with_upload_extra("token_file = \"token\"").await;
    let token_path = world.path("token");
    std::fs::write(&token_path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    world.receiver.require_token(TOKEN);
    world.ok(&["consent", "grant", "eula"]).await;

    for args in [
        &["check"][..],
        &["check", "--connect"],
        &["check", "--connect", "--json"],
    ] {
        let output = world.run(args).await;
        assert!(output.status.success(), "{args:?}: {}", stdout(&output));
        let text = format!(
            "{}{}",
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.contains(TOKEN), "{args:?} printed the token: {text}");
        assert!(!text.contains("chmod"), "{text}");
    }

    let daemon = world.spawn_daemon().await;
    assert!(
        world.receiver.wait_for_requests(1, PATIENCE).await,
        "nothing delivered"
    );
    let request = world.receiver.requests().remove(0);
    assert_eq!(request.status, 200);
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let (_, log) = daemon.terminate().await;
    assert!(!log.contains(TOKEN), "the daemon logged the token");

    // A wrong token: check --connect says what to fix.
    std::fs::write(&token_path, "wrong").unwrap();
    let out = connect_fails(&world).await;
    assert!(
        out.contains("the endpoint refused the credentials (401); check token_file"),
        "{out}"
    );

    // Readable by others: works, with a warning naming the fix.
    std::fs::write(&token_path, TOKEN).unwrap();
    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = world.ok(&["check"]).await;
    assert!(out.contains("chmod 600"), "{out}");

    // Empty: refused before anything starts.
    std::fs::write(&token_path, "\n").unwrap();
    let output = world.run(&["check"]).await;
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("token_file") && err.contains("is empty"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_says_ok_to_the_receiver_and_explains_a_closed_port_the_daemon_starts_anyway()
{
    let world = World::new().await;
    let out = world.ok(&["check", "--connect"]).await;
    assert!(
        out.contains(": ok (TLS handshake and probe answered 204)"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&world.ok(&["check", "--connect", "--json"]).await).unwrap();
    assert_eq!(json["connect"]["ok"], true, "{json}");
    assert_eq!(json["connect"]["status"], 204, "{json}");
    assert!(world.receiver.requests().is_empty());

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    world.write_config(&world.config_text("").replace(
        &world.receiver.url(),
        &format!("https://127.0.0.1:{closed}/v1/batches"),
    ));
    world.ok(&["check"]).await;
    let out = connect_fails(&world).await;
    assert!(
        out.contains(
            "FAILED: connection refused: nothing listens at the endpoint's address and port"
        ),
        "{out}"
    );
    let output = world.run(&["check", "--connect", "--json"]).await;
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["connect"]["ok"], false, "{json}");
    assert!(
        json["connect"]["explanation"]
            .as_str()
            .unwrap()
            .starts_with("connection refused"),
        "{json}"
    );
    // Nor does an unreachable receiver stop the daemon from starting.
    let daemon = world.spawn_daemon().await;
    let status = world.status().await;
    assert!(status["daemon"].is_object(), "{status}");
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{exit:?}\n{log}");
}
