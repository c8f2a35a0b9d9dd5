//! `consentry emit`: hand events to the running daemon through its ingest
//! socket, for installers and shell scripts. Exits only once every line is
//! acknowledged (durable, rejected or discarded), and non-zero if any line
//! was rejected.

use std::process::ExitCode;

use anyhow::Context;
use consentry::ingest::client::{self, EmitSummary};

use super::{OutputArgs, print_json};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  consentry emit install_task --field task=install --field status=failed --field error_code=1603
  consentry emit activation --field method=key_file
  consentry emit record --field purpose=link_following --field 'fields={\"web_page_id\":\"renew\"}'
  producer | consentry emit -")]
pub struct EmitArgs {
    /// The event kind (update_task, activation, install_task, scan_verdict,
    /// ksn_request, record), or `-` to read JSON lines from stdin.
    pub kind: String,
    /// A field of the event, `key=value`. The value is taken as JSON when it
    /// is a number, true/false, an object or a quoted string; otherwise as
    /// text.
    #[arg(long = "field", short = 'f', value_name = "KEY=VALUE")]
    pub fields: Vec<String>,
}

pub async fn run(args: &EmitArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let config = output.config.load()?;
    let socket = config.ingest_socket();
    let summary = if args.kind == "-" {
        if !args.fields.is_empty() {
            anyhow::bail!("--field cannot be combined with `-` (stdin carries whole events)");
        }
        client::send(&socket, tokio::io::stdin()).await?
    } else {
        let line = event_line(&args.kind, &args.fields)?;
        client::send(&socket, line.as_bytes()).await?
    };
    if output.json {
        print_json("consentry.emit/1", &summary)?;
    } else {
        print_summary(&summary);
    }
    Ok(if summary.rejected > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `{"kind": KIND, key: value, …}` as one line.
fn event_line(kind: &str, fields: &[String]) -> anyhow::Result<String> {
    let mut event = serde_json::Map::new();
    event.insert("kind".into(), kind.into());
    for field in fields {
        let (key, value) = field
            .split_once('=')
            .with_context(|| format!("--field `{field}` is not KEY=VALUE"))?;
        if key.is_empty() || key == "kind" {
            anyhow::bail!("--field `{field}`: the key must be a field name other than `kind`");
        }
        event.insert(key.to_owned(), field_value(value));
    }
    let mut line = serde_json::Value::Object(event).to_string();
    line.push('\n');
    Ok(line)
}

fn field_value(text: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(
            value @ (serde_json::Value::Number(_)
            | serde_json::Value::Bool(_)
            | serde_json::Value::Object(_)
            | serde_json::Value::String(_)),
        ) => value,
        _ => serde_json::Value::String(text.to_owned()),
    }
}

fn print_summary(summary: &EmitSummary) {
    say!(
        "{} line(s): {} accepted, {} rejected, {} discarded (purpose not allowed)",
        summary.lines,
        summary.accepted,
        summary.rejected,
        summary.discarded
    );
    for error in &summary.errors {
        say!("  line {}: {} ({})", error.line, error.message, error.error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_typed_the_way_a_shell_user_means_them() {
        let line = event_line(
            "install_task",
            &[
                "task=install".into(),
                "error_code=1603".into(),
                "ok=true".into(),
                "code=\"12345\"".into(),
            ],
        )
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["task"], "install");
        assert_eq!(value["error_code"], 1603);
        assert_eq!(value["ok"], true);
        assert_eq!(value["code"], "12345");
        assert!(event_line("x", &["novalue".into()]).is_err());
    }
}
