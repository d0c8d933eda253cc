//! `rapportctl`: the command-line tool for Rapport, over the gateway with an
//! API key, or straight to a service with an internal credential minted
//! from the shared secret (operators and local development).

#![allow(clippy::print_stdout)] // A CLI: printing is its output.

mod feedback;

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use rapport_client::{Auth, RapportClient, with_retries};
use rapport_core::credential::{CredentialKey, Grant, Scope};
use rapport_proto::common::v1::{Channel, LifecycleStage, Money};
use rapport_proto::contacts::v1::*;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "rapportctl", version, about = "Command-line tool for Rapport")]
struct Cli {
    /// The gateway (or, with --credential-secret, a service).
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
    /// Call a service directly with an internal credential minted from this
    /// shared secret, for --tenant (takes precedence over --api-key).
    #[arg(
        long,
        env = "RAPPORT_CREDENTIAL_SECRET",
        global = true,
        hide_env_values = true
    )]
    credential_secret: Option<String>,
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
    /// Tenants (needs the operator key).
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// API keys (needs the operator key).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Create a tenant and print its id.
    Create {
        name: String,
        /// Calls per second through one gateway replica (0: the default).
        #[arg(long, default_value_t = 0)]
        rate_per_second: i32,
        #[arg(long, default_value_t = 0)]
        burst: i32,
    },
    /// Show a tenant.
    Get { id: String },
    /// List tenants.
    List,
    /// Suspend a tenant: its keys stop working within a second.
    Suspend { id: String },
    /// Lift a suspension.
    Resume { id: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key; its secret is printed once.
    Create {
        tenant_id: String,
        /// Such as contacts:write (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List a tenant's keys.
    List { tenant_id: String },
    /// Revoke a key: it stops working within a second.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum ContactsCommand {
    /// Create a contact.
    Create(ContactArgs),
    /// Show a contact.
    Get { id: String },
    /// List contacts, oldest first.
    List {
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// discovery, education, purchase, post-purchase or advocacy.
        #[arg(long, value_parser = parse_stage)]
        stage: Option<LifecycleStage>,
        #[arg(long, default_value_t = 100)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Delete a contact with its timeline.
    Delete { id: String },
    /// Move a contact to a lifecycle stage.
    Stage {
        id: String,
        #[arg(value_parser = parse_stage)]
        stage: LifecycleStage,
        #[arg(long, default_value = "")]
        source: String,
    },
    /// Set a contact's consent on email, sms or push.
    Consent {
        id: String,
        #[arg(long, value_parser = parse_channel)]
        channel: Channel,
        /// subscribed, unsubscribed or unknown.
        #[arg(long, value_parser = parse_consent)]
        status: ConsentStatus,
        #[arg(long, default_value = "")]
        source: String,
    },
    /// Record an interaction event on a contact's timeline.
    RecordEvent {
        id: String,
        /// Such as order.placed.
        #[arg(long = "type")]
        kind: String,
        /// email, sms, push, in-app, chat, web, phone or social.
        #[arg(long, value_parser = parse_channel)]
        channel: Channel,
        /// Amount such as 49.90, with --currency.
        #[arg(long, requires = "currency")]
        revenue: Option<String>,
        #[arg(long)]
        currency: Option<String>,
        /// Your id for the event; recording it again is a no-op.
        #[arg(long, default_value = "")]
        event_id: String,
    },
    /// Show a contact's timeline, newest first.
    Events {
        id: String,
        #[arg(long, default_value_t = 20)]
        page_size: i32,
    },
    /// Print everything stored about a contact.
    Export { id: String },
    /// Erase a contact's personal data and timeline for good.
    Erase { id: String },
}

#[derive(Args)]
struct ContactArgs {
    #[arg(long, default_value = "")]
    email: String,
    #[arg(long, default_value = "")]
    external_id: String,
    #[arg(long, default_value = "")]
    first_name: String,
    #[arg(long, default_value = "")]
    last_name: String,
    #[arg(long, default_value = "")]
    phone: String,
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long, value_parser = parse_stage)]
    stage: Option<LifecycleStage>,
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
    if let Command::Tenants(_) | Command::Keys(_) = &cli.command {
        let operator_key = cli
            .operator_key
            .clone()
            .context("tenants and keys commands need --operator-key (or RAPPORT_OPERATOR_KEY)")?;
        let client = RapportClient::connect(&cli.endpoint, Auth::ApiKey(operator_key))
            .await
            .with_context(|| format!("connecting to {}", cli.endpoint))?;
        return match cli.command {
            Command::Tenants(command) => tenants(&client, command).await,
            Command::Keys(command) => keys(&client, command).await,
            Command::Contacts(_) | Command::Feedback(_) => unreachable!("matched above"),
        };
    }
    let auth = match (&cli.api_key, &cli.credential_secret) {
        (_, Some(secret)) => {
            let tenant = cli.tenant.context("--credential-secret needs --tenant")?;
            let grant = Grant {
                tenant_id: Some(tenant),
                principal: "rapportctl".into(),
                scopes: vec![Scope::all()],
            };
            Auth::Credential(CredentialKey::new(secret)?.mint(&grant, Duration::from_secs(300)))
        }
        (Some(key), None) => Auth::ApiKey(key.clone()),
        (None, None) if matches!(&cli.command, Command::Feedback(c) if feedback::is_public(c)) => {
            Auth::Public
        }
        (None, None) => anyhow::bail!(
            "set --api-key (or RAPPORT_API_KEY), or --credential-secret with --tenant"
        ),
    };
    let client = RapportClient::connect(&cli.endpoint, auth)
        .await
        .with_context(|| format!("connecting to {}", cli.endpoint))?;
    match cli.command {
        Command::Contacts(command) => contacts(&client, command).await,
        Command::Feedback(command) => feedback::run(&client, command).await,
        Command::Tenants(_) | Command::Keys(_) => unreachable!("handled above"),
    }
}

async fn tenants(client: &RapportClient, command: TenantsCommand) -> anyhow::Result<()> {
    use rapport_proto::gateway::v1::*;
    let mut admin = client.gateway_admin();
    let tenant = match command {
        TenantsCommand::Create {
            name,
            rate_per_second,
            burst,
        } => {
            let tenant = Tenant {
                display_name: name,
                rate_limit_per_second: rate_per_second,
                rate_limit_burst: burst,
                ..Default::default()
            };
            admin
                .create_tenant(CreateTenantRequest {
                    tenant: Some(tenant),
                })
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::Get { id } => {
            admin
                .get_tenant(GetTenantRequest { id })
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::List => {
            let mut page_token = String::new();
            loop {
                let page = admin
                    .list_tenants(ListTenantsRequest {
                        page_size: 1000,
                        page_token,
                    })
                    .await?
                    .into_inner();
                for tenant in &page.tenants {
                    println!(
                        "{}  {:<10} {}",
                        tenant.id,
                        tenant_state(tenant.state),
                        tenant.display_name
                    );
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = page.next_page_token;
            }
        }
        TenantsCommand::Suspend { id } => {
            admin
                .suspend_tenant(SuspendTenantRequest { id })
                .await?
                .into_inner()
                .tenant
        }
        TenantsCommand::Resume { id } => {
            admin
                .resume_tenant(ResumeTenantRequest { id })
                .await?
                .into_inner()
                .tenant
        }
    };
    if let Some(tenant) = tenant {
        println!("id         {}", tenant.id);
        println!("name       {}", tenant.display_name);
        println!("state      {}", tenant_state(tenant.state));
    }
    Ok(())
}

fn tenant_state(state: i32) -> String {
    rapport_proto::gateway::v1::TenantState::try_from(state).map_or_else(
        |_| state.to_string(),
        |s| short_name(s.as_str_name(), "TENANT_STATE_"),
    )
}

async fn keys(client: &RapportClient, command: KeysCommand) -> anyhow::Result<()> {
    use rapport_proto::gateway::v1::*;
    let mut admin = client.gateway_admin();
    match command {
        KeysCommand::Create {
            tenant_id,
            scopes,
            name,
        } => {
            let request = CreateApiKeyRequest {
                tenant_id,
                display_name: name,
                scopes,
                expire_time: None,
            };
            let created = admin.create_api_key(request).await?.into_inner();
            let key = created.api_key.unwrap_or_default();
            println!("id         {}", key.id);
            println!("prefix     {}", key.prefix);
            println!("scopes     {}", key.scopes.join(" "));
            println!("secret     {}", created.secret);
            println!("(the secret is shown once: keep it now)");
        }
        KeysCommand::List { tenant_id } => {
            let page = admin
                .list_api_keys(ListApiKeysRequest {
                    tenant_id,
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            for key in &page.api_keys {
                let state = if key.revoke_time.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}  {}  {:<8} {}  {}",
                    key.id,
                    key.prefix,
                    state,
                    key.scopes.join(" "),
                    key.display_name
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let key = admin
                .revoke_api_key(RevokeApiKeyRequest { id })
                .await?
                .into_inner()
                .api_key
                .unwrap_or_default();
            println!("revoked {} ({})", key.id, key.prefix);
        }
    }
    Ok(())
}

async fn contacts(client: &RapportClient, command: ContactsCommand) -> anyhow::Result<()> {
    let mut contacts = client.contacts();
    match command {
        ContactsCommand::Create(args) => {
            let contact = Contact {
                email: args.email,
                external_id: args.external_id,
                first_name: args.first_name,
                last_name: args.last_name,
                phone: args.phone,
                tags: args.tags,
                lifecycle_stage: args.stage.unwrap_or_default() as i32,
                ..Default::default()
            };
            // A request id makes the retry of a create safe.
            let request = CreateContactRequest {
                contact: Some(contact),
                request_id: Uuid::now_v7().to_string(),
            };
            let created = with_retries(3, || {
                let (mut c, r) = (contacts.clone(), request.clone());
                async move { c.create_contact(r).await }
            })
            .await?;
            print_contact(created.into_inner().contact.as_ref());
        }
        ContactsCommand::Get { id } => {
            let found = with_retries(3, || {
                let (mut c, r) = (contacts.clone(), GetContactRequest { id: id.clone() });
                async move { c.get_contact(r).await }
            })
            .await?;
            print_contact(found.into_inner().contact.as_ref());
        }
        ContactsCommand::List {
            tag,
            email,
            stage,
            page_size,
            page_token,
        } => {
            let request = ListContactsRequest {
                page_size,
                page_token,
                email: email.unwrap_or_default(),
                tag: tag.unwrap_or_default(),
                lifecycle_stage: stage.unwrap_or_default() as i32,
                updated_since: None,
            };
            let page = with_retries(3, || {
                let (mut c, r) = (contacts.clone(), request.clone());
                async move { c.list_contacts(r).await }
            })
            .await?
            .into_inner();
            for contact in &page.contacts {
                println!(
                    "{}  {:<30} {:<24} {:<14} {}",
                    contact.id,
                    contact.email,
                    format!("{} {}", contact.first_name, contact.last_name).trim(),
                    stage_name(contact.lifecycle_stage),
                    contact.tags.join(",")
                );
            }
            if !page.next_page_token.is_empty() {
                println!("next page: --page-token {}", page.next_page_token);
            }
        }
        ContactsCommand::Delete { id } => {
            contacts
                .delete_contact(DeleteContactRequest {
                    id: id.clone(),
                    etag: String::new(),
                })
                .await?;
            println!("deleted {id}");
        }
        ContactsCommand::Stage { id, stage, source } => {
            let request = ChangeLifecycleStageRequest {
                contact_id: id,
                lifecycle_stage: stage as i32,
                source,
            };
            let changed = contacts.change_lifecycle_stage(request).await?.into_inner();
            print_contact(changed.contact.as_ref());
        }
        ContactsCommand::Consent {
            id,
            channel,
            status,
            source,
        } => {
            let consent = Consent {
                channel: channel as i32,
                status: status as i32,
                change_time: None,
                source,
            };
            let changed = contacts
                .change_consent(ChangeConsentRequest {
                    contact_id: id,
                    consent: Some(consent),
                })
                .await?
                .into_inner();
            print_contact(changed.contact.as_ref());
        }
        ContactsCommand::RecordEvent {
            id,
            kind,
            channel,
            revenue,
            currency,
            event_id,
        } => {
            let revenue = match (revenue, currency) {
                (Some(amount), Some(currency_code)) => Some(parse_money(&amount, currency_code)?),
                _ => None,
            };
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            let event = Event {
                contact_id: id,
                client_event_id: event_id,
                r#type: kind,
                channel: channel as i32,
                occur_time: Some(prost_types::Timestamp {
                    seconds: now.as_secs() as i64,
                    nanos: now.subsec_nanos() as i32,
                }),
                revenue,
                ..Default::default()
            };
            let recorded = contacts
                .record_events(RecordEventsRequest {
                    events: vec![event],
                })
                .await?
                .into_inner();
            println!(
                "recorded {}, already recorded {}",
                recorded.recorded_count, recorded.duplicate_count
            );
        }
        ContactsCommand::Events { id, page_size } => {
            let request = ListEventsRequest {
                contact_id: id,
                page_size,
                ..Default::default()
            };
            let page = with_retries(3, || {
                let (mut c, r) = (contacts.clone(), request.clone());
                async move { c.list_events(r).await }
            })
            .await?
            .into_inner();
            for event in &page.events {
                print_event(event);
            }
        }
        ContactsCommand::Export { id } => {
            let mut stream = contacts
                .export_contact(ExportContactRequest { id })
                .await?
                .into_inner();
            while let Some(part) = stream.message().await? {
                match part.part {
                    Some(export_contact_response::Part::Profile(profile)) => {
                        print_contact(profile.contact.as_ref());
                        for change in &profile.lifecycle_history {
                            println!(
                                "stage change   {} -> {} ({})",
                                stage_name(change.from_stage),
                                stage_name(change.to_stage),
                                change.source
                            );
                        }
                        for change in &profile.consent_history {
                            println!(
                                "consent change {} {} -> {} ({})",
                                channel_name(change.channel),
                                consent_name(change.from_status),
                                consent_name(change.to_status),
                                change.source
                            );
                        }
                    }
                    Some(export_contact_response::Part::Events(chunk)) => {
                        chunk.events.iter().for_each(print_event)
                    }
                    None => {}
                }
            }
        }
        ContactsCommand::Erase { id } => {
            let erased = contacts
                .erase_contact(EraseContactRequest { id })
                .await?
                .into_inner();
            println!(
                "erased {}: {} events, {} history entries",
                erased.id, erased.erased_event_count, erased.erased_history_count
            );
        }
    }
    Ok(())
}

fn print_contact(contact: Option<&Contact>) {
    let Some(c) = contact else { return };
    println!("id         {}", c.id);
    for (label, value) in [
        ("external   ", &c.external_id),
        ("email      ", &c.email),
        ("phone      ", &c.phone),
    ] {
        if !value.is_empty() {
            println!("{label}{value}");
        }
    }
    println!("name       {} {}", c.first_name, c.last_name);
    println!("stage      {}", stage_name(c.lifecycle_stage));
    println!("tags       {}", c.tags.join(", "));
    for consent in &c.consents {
        println!(
            "consent    {} {} ({})",
            channel_name(consent.channel),
            consent_name(consent.status),
            consent.source
        );
    }
    println!("etag       {}", c.etag);
}

fn print_event(event: &Event) {
    let when = event.occur_time.as_ref().map_or(0, |t| t.seconds);
    let when = rapport_core::convert::to_datetime(&prost_types::Timestamp {
        seconds: when,
        nanos: 0,
    })
    .map(|t| t.to_rfc3339())
    .unwrap_or_default();
    let revenue = event
        .revenue
        .as_ref()
        .map(|m| {
            format!(
                "  {}.{:02} {}",
                m.units,
                m.nanos / 10_000_000,
                m.currency_code
            )
        })
        .unwrap_or_default();
    println!(
        "{when}  {:<8} {}{revenue}",
        channel_name(event.channel),
        event.r#type
    );
}

fn short_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_lowercase()
        .replace('_', "-")
}

fn stage_name(stage: i32) -> String {
    LifecycleStage::try_from(stage).map_or_else(
        |_| stage.to_string(),
        |s| short_name(s.as_str_name(), "LIFECYCLE_STAGE_"),
    )
}

fn channel_name(channel: i32) -> String {
    Channel::try_from(channel).map_or_else(
        |_| channel.to_string(),
        |c| short_name(c.as_str_name(), "CHANNEL_"),
    )
}

fn consent_name(status: i32) -> String {
    ConsentStatus::try_from(status).map_or_else(
        |_| status.to_string(),
        |s| short_name(s.as_str_name(), "CONSENT_STATUS_"),
    )
}

fn enum_arg(text: &str, prefix: &str) -> String {
    format!("{prefix}{}", text.to_uppercase().replace('-', "_"))
}

fn parse_stage(text: &str) -> Result<LifecycleStage, String> {
    LifecycleStage::from_str_name(&enum_arg(text, "LIFECYCLE_STAGE_"))
        .ok_or_else(|| format!("unknown stage {text:?}"))
}

fn parse_channel(text: &str) -> Result<Channel, String> {
    Channel::from_str_name(&enum_arg(text, "CHANNEL_"))
        .ok_or_else(|| format!("unknown channel {text:?}"))
}

fn parse_consent(text: &str) -> Result<ConsentStatus, String> {
    ConsentStatus::from_str_name(&enum_arg(text, "CONSENT_STATUS_"))
        .ok_or_else(|| format!("unknown consent status {text:?}"))
}

/// "49.9" -> 49 units and 900,000,000 nanos.
fn parse_money(amount: &str, currency_code: String) -> anyhow::Result<Money> {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    anyhow::ensure!(
        fraction.len() <= 9 && fraction.bytes().all(|b| b.is_ascii_digit()),
        "invalid amount {amount:?}"
    );
    let units: i64 = whole
        .parse()
        .with_context(|| format!("invalid amount {amount:?}"))?;
    let nanos: i32 = format!("{fraction:0<9}").parse()?;
    Ok(Money {
        currency_code,
        units,
        nanos: if units < 0 || whole.starts_with('-') {
            -nanos
        } else {
            nanos
        },
    })
}
