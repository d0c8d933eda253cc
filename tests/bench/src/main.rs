//! `make bench`: drives the release binaries on this machine, with
//! PostgreSQL on the same box, and prints the figures the issues ask for.
//!
//! Each service runs as its own process (the real binary next to this one),
//! so its memory is measured as deployed and the load generator's work is
//! not counted against it.

#![allow(clippy::print_stdout)] // The figures are this program's output.

mod affinity;
mod contacts;
mod feed;
mod feedback;
mod gateway;
mod load;
mod segmentation;
mod segmentation_live;
mod stack;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Rapport benchmarks")]
struct Args {
    /// PostgreSQL server to benchmark on (must allow creating databases).
    #[arg(long, env = "RAPPORT_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Calls in flight for the GetContact run.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of measured load per run (after a warm-up of a second).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds each way (direct, through the gateway) of the gateway runs,
    /// split into alternating rounds.
    #[arg(long, default_value_t = 30)]
    gateway_seconds: u64,
    /// Events per RecordEvents call.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// RecordEvents calls in flight during the ingest run.
    #[arg(long, default_value_t = 4)]
    ingest_in_flight: usize,
    /// RecordEvents calls for the ingest run.
    #[arg(long, default_value_t = 200)]
    batches: usize,
    /// Invitations made for the SubmitResponse run: one token per call, so
    /// at least the calls the run can make.
    #[arg(long, default_value_t = 40_000)]
    submit_invitations: usize,
    /// Responses the summary is timed over (and a tenth of it first).
    #[arg(long, default_value_t = 1_000_000)]
    summary_responses: i64,
    /// Contacts of the segmentation data set (ten events each); a
    /// template database is seeded once per size and reused for a week.
    #[arg(long, default_value_t = 1_000_000)]
    segment_contacts: i64,
    /// Runs only these parts (all when not given), such as `--only gateway`.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

/// The parts of the benchmark, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Contacts,
    Feed,
    Gateway,
    Feedback,
    Segmentation,
}

impl Args {
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin_url = args
        .database_url
        .clone()
        .unwrap_or_else(rapport_testkit::admin_url);
    let transport = if admin_url.contains("host=/") {
        "Unix socket"
    } else {
        "TCP"
    };
    println!(
        "Rapport benchmarks ({} cores, PostgreSQL on this machine over {transport})\n",
        std::thread::available_parallelism()?.get()
    );
    let shared = [Part::Contacts, Part::Feed, Part::Gateway, Part::Feedback];
    if shared.iter().any(|part| args.runs(*part)) {
        let stack = stack::Stack::start(&admin_url).await?;
        let seeded = contacts::seed(&stack).await?;
        let ids = seeded.ids.clone();
        if args.runs(Part::Contacts) {
            contacts::run(&args, &stack, seeded).await?;
            contacts::telemetry_overhead(&args, &admin_url).await?;
        }
        if args.runs(Part::Feed) {
            feed::run(&args, &stack, ids.clone()).await?;
        }
        if args.runs(Part::Gateway) {
            gateway::run(&args, &stack, ids).await?;
        }
        if args.runs(Part::Feedback) {
            feedback::run(&args, &stack).await?;
        }
    }
    // On a suite of its own, over a copy of its large data set.
    if args.runs(Part::Segmentation) {
        segmentation::run(&args, &admin_url).await?;
    }
    Ok(())
}
