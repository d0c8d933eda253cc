//! `rapportctl segments`: segments from JSON rule files, their builds and
//! members, previews and explanations.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use prost_reflect::DynamicMessage;
use rapport_client::RapportClient;
use rapport_proto::segmentation::v1::explain_membership_request::Target;
use rapport_proto::segmentation::v1::*;

use crate::privacy::to_json;
use crate::short_name;

#[derive(Subcommand)]
pub enum SegmentsCommand {
    /// Create a dynamic segment from a rule file (a
    /// rapport.segmentation.v1.Rule in the proto3 JSON mapping), or a list
    /// with --list.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// The rule file; omit it with --list.
        #[arg(long, required_unless_present = "list", conflicts_with = "list")]
        rule: Option<PathBuf>,
        /// A list: members are added and removed by id.
        #[arg(long)]
        list: bool,
    },
    /// List segments.
    List {
        /// Archived segments too.
        #[arg(long)]
        archived: bool,
    },
    /// Show one segment, its rule and its last build, as JSON.
    Get { id: String },
    /// Build a dynamic segment again now.
    Build { id: String },
    /// Archive a segment (deleted for good after the retention period).
    Delete { id: String },
    /// Count and sample the contacts a rule file selects, within a budget.
    Preview {
        rule: PathBuf,
        /// How many member ids to show.
        #[arg(long, default_value_t = 10)]
        sample: i32,
        /// Milliseconds the count may take before it is estimated.
        #[arg(long, default_value_t = 2000)]
        budget_ms: u64,
    },
    /// Explain, node by node, why a contact is or is not in a segment (or
    /// selected by a rule file).
    Explain {
        contact_id: String,
        /// A segment's rule.
        #[arg(long, required_unless_present = "rule", conflicts_with = "rule")]
        segment: Option<String>,
        /// A rule file.
        #[arg(long)]
        rule: Option<PathBuf>,
    },
    /// Print every member id of a segment, one per line (streamed).
    Members { id: String },
    /// Count a segment's members.
    Count { id: String },
    /// Print entries into and exits from a segment (or a contact's, with
    /// --contact and no segment), newest first, with rule version and cause.
    History {
        #[arg(required_unless_present = "contact")]
        id: Option<String>,
        /// Only this contact's.
        #[arg(long)]
        contact: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Create a lead scoring model from a file (a
    /// rapport.segmentation.v1.ScoringModel in the proto3 JSON mapping).
    CreateModel { file: PathBuf },
    /// List the scoring models.
    Models,
    /// A contact's score by a model now, with each rule's contribution.
    Score {
        model_id: String,
        contact_id: String,
    },
    /// Add contacts to a list.
    Add {
        id: String,
        #[arg(required = true)]
        contact_ids: Vec<String>,
    },
    /// Remove contacts from a list.
    Remove {
        id: String,
        #[arg(required = true)]
        contact_ids: Vec<String>,
    },
}

/// A message of type `M` read from `path` in the proto3 JSON mapping.
fn read_json<M: prost::Name + Default>(path: &PathBuf) -> anyhow::Result<M> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let descriptor = rapport_proto::descriptor_pool()
        .get_message_by_name(&M::full_name())
        .with_context(|| format!("the contract holds {}", M::full_name()))?;
    let mut json = serde_json::Deserializer::from_str(&text);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut json).with_context(|| {
        format!(
            "{} is not a {} in the proto3 JSON mapping",
            path.display(),
            M::NAME
        )
    })?;
    Ok(dynamic.transcode_to::<M>()?)
}

fn print_segment(segment: &Segment) {
    let build = segment.build.clone().unwrap_or_default();
    let state = if segment.kind() == SegmentKind::List {
        "list".to_owned()
    } else {
        short_name(build.state().as_str_name(), "BUILD_STATE_")
    };
    let archived = if segment.archive_time.is_some() {
        "  (archived)"
    } else {
        ""
    };
    println!(
        "{}  {:<8} v{:<3} {:>9} members  {}{archived}",
        segment.id, state, segment.rule_version, segment.member_count, segment.name
    );
}

fn print_node(node: &NodeExplanation, depth: usize) {
    let mark = if node.matched { "yes" } else { "no " };
    let observed = if node.observed.is_empty() {
        String::new()
    } else {
        format!("  [{}]", node.observed)
    };
    println!(
        "{mark} {}{}{observed}  ({})",
        "  ".repeat(depth),
        node.condition,
        node.path
    );
    for child in &node.children {
        print_node(child, depth + 1);
    }
}

pub async fn run(client: &RapportClient, command: SegmentsCommand) -> anyhow::Result<()> {
    let mut segmentation = client.segmentation();
    match command {
        SegmentsCommand::Create {
            name,
            description,
            rule,
            list,
        } => {
            let rule = rule.as_ref().map(read_json::<Rule>).transpose()?;
            let kind = if list {
                SegmentKind::List
            } else {
                SegmentKind::Dynamic
            };
            let created = segmentation
                .create_segment(CreateSegmentRequest {
                    segment: Some(Segment {
                        name,
                        description,
                        kind: kind.into(),
                        rule,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await?
                .into_inner()
                .segment
                .unwrap_or_default();
            print_segment(&created);
        }
        SegmentsCommand::List { archived } => {
            let mut page_token = String::new();
            loop {
                let page = segmentation
                    .list_segments(ListSegmentsRequest {
                        page_size: 1000,
                        page_token,
                        show_archived: archived,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                page.segments.iter().for_each(print_segment);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        SegmentsCommand::Get { id } => {
            let segment = segmentation
                .get_segment(GetSegmentRequest { id })
                .await?
                .into_inner();
            println!("{}", serde_json::to_string_pretty(&to_json(&segment)?)?);
        }
        SegmentsCommand::Build { id } => {
            let segment = segmentation
                .build_segment(BuildSegmentRequest { id })
                .await?
                .into_inner()
                .segment
                .unwrap_or_default();
            print_segment(&segment);
        }
        SegmentsCommand::Delete { id } => {
            let segment = segmentation
                .delete_segment(DeleteSegmentRequest {
                    id,
                    etag: String::new(),
                })
                .await?
                .into_inner()
                .segment
                .unwrap_or_default();
            print_segment(&segment);
        }
        SegmentsCommand::Preview {
            rule,
            sample,
            budget_ms,
        } => {
            let budget = std::time::Duration::from_millis(budget_ms);
            let preview = segmentation
                .preview_rule(PreviewRuleRequest {
                    rule: Some(read_json::<Rule>(&rule)?),
                    sample_size: sample,
                    time_budget: Some(budget.try_into()?),
                })
                .await?
                .into_inner();
            if preview.estimated {
                println!(
                    "about {} of {} contacts (95%: {} to {}), estimated: the budget ran out",
                    preview.count, preview.contact_count, preview.count_low, preview.count_high
                );
            } else {
                println!("{} of {} contacts", preview.count, preview.contact_count);
            }
            for id in preview.sample_contact_ids {
                println!("  {id}");
            }
        }
        SegmentsCommand::Explain {
            contact_id,
            segment,
            rule,
        } => {
            let target = match (segment, rule) {
                (Some(segment), _) => Target::SegmentId(segment),
                (None, Some(rule)) => Target::Rule(read_json::<Rule>(&rule)?),
                (None, None) => anyhow::bail!("give --segment or --rule"),
            };
            let explained = segmentation
                .explain_membership(ExplainMembershipRequest {
                    contact_id,
                    target: Some(target),
                })
                .await?
                .into_inner();
            if let Some(root) = &explained.root {
                print_node(root, 0);
            }
        }
        SegmentsCommand::Members { id } => {
            let mut stream = segmentation
                .export_segment_members(ExportSegmentMembersRequest { segment_id: id })
                .await?
                .into_inner();
            while let Some(chunk) = stream.message().await? {
                for id in chunk.contact_ids {
                    println!("{id}");
                }
            }
        }
        SegmentsCommand::Count { id } => {
            let count = segmentation
                .count_segment(CountSegmentRequest { segment_id: id })
                .await?
                .into_inner();
            println!("{}", count.member_count);
        }
        SegmentsCommand::History { id, contact, limit } => {
            let mut page_token = String::new();
            let mut printed = 0;
            while printed < limit {
                let page = segmentation
                    .list_membership_history(ListMembershipHistoryRequest {
                        segment_id: id.clone().unwrap_or_default(),
                        contact_id: contact.clone().unwrap_or_default(),
                        page_size: i32::try_from(limit - printed).unwrap_or(1000).min(1000),
                        page_token,
                    })
                    .await?
                    .into_inner();
                for change in &page.changes {
                    let time = change
                        .change_time
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    println!(
                        "{time} {} {} {} v{} {}",
                        if change.entered { "entered" } else { "exited " },
                        change.segment_id,
                        change.contact_id,
                        change.rule_version,
                        short_name(change.cause().as_str_name(), "CHANGE_CAUSE_"),
                    );
                }
                printed += page.changes.len();
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        SegmentsCommand::CreateModel { file } => {
            let model = segmentation
                .create_scoring_model(CreateScoringModelRequest {
                    model: Some(read_json::<ScoringModel>(&file)?),
                    request_id: String::new(),
                })
                .await?
                .into_inner()
                .model
                .unwrap_or_default();
            println!("{} {}", model.id, model.name);
        }
        SegmentsCommand::Models => {
            let listed = segmentation
                .list_scoring_models(ListScoringModelsRequest {
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            for model in listed.models {
                println!("{} {} ({} rules)", model.id, model.name, model.rules.len());
            }
        }
        SegmentsCommand::Score {
            model_id,
            contact_id,
        } => {
            let scored = segmentation
                .get_contact_score(GetContactScoreRequest {
                    model_id,
                    contact_id,
                })
                .await?
                .into_inner();
            println!("{:.2}", scored.score);
            for part in scored.contributions {
                println!(
                    "  {:>+10.2}  {} x {:+} points  {}  ({})",
                    part.contributed, part.matched, part.points, part.condition, part.path
                );
            }
        }
        SegmentsCommand::Add { id, contact_ids } => {
            let added = segmentation
                .add_list_members(AddListMembersRequest {
                    segment_id: id,
                    contact_ids,
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            println!(
                "added {}, already members {}",
                added.added_count, added.unchanged_count
            );
            for id in added.unknown_contact_ids {
                println!("unknown contact {id}");
            }
        }
        SegmentsCommand::Remove { id, contact_ids } => {
            let removed = segmentation
                .remove_list_members(RemoveListMembersRequest {
                    segment_id: id,
                    contact_ids,
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            println!(
                "removed {}, not members {}",
                removed.removed_count, removed.unchanged_count
            );
        }
    }
    Ok(())
}
