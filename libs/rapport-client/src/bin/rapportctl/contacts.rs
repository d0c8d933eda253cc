//! `rapportctl contacts`: profiles, consent, lifecycle stage, timeline.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use rapport_client::{RapportClient, with_retries};
use rapport_proto::common::v1::{Channel, LifecycleStage, Money};
use rapport_proto::contacts::v1::*;
use uuid::Uuid;

use crate::{channel_name, enum_arg, parse_channel, short_name};

#[derive(Subcommand)]
pub enum ContactsCommand {
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
        /// Only these contacts (repeat the flag); ids of no live contact
        /// are left out.
        #[arg(long = "id")]
        ids: Vec<String>,
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
pub struct ContactArgs {
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

pub async fn run(client: &RapportClient, command: ContactsCommand) -> anyhow::Result<()> {
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
            ids,
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
                ids,
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
                use export_contact_response::Part;
                match part.part {
                    Some(Part::Profile(profile)) => print_contact(profile.contact.as_ref()),
                    Some(Part::LifecycleChanges(page)) => {
                        for change in &page.changes {
                            println!(
                                "stage change   {} -> {} ({})",
                                stage_name(change.from_stage),
                                stage_name(change.to_stage),
                                change.source
                            );
                        }
                    }
                    Some(Part::ConsentChanges(page)) => {
                        for change in &page.changes {
                            println!(
                                "consent change {} {} -> {} ({})",
                                channel_name(change.channel),
                                consent_name(change.from_status),
                                consent_name(change.to_status),
                                change.source
                            );
                        }
                    }
                    Some(Part::Merges(page)) => {
                        for merge in &page.merges {
                            println!("merged         {}", merge.merged_id);
                        }
                    }
                    Some(Part::Events(chunk)) => chunk.events.iter().for_each(print_event),
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

fn stage_name(stage: i32) -> String {
    LifecycleStage::try_from(stage).map_or_else(
        |_| stage.to_string(),
        |s| short_name(s.as_str_name(), "LIFECYCLE_STAGE_"),
    )
}

fn consent_name(status: i32) -> String {
    ConsentStatus::try_from(status).map_or_else(
        |_| status.to_string(),
        |s| short_name(s.as_str_name(), "CONSENT_STATUS_"),
    )
}

fn parse_stage(text: &str) -> Result<LifecycleStage, String> {
    LifecycleStage::from_str_name(&enum_arg(text, "LIFECYCLE_STAGE_"))
        .ok_or_else(|| format!("unknown stage {text:?}"))
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
