//! Issue figures for the gateway hop: GetContact through the gateway next
//! to straight to the service, in one run, at a fixed rate and at saturation.

use std::sync::Arc;
use std::time::Duration;

use rapport_client::Transport;
use rapport_proto::contacts::v1::GetContactRequest;
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;

use crate::Args;
use crate::load::{LoadReport, closed_loop, open_loop};
use crate::stack::Stack;

/// The fixed arrival rate of the latency comparison.
const FIXED_RATE: u32 = 1_000;
const CONNECTIONS: usize = 4;
const ROUNDS: u32 = 5;

pub async fn run(args: &Args, stack: &Stack, ids: Arc<Vec<String>>) -> anyhow::Result<()> {
    let measure = Duration::from_secs(args.gateway_seconds);
    let direct = Arc::new(stack.direct(CONNECTIONS).await?);
    let gated = Arc::new(stack.through_gateway(CONNECTIONS).await?);
    let get = |clients: Arc<Vec<ContactsServiceClient<Transport>>>| {
        let ids = ids.clone();
        move |i: usize| {
            let mut client = clients[i % CONNECTIONS].clone();
            let id = ids[i % ids.len()].clone();
            async move { client.get_contact(GetContactRequest { id }).await.is_ok() }
        }
    };

    // The two paths alternate in rounds, so drift on a shared machine
    // (PostgreSQL's background work, the other processes) hits both alike.
    let round = measure / ROUNDS;
    let warm_up = Duration::from_millis(500);

    // (a) The same fixed arrival rate each way; latency from the scheduled
    // start, so a stall is not hidden by sending less.
    let (mut direct_fixed, mut gated_fixed) = (
        LoadReport::empty(round * ROUNDS),
        LoadReport::empty(round * ROUNDS),
    );
    for _ in 0..ROUNDS {
        direct_fixed.merge(open_loop(FIXED_RATE, warm_up, round, get(direct.clone())).await);
        gated_fixed.merge(open_loop(FIXED_RATE, warm_up, round, get(gated.clone())).await);
    }
    println!(
        "gateway: GetContact at a fixed {FIXED_RATE} req/s, {} s each way in {ROUNDS} alternating rounds",
        args.gateway_seconds
    );
    print_latency("direct", &direct_fixed);
    print_latency("gateway", &gated_fixed);
    println!(
        "  added        p50 {:+.2} ms (goal <= 0.3), p99 {:+.2} ms (goal <= 1)\n",
        gated_fixed.p(0.50) - direct_fixed.p(0.50),
        gated_fixed.p(0.99) - direct_fixed.p(0.99)
    );

    // (b) Saturation: as many calls as complete with the same number in flight.
    let (mut direct_max, mut gated_max) = (
        LoadReport::empty(round * ROUNDS),
        LoadReport::empty(round * ROUNDS),
    );
    let mut gateway_cpu = Duration::ZERO;
    for _ in 0..ROUNDS {
        direct_max.merge(closed_loop(args.concurrency, warm_up, round, get(direct.clone())).await);
        let before = stack.gateway.cpu_time()?;
        gated_max.merge(closed_loop(args.concurrency, warm_up, round, get(gated.clone())).await);
        gateway_cpu += stack.gateway.cpu_time()? - before;
    }
    println!(
        "gateway: GetContact at saturation, {} calls in flight, {ROUNDS} alternating rounds",
        args.concurrency
    );
    println!(
        "  direct       {:>10.0} req/s   (errors {})",
        direct_max.per_second(),
        direct_max.errors
    );
    println!(
        "  gateway      {:>10.0} req/s   (errors {})",
        gated_max.per_second(),
        gated_max.errors
    );
    println!(
        "  ratio        {:>10.2}            (goal >= 0.85)",
        gated_max.per_second() / direct_max.per_second()
    );
    // Warm-up calls count too: the CPU time covers them.
    let warm_calls = gated_max.per_second() * warm_up.as_secs_f64() * f64::from(ROUNDS);
    println!(
        "  gateway CPU  {:>10.1} us per call\n",
        gateway_cpu.as_secs_f64() * 1e6 / (gated_max.calls as f64 + warm_calls)
    );
    Ok(())
}

fn print_latency(label: &str, report: &LoadReport) {
    println!(
        "  {label:<12} p50 {:.2} ms, p99 {:.2} ms   ({} calls, {} errors)",
        report.p(0.50),
        report.p(0.99),
        report.calls,
        report.errors
    );
}
