//! `rapportctl`: the command-line tool for Rapport, over the gateway with an
//! API key, or straight to a service with internal credentials signed by an
//! identity the services trust (operators and local development).

#![allow(clippy::print_stdout)] // A CLI: printing is its output.

mod admin;
mod contacts;
mod dead_letters;
mod feedback;
mod identity;
mod privacy;
mod segments;

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rapport_client::{Auth, RapportClient};
use rapport_core::credential::{Grant, Identity, Outbound, Scope};
use rapport_proto::common::v1::Channel;
use uuid::Uuid;

use crate::admin::{KeysCommand, TenantsCommand};
use crate::contacts::ContactsCommand;

#[derive(Parser)]
#[command(name = "rapportctl", version, about = "Command-line tool for Rapport")]
struct Cli {
    /// The gateway (or, with --identity-key, a service).
    #[arg(
        long,
        env = "RAPPORT_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    endpoint: String,
    /// API key for calls through the gateway.
    #[arg(long, env = "RAPPORT_API_KEY", global = true, hide_env_values = true)]
    api_key: Option<String>,
    /// Call the service at --endpoint directly, with credentials signed by
    /// this private key (PKCS#8 PEM), for --tenant (takes precedence over
    /// --api-key). The services must trust it under --identity-name.
    #[arg(
        long,
        env = "RAPPORT_IDENTITY_KEY",
        global = true,
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    identity_key: Option<String>,
    /// The issuer name the services trust --identity-key under.
    #[arg(
        long,
        env = "RAPPORT_IDENTITY_NAME",
        default_value = "operator",
        global = true
    )]
    identity_name: String,
    /// The service at --endpoint, such as contacts: the audience of the
    /// credentials --identity-key signs.
    #[arg(long, env = "RAPPORT_SERVICE", global = true)]
    service: Option<String>,
    /// Tenant of the minted credential.
    #[arg(long, env = "RAPPORT_TENANT", global = true)]
    tenant: Option<Uuid>,
    /// The gateway's operator key, for `tenants` and `keys` commands.
    #[arg(
        long,
        env = "RAPPORT_OPERATOR_KEY",
        global = true,
        hide_env_values = true
    )]
    operator_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Contacts: profiles, consent, lifecycle stage, timeline.
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Feedback: surveys, invitations, answers, summaries.
    #[command(subcommand)]
    Feedback(feedback::FeedbackCommand),
    /// Segments: rules and lists, their members, previews and explanations.
    #[command(subcommand)]
    Segments(segments::SegmentsCommand),
    /// Tenants (needs the operator key).
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// API keys (needs the operator key).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A person's data across every service.
    #[command(subcommand)]
    Privacy(privacy::PrivacyCommand),
    /// Events a feed consumer set aside: straight to the consuming service
    /// (--endpoint, --service), with --identity-key and no --tenant.
    #[command(subcommand)]
    DeadLetters(dead_letters::DeadLettersCommand),
    /// Keys that sign internal credentials: make one, show its public half.
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// A gRPC status as its code, message and field violations; other errors
/// with their causes.
fn describe(error: &anyhow::Error) -> String {
    use tonic_types::StatusExt as _;
    let Some(status) = error.downcast_ref::<tonic::Status>() else {
        return format!("{error:#}");
    };
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(bad_request) = status.get_error_details().bad_request() {
        for violation in &bad_request.field_violations {
            text.push_str(&format!(
                "\n  {}: {}",
                violation.field, violation.description
            ));
        }
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Identity(command) = cli.command {
        return identity::run(command);
    }
    if let Command::Tenants(_) | Command::Keys(_) = &cli.command {
        let operator_key = cli
            .operator_key
            .clone()
            .context("tenants and keys commands need --operator-key (or RAPPORT_OPERATOR_KEY)")?;
        let client = RapportClient::connect(&cli.endpoint, Auth::ApiKey(operator_key))
            .await
            .with_context(|| format!("connecting to {}", cli.endpoint))?;
        return match cli.command {
            Command::Tenants(command) => admin::tenants(&client, command).await,
            Command::Keys(command) => admin::keys(&client, command).await,
            _ => unreachable!("matched above"),
        };
    }
    let auth = match (&cli.api_key, &cli.identity_key) {
        (_, Some(key)) => {
            // A service credential (no tenant) for internal calls, else one
            // for --tenant.
            let tenant_id = match &cli.command {
                Command::DeadLetters(_) => None,
                _ => Some(cli.tenant.context("--identity-key needs --tenant")?),
            };
            let service = cli
                .service
                .clone()
                .context("--identity-key needs --service: the service at --endpoint")?;
            let identity = Identity::from_pem(&cli.identity_name, key)?;
            let grant = Grant {
                tenant_id,
                principal: format!("rapportctl:{}", cli.identity_name),
                scopes: vec![Scope::all()],
            };
            Auth::Internal(Outbound::new(Arc::new(identity), &service, grant))
        }
        (Some(key), None) => Auth::ApiKey(key.clone()),
        (None, None) if matches!(&cli.command, Command::Feedback(c) if feedback::is_public(c)) => {
            Auth::Public
        }
        (None, None) => anyhow::bail!(
            "set --api-key (or RAPPORT_API_KEY), or --identity-key with --service and --tenant"
        ),
    };
    let client = RapportClient::connect(&cli.endpoint, auth)
        .await
        .with_context(|| format!("connecting to {}", cli.endpoint))?;
    match cli.command {
        Command::Contacts(command) => contacts::run(&client, command).await,
        Command::Feedback(command) => feedback::run(&client, command).await,
        Command::Segments(command) => segments::run(&client, command).await,
        Command::Privacy(command) => privacy::run(&client, command).await,
        Command::DeadLetters(command) => dead_letters::run(&client, command).await,
        Command::Tenants(_) | Command::Keys(_) | Command::Identity(_) => {
            unreachable!("handled above")
        }
    }
}

pub(crate) fn short_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_lowercase()
        .replace('_', "-")
}

pub(crate) fn channel_name(channel: i32) -> String {
    Channel::try_from(channel).map_or_else(
        |_| channel.to_string(),
        |c| short_name(c.as_str_name(), "CHANNEL_"),
    )
}

pub(crate) fn enum_arg(text: &str, prefix: &str) -> String {
    format!("{prefix}{}", text.to_uppercase().replace('-', "_"))
}

pub(crate) fn parse_channel(text: &str) -> Result<Channel, String> {
    Channel::from_str_name(&enum_arg(text, "CHANNEL_"))
        .ok_or_else(|| format!("unknown channel {text:?}"))
}
