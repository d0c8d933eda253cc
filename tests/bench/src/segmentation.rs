//! Issue figures for segmentation over a large tenant: 1,000,000 contacts
//! and 10,000,000 events, seeded once straight into the contacts schema of
//! a template database. Segmentation then loads its projections from the
//! contacts snapshot once (timed, and the time kept with the data), and
//! the loaded database becomes the template later runs copy. Each run
//! starts the suite on a copy and times PreviewRule, a full build with its
//! membership rows next to a COPY of as many rows, a worst-case rule, and
//! segmentation's peak memory during the build; then membership kept
//! current under a steady stream of events (`segmentation_live`).

use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use rapport_client::{Auth, Transport};
use rapport_core::credential::{Grant, Outbound, Scope};
use rapport_proto::common::v1::Channel;
use rapport_proto::segmentation::v1::segmentation_service_client::SegmentationServiceClient;
use rapport_proto::segmentation::v1::*;
use rapport_testkit::process::ProcessStack;
use rapport_testkit::{TestDatabase, identity};
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use crate::Args;
use crate::stack::connect;

/// The tenant of the seeded data set.
const TENANT: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_b001);
/// Events per contact.
const EVENTS_PER_CONTACT: i64 = 10;
/// A template is reseeded after this many days: the seeded "recent" orders
/// are 1 to 80 days old when seeded, and must stay inside 90 days.
const TEMPLATE_DAYS: i64 = 7;
/// Contacts seeded per statement.
const SEED_CHUNK: i64 = 100_000;
/// PreviewRule calls timed; the median is reported.
const PREVIEW_RUNS: usize = 3;

pub async fn run(args: &Args, admin_url: &str) -> anyhow::Result<()> {
    let contacts = args.segment_contacts;
    println!(
        "segmentation: {contacts} contacts, {} events (template database, seeded once)",
        contacts * EVENTS_PER_CONTACT
    );
    let template = template(admin_url, contacts).await?;
    let loaded = loaded_template(admin_url, &template).await?;
    println!(
        "  projection load from the snapshot (when the template was made): {} profiles + {} \
         events in {:.1} s = {:.0} rows/s (process start included)",
        loaded.profiles,
        loaded.events,
        loaded.seconds,
        (loaded.profiles + loaded.events) as f64 / loaded.seconds
    );
    let db = TestDatabase::copy_of(admin_url, &loaded.name).await?;
    let stack =
        ProcessStack::start(db, &[("RAPPORT_DATABASE_MAX_CONNECTIONS", "8".to_owned())]).await?;
    let mut admin = stack.db.admin().await;

    let client = connect(
        &stack.segmentation,
        Auth::Internal(Outbound::new(
            identity("gateway"),
            "segmentation",
            Grant {
                tenant_id: Some(TENANT),
                principal: "bench".into(),
                scopes: vec![Scope::all()],
            },
        )),
        1,
    )
    .await?
    .remove(0);
    let mut segmentation = client.segmentation();

    let rule = target_rule();
    let (count, took) = preview(&mut segmentation, &rule).await?;
    println!(
        "  PreviewRule, pro plan AND order.placed in 90 days AND email subscribed: {count} \
         contacts, median of {PREVIEW_RUNS}: {:.0} ms (goal <= 1000 ms)",
        took.as_secs_f64() * 1000.0
    );

    stack.segmentation.reset_peak_rss()?;
    let (segment, wall) = build(&mut segmentation, "bench target", rule).await?;
    let peak = stack.segmentation.peak_rss_kib()?;
    let members = segment.member_count;
    let built_in = segment
        .build
        .and_then(|build| build.duration)
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default();
    let copy = copy_reference(&mut admin, members).await?;
    println!(
        "  full build: {members} membership rows (and as many history rows) in {:.2} s \
         (service's own timing {:.2} s; goal <= 10 s)",
        wall.as_secs_f64(),
        built_in.as_secs_f64()
    );
    println!(
        "  COPY of {members} rows into a table keyed like memberships, same run: {:.2} s \
         (build / COPY = {:.1})",
        copy.as_secs_f64(),
        wall.as_secs_f64() / copy.as_secs_f64()
    );
    println!(
        "  segmentation peak memory during the build: {:.1} MiB (goal <= 128 MiB)",
        peak as f64 / 1024.0
    );

    let worst = revenue_rule();
    let (count, took) = preview(&mut segmentation, &worst).await?;
    println!(
        "  worst case, revenue summed over all time >= 150 EUR: PreviewRule {count} contacts \
         in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    let (segment, wall) = build(&mut segmentation, "bench worst case", worst).await?;
    println!(
        "  worst case build: {} members in {:.2} s",
        segment.member_count,
        wall.as_secs_f64()
    );

    let contacts = connect(
        &stack.contacts,
        Auth::Internal(Outbound::new(
            identity("gateway"),
            "contacts",
            Grant {
                tenant_id: Some(TENANT),
                principal: "bench".into(),
                scopes: vec![Scope::all()],
            },
        )),
        4,
    )
    .await?
    .into_iter()
    .map(|client| client.contacts())
    .collect();
    crate::segmentation_live::run(
        args.seconds,
        &stack,
        &mut admin,
        &mut segmentation,
        contacts,
        TENANT,
    )
    .await
}

/// "plan = pro AND at least one order.placed in the last 90 days AND
/// email consent subscribed": a quarter of the contacts have the plan and
/// the consent together, and two in five of those ordered lately, so
/// 10% of the contacts by construction.
fn target_rule() -> Rule {
    let leaf = |node| Rule { node: Some(node) };
    leaf(rule::Node::AllOf(RuleList {
        rules: vec![
            leaf(rule::Node::Attribute(AttributeCondition {
                path: "plan".into(),
                operator: Operator::Equals.into(),
                value: Some(Value {
                    kind: Some(value::Kind::Text("pro".into())),
                }),
                values: Vec::new(),
            })),
            leaf(rule::Node::Event(EventCondition {
                r#type: "order.placed".into(),
                measure: Measure::Count.into(),
                operator: Operator::GreaterOrEqual.into(),
                threshold: 1.0,
                window: Some(TimeWindow {
                    window: Some(time_window::Window::WithinDays(90)),
                }),
                ..Default::default()
            })),
            leaf(rule::Node::Consent(ConsentCondition {
                channel: Channel::Email.into(),
                state: ConsentState::Subscribed.into(),
            })),
        ],
    }))
}

/// Revenue summed over all time: every order of every contact is read
/// (two orders of 10 + i % 90 EUR each: 150 or more for 25 in 90).
fn revenue_rule() -> Rule {
    Rule {
        node: Some(rule::Node::Event(EventCondition {
            r#type: "order.placed".into(),
            measure: Measure::Revenue.into(),
            currency: "EUR".into(),
            operator: Operator::GreaterOrEqual.into(),
            threshold: 150.0,
            window: Some(TimeWindow {
                window: Some(time_window::Window::Ever(true)),
            }),
            ..Default::default()
        })),
    }
}

async fn preview(
    segmentation: &mut SegmentationServiceClient<Transport>,
    rule: &Rule,
) -> anyhow::Result<(i64, Duration)> {
    let mut times = Vec::with_capacity(PREVIEW_RUNS);
    let mut count = 0;
    for _ in 0..PREVIEW_RUNS {
        let started = Instant::now();
        let preview = segmentation
            .preview_rule(PreviewRuleRequest {
                rule: Some(rule.clone()),
                sample_size: 10,
                time_budget: Some(prost_types::Duration {
                    seconds: 30,
                    nanos: 0,
                }),
            })
            .await?
            .into_inner();
        times.push(started.elapsed());
        anyhow::ensure!(!preview.estimated, "the preview ran out of its 30 s");
        count = preview.count;
    }
    times.sort();
    Ok((count, times[PREVIEW_RUNS / 2]))
}

/// Creates a dynamic segment of `rule` and waits for its first build.
async fn build(
    segmentation: &mut SegmentationServiceClient<Transport>,
    name: &str,
    rule: Rule,
) -> anyhow::Result<(Segment, Duration)> {
    let started = Instant::now();
    let created = segmentation
        .create_segment(CreateSegmentRequest {
            segment: Some(Segment {
                name: name.into(),
                kind: SegmentKind::Dynamic.into(),
                rule: Some(rule),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await?
        .into_inner()
        .segment
        .unwrap_or_default();
    loop {
        let segment = segmentation
            .get_segment(GetSegmentRequest {
                id: created.id.clone(),
            })
            .await?
            .into_inner()
            .segment
            .unwrap_or_default();
        let state = segment.build.as_ref().map(Build::state);
        match state {
            Some(BuildState::Ready) => return Ok((segment, started.elapsed())),
            Some(BuildState::Failed) => anyhow::bail!(
                "the build failed: {}",
                segment.build.unwrap_or_default().error
            ),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Waits until segmentation has loaded the contacts snapshot and follows
/// the feed (its cursor is written when the load ends).
async fn wait_for_load(admin: &mut PgConnection) -> anyhow::Result<()> {
    loop {
        let loaded: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM segmentation.feed_cursors \
                            WHERE consumer = 'segmentation.contacts')",
        )
        .fetch_one(&mut *admin)
        .await?;
        if loaded {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The time to COPY `rows` membership-shaped rows into a table keyed like
/// `segmentation.memberships`: what writing the rows costs at the least.
async fn copy_reference(admin: &mut PgConnection, rows: i64) -> anyhow::Result<Duration> {
    sqlx::query(
        "CREATE TEMPORARY TABLE copy_reference (tenant_id uuid, segment_id uuid, \
         contact_id uuid, enter_time timestamptz, rule_version bigint, \
         PRIMARY KEY (tenant_id, segment_id, contact_id))",
    )
    .execute(&mut *admin)
    .await?;
    let segment = Uuid::now_v7();
    let mut text = String::with_capacity(usize::try_from(rows).unwrap_or(0) * 120);
    for _ in 0..rows {
        text.push_str(&format!(
            "{TENANT}\t{segment}\t{}\t2026-12-01 00:00:00+00\t1\n",
            Uuid::new_v4()
        ));
    }
    let started = Instant::now();
    let mut copy = admin.copy_in_raw("COPY copy_reference FROM STDIN").await?;
    copy.send(text.as_bytes()).await?;
    copy.finish().await?;
    let took = started.elapsed();
    sqlx::query("DROP TABLE copy_reference")
        .execute(&mut *admin)
        .await?;
    Ok(took)
}

/// A template with segmentation's projections loaded, and how the load went.
struct Loaded {
    name: String,
    seconds: f64,
    profiles: i64,
    events: i64,
}

/// The copy of `template` in which segmentation loaded its projections
/// from the contacts snapshot, making it first if needed: the suite is
/// started on a copy, the load timed, the tables vacuumed and analysed (as
/// autovacuum leaves tables that stopped growing), and the copy renamed.
async fn loaded_template(admin_url: &str, template: &str) -> anyhow::Result<Loaded> {
    let name = format!("{template}_loaded");
    let mut admin = PgConnection::connect(admin_url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let db = TestDatabase::copy_of(admin_url, template).await?;
        let copy = db.name().to_owned();
        let started = Instant::now();
        let mut stack =
            ProcessStack::start(db, &[("RAPPORT_DATABASE_MAX_CONNECTIONS", "8".to_owned())])
                .await?;
        let mut db = stack.db.admin().await;
        wait_for_load(&mut db).await?;
        let seconds = started.elapsed().as_secs_f64();
        stack.stop().await?;
        sqlx::raw_sql("VACUUM ANALYZE segmentation.profiles, segmentation.events")
            .execute(&mut db)
            .await?;
        sqlx::query(
            "CREATE TABLE public.bench_load AS SELECT $1::float8 AS seconds, \
                 (SELECT count(*) FROM segmentation.profiles) AS profiles, \
                 (SELECT count(*) FROM segmentation.events) AS events",
        )
        .bind(seconds)
        .execute(&mut db)
        .await?;
        db.close().await?;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&copy)
            .execute(&mut admin)
            .await?;
        // The name tells the load is whole; the stack's database is then gone by its old name.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {copy} RENAME TO {name}"
        )))
        .execute(&mut admin)
        .await?;
        drop(stack);
    }
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(&name);
    let mut db = PgConnection::connect(url.as_str()).await?;
    let (seconds, profiles, events): (f64, i64, i64) =
        sqlx::query_as("SELECT seconds, profiles, events FROM public.bench_load")
            .fetch_one(&mut db)
            .await?;
    Ok(Loaded {
        name,
        seconds,
        profiles,
        events,
    })
}

/// The name of a template holding `contacts` contacts, seeded within the
/// last [`TEMPLATE_DAYS`] days, seeding one if there is none.
async fn template(admin_url: &str, contacts: i64) -> anyhow::Result<String> {
    let prefix = format!("rapport_bench_segments_{contacts}_");
    let mut admin = PgConnection::connect(admin_url).await?;
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE $1 || '%' ORDER BY datname DESC",
    )
    .bind(&prefix)
    .fetch_all(&mut admin)
    .await?;
    let today = Utc::now().date_naive();
    for name in existing.iter().filter(|name| !name.ends_with("_loaded")) {
        let seeded = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.get(..8))
            .and_then(|date| NaiveDate::parse_from_str(date, "%Y%m%d").ok());
        if seeded.is_some_and(|seeded| (today - seeded).num_days() < TEMPLATE_DAYS) {
            println!("  reusing template database {name}");
            return Ok(name.clone());
        }
        // Too old (or half made): its recent orders have aged.
        for stale in [name.clone(), format!("{name}_loaded")] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {stale} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await?;
        }
    }
    let name = format!("{prefix}{}", today.format("%Y%m%d"));
    let building = format!("{name}_building");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
        .execute(&mut admin)
        .await?;
    let started = Instant::now();
    seed(admin_url, &building, contacts).await?;
    // The name tells the template is whole.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {building} RENAME TO {name}"
    )))
    .execute(&mut admin)
    .await?;
    println!(
        "  seeded template database {name} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(name)
}

/// Migrates the contacts schema of database `name` and fills it: per
/// contact i, plan "pro" when i is even, email consent subscribed when
/// i / 2 is even (unsubscribed otherwise), and ten events: two orders (one
/// in the last 1 to 80 days when (i / 4) % 5 < 2, else both 100 to 700
/// days ago; 10 to 99 EUR each), two email opens and six page views over
/// the last two years.
async fn seed(admin_url: &str, name: &str, contacts: i64) -> anyhow::Result<()> {
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(name);
    rapport_core::db::migrate(url.as_str(), &rapport_contacts::MIGRATOR).await?;
    let mut db = PgConnection::connect(url.as_str()).await?;
    for start in (0..contacts).step_by(usize::try_from(SEED_CHUNK)?) {
        let end = (start + SEED_CHUNK).min(contacts) - 1;
        sqlx::query(
            "INSERT INTO contacts.contacts (tenant_id, id, email, attributes, lifecycle_stage, \
                 consents, create_time, update_time) \
             SELECT $1, md5(i::text)::uuid, 'c' || i || '@example.com', \
                 jsonb_build_object('plan', CASE WHEN i % 2 = 0 THEN 'pro' ELSE 'free' END, \
                                    'seats', i % 50), \
                 1 + i % 5, \
                 jsonb_build_array(jsonb_build_object('channel', 1, \
                     'status', CASE WHEN (i / 2) % 2 = 0 THEN 2 ELSE 3 END, \
                     'change_time', '2026-01-01T00:00:00Z', 'source', 'bench')), \
                 now() - interval '1 day' * (i % 730), now() \
             FROM generate_series($2::bigint, $3::bigint) AS i",
        )
        .bind(TENANT)
        .bind(start)
        .bind(end)
        .execute(&mut db)
        .await?;
        sqlx::query(
            "INSERT INTO contacts.events (tenant_id, id, contact_id, type, channel, occur_time, \
                 properties, revenue_currency, revenue_units, revenue_nanos, record_time) \
             SELECT $1, gen_random_uuid(), md5(i::text)::uuid, \
                 CASE WHEN k < 2 THEN 'order.placed' WHEN k < 4 THEN 'email.opened' \
                      ELSE 'page.viewed' END, \
                 CASE WHEN k < 4 AND k >= 2 THEN 1 ELSE 6 END, \
                 CASE WHEN k = 0 AND (i / 4) % 5 < 2 THEN now() - interval '1 day' * (1 + i % 80) \
                      WHEN k < 2 THEN now() - interval '1 day' * (100 + (i * 7 + k) % 600) \
                      ELSE now() - interval '1 hour' * ((i * 13 + k * 101) % 17520) END, \
                 '{}', CASE WHEN k < 2 THEN 'EUR' END, CASE WHEN k < 2 THEN 10 + i % 90 END, \
                 CASE WHEN k < 2 THEN 0 END, now() \
             FROM generate_series($2::bigint, $3::bigint) AS i, generate_series(0, $4 - 1) AS k",
        )
        .bind(TENANT)
        .bind(start)
        .bind(end)
        .bind(EVENTS_PER_CONTACT)
        .execute(&mut db)
        .await?;
    }
    sqlx::raw_sql("VACUUM ANALYZE").execute(&mut db).await?;
    Ok(())
}
