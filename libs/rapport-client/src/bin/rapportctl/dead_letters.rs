//! `rapportctl dead-letters`: events a service's feed consumer set aside,
//! straight to the service with a service credential (not through the
//! gateway).

use clap::Subcommand;
use rapport_client::RapportClient;
use rapport_proto::events::v1::dead_letter_service_client::DeadLetterServiceClient;
use rapport_proto::events::v1::{ListDeadLettersRequest, ReplayDeadLettersRequest};

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// List a consumer's dead letters, oldest first.
    List {
        /// The consumer, such as feedback.contacts.
        consumer: String,
    },
    /// Apply a consumer's dead letters again (after a fix): those that apply
    /// leave the list.
    Replay {
        /// The consumer, such as feedback.contacts.
        consumer: String,
    },
}

pub async fn run(client: &RapportClient, command: DeadLettersCommand) -> anyhow::Result<()> {
    let mut letters = DeadLetterServiceClient::new(client.transport());
    match command {
        DeadLettersCommand::List { consumer } => {
            let mut page_token = String::new();
            loop {
                let page = letters
                    .list_dead_letters(ListDeadLettersRequest {
                        consumer: consumer.clone(),
                        page_size: 0,
                        page_token,
                    })
                    .await?
                    .into_inner();
                for letter in &page.dead_letters {
                    let event = letter.event.clone().unwrap_or_default();
                    println!(
                        "{:>10}  {:<28} {}  tries {}  {}",
                        event.position, event.r#type, event.event_id, letter.attempts, letter.error
                    );
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = page.next_page_token;
            }
        }
        DeadLettersCommand::Replay { consumer } => {
            let replayed = letters
                .replay_dead_letters(ReplayDeadLettersRequest { consumer })
                .await?
                .into_inner();
            println!(
                "replayed {}, failed again {}",
                replayed.replayed, replayed.failed
            );
            Ok(())
        }
    }
}
