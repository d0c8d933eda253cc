//! `rapportctl privacy`: a person's data across every service.

use clap::Subcommand;
use prost_reflect::DynamicMessage;
use rapport_client::RapportClient;
use rapport_proto::contacts::v1::ExportContactRequest;
use rapport_proto::feedback::v1::ExportContactFeedbackRequest;
use rapport_proto::segmentation::v1::ExportContactSegmentsRequest;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum PrivacyCommand {
    /// Everything Rapport stores about a contact, from every service that
    /// holds personal data, as one JSON document (a person's right of
    /// access). Each service's part is one consistent snapshot.
    Export { contact_id: String },
}

pub async fn run(client: &RapportClient, command: PrivacyCommand) -> anyhow::Result<()> {
    match command {
        PrivacyCommand::Export { contact_id } => {
            let mut contacts = Vec::new();
            let mut stream = client
                .contacts()
                .export_contact(ExportContactRequest {
                    id: contact_id.clone(),
                })
                .await?
                .into_inner();
            while let Some(part) = stream.message().await? {
                contacts.push(to_json(&part)?);
            }
            let mut feedback = Vec::new();
            let mut stream = client
                .feedback()
                .export_contact_feedback(ExportContactFeedbackRequest {
                    contact_id: contact_id.clone(),
                })
                .await?
                .into_inner();
            while let Some(part) = stream.message().await? {
                feedback.push(to_json(&part)?);
            }
            let mut segmentation = Vec::new();
            let mut stream = client
                .segmentation()
                .export_contact_segments(ExportContactSegmentsRequest {
                    contact_id: contact_id.clone(),
                })
                .await?
                .into_inner();
            while let Some(part) = stream.message().await? {
                segmentation.push(to_json(&part)?);
            }
            let document = json!({
                "contact_id": contact_id,
                "contacts": contacts,
                "feedback": feedback,
                "segmentation": segmentation,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
    }
}

/// `message` in the proto3 JSON mapping.
pub(crate) fn to_json<M: prost::Message + prost::Name>(message: &M) -> anyhow::Result<Value> {
    let descriptor = rapport_proto::descriptor_pool()
        .get_message_by_name(&M::full_name())
        .ok_or_else(|| anyhow::anyhow!("{} is not in the contract", M::full_name()))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    Ok(serde_json::to_value(&dynamic)?)
}
