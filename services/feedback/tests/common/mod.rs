//! Starts the contacts and feedback services on one database for a test:
//! feedback follows the contacts feed, so erasures reach it.

#![allow(dead_code)] // Each test binary uses a different part of this.

use std::collections::BTreeMap;

use rapport_core::credential::Outbound;
use rapport_proto::common::v1::Channel;
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use rapport_proto::contacts::v1::{Contact, CreateContactRequest};
use rapport_proto::feedback::v1::answer::Value;
use rapport_proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use rapport_proto::feedback::v1::*;
use rapport_testkit::{TestDatabase, TestServer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel as Transport;
use uuid::Uuid;

pub type Client = FeedbackServiceClient<InterceptedService<Transport, Outbound>>;

/// Fields drop in order: the servers stop before their database goes.
pub struct Harness {
    pub feedback: TestServer,
    pub contacts: TestServer,
    pub db: TestDatabase,
}

pub async fn start() -> Harness {
    let db = TestDatabase::create().await;
    let contacts_config = rapport_testkit::config(&rapport_contacts::SERVICE, &db, &[]);
    let contacts = TestServer::start(&rapport_contacts::SERVICE, move |listener, shutdown| {
        rapport_contacts::serve(contacts_config, listener, shutdown)
    })
    .await;
    let feedback = start_feedback(&db, &contacts).await;
    Harness {
        feedback,
        contacts,
        db,
    }
}

/// The feedback service on `db`, following `contacts`.
pub async fn start_feedback(db: &TestDatabase, contacts: &TestServer) -> TestServer {
    let contacts_url = format!("http://{}", contacts.addr);
    let config = rapport_testkit::config(
        &rapport_feedback::SERVICE,
        db,
        &["--contacts-url", &contacts_url],
    );
    TestServer::start(&rapport_feedback::SERVICE, move |listener, shutdown| {
        rapport_feedback::serve(config, listener, shutdown)
    })
    .await
}

impl Harness {
    /// Moves the clock of both services forward by `by`.
    pub async fn advance_clock(&self, by: std::time::Duration) {
        self.contacts.advance_clock(by).await;
        self.feedback.advance_clock(by).await;
    }

    pub fn client(&self, tenant: Uuid) -> Client {
        FeedbackServiceClient::new(self.feedback.tenant_channel(tenant))
    }

    /// A client as the gateway forwards public calls: a credential that
    /// names no tenant and grants no scope.
    pub fn public(&self) -> Client {
        FeedbackServiceClient::new(self.feedback.channel_for(&rapport_core::Grant {
            tenant_id: None,
            principal: "public".into(),
            scopes: Vec::new(),
        }))
    }

    pub fn contacts(
        &self,
        tenant: Uuid,
    ) -> ContactsServiceClient<InterceptedService<Transport, Outbound>> {
        ContactsServiceClient::new(self.contacts.tenant_channel(tenant))
    }
}

impl Harness {
    /// A new contact of `tenant` at the contacts service.
    pub async fn contact(&self, tenant: Uuid, email: &str) -> Uuid {
        let contact = self
            .contacts(tenant)
            .create_contact(CreateContactRequest {
                contact: Some(Contact {
                    email: email.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create contact")
            .into_inner()
            .contact
            .unwrap();
        contact.id.parse().unwrap()
    }

    /// `count` new contacts of `tenant`.
    pub async fn people(&self, tenant: Uuid, count: usize) -> Vec<Uuid> {
        let mut people = Vec::with_capacity(count);
        for _ in 0..count {
            let email = format!("{}@example.com", Uuid::now_v7());
            people.push(self.contact(tenant, &email).await);
        }
        people
    }
}

fn english(text: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("en".to_owned(), text.to_owned())])
}

pub fn question(id: &str, kind: QuestionKind, required: bool) -> Question {
    Question {
        id: id.into(),
        kind: kind.into(),
        required,
        text: english(id),
        ..Default::default()
    }
}

/// An NPS survey: `nps` (required), `why` (free text, shown to detractors,
/// required then), `csat` (optional) and `topics` (multiple choice).
pub fn nps_survey() -> Survey {
    let mut why = question("why", QuestionKind::FreeText, true);
    why.show_if = Some(ShowCondition {
        question_id: "nps".into(),
        min_score: 0,
        max_score: 6,
        ..Default::default()
    });
    let mut topics = question("topics", QuestionKind::MultipleChoice, false);
    topics.choices = ["price", "speed", "staff"]
        .iter()
        .map(|id| Choice {
            id: (*id).into(),
            label: english(id),
        })
        .collect();
    Survey {
        name: "After support".into(),
        touchpoint: "post-support".into(),
        channel: Channel::Email.into(),
        languages: vec!["en".into()],
        title: english("How did we do?"),
        questions: vec![
            question("nps", QuestionKind::Nps, true),
            why,
            question("csat", QuestionKind::Csat, false),
            topics,
        ],
        ..Default::default()
    }
}

pub async fn create_survey(client: &mut Client, survey: Survey) -> Survey {
    client
        .create_survey(CreateSurveyRequest {
            survey: Some(survey),
            request_id: String::new(),
        })
        .await
        .expect("create survey")
        .into_inner()
        .survey
        .unwrap()
}

/// A created and activated survey.
pub async fn active_survey(client: &mut Client, survey: Survey) -> Survey {
    let created = create_survey(client, survey).await;
    client
        .activate_survey(ActivateSurveyRequest { id: created.id })
        .await
        .expect("activate survey")
        .into_inner()
        .survey
        .unwrap()
}

pub async fn invite(
    client: &mut Client,
    survey: &Survey,
    contacts: &[Uuid],
) -> CreateInvitationsResponse {
    client
        .create_invitations(CreateInvitationsRequest {
            survey_id: survey.id.clone(),
            contact_ids: contacts.iter().map(Uuid::to_string).collect(),
            ..Default::default()
        })
        .await
        .expect("create invitations")
        .into_inner()
}

pub fn score(question_id: &str, score: i32) -> Answer {
    Answer {
        question_id: question_id.into(),
        value: Some(Value::Score(score)),
    }
}

pub fn text(question_id: &str, text: &str) -> Answer {
    Answer {
        question_id: question_id.into(),
        value: Some(Value::Text(text.into())),
    }
}

pub fn choices(question_id: &str, picked: &[&str]) -> Answer {
    Answer {
        question_id: question_id.into(),
        value: Some(Value::Choices(ChoiceSelection {
            choice_ids: picked.iter().map(|p| (*p).into()).collect(),
        })),
    }
}

pub async fn submit(
    public: &mut Client,
    token: &str,
    answers: Vec<Answer>,
    complete: bool,
) -> Result<SubmitResponseResponse, tonic::Status> {
    public
        .submit_response(SubmitResponseRequest {
            token: token.into(),
            answers,
            complete,
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The summary of every completed response of `survey_id`.
pub async fn summary(client: &mut Client, survey_id: &str) -> SurveySummary {
    client
        .get_survey_summary(GetSurveySummaryRequest {
            survey_id: survey_id.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap()
}
