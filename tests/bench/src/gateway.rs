//! Issue figures for the gateway hop: GetContact through the gateway next
//! to straight to the service, in one run, at a fixed rate and at
//! saturation (sharing the cores, and with the gateway on its own core).

use std::sync::Arc;
use std::time::Duration;

use rapport_client::Transport;
use rapport_proto::contacts::v1::GetContactRequest;
use rapport_proto::contacts::v1::contacts_service_client::ContactsServiceClient;

use crate::load::{LoadReport, closed_loop, open_loop};
use crate::stack::Stack;
use crate::{Args, affinity};

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

    // (b) Saturation: as many calls as complete with the same number in
    // flight, all processes sharing every core.
    println!(
        "gateway: GetContact at saturation, {} calls in flight, {ROUNDS} alternating rounds",
        args.concurrency
    );
    let saturation = Saturation {
        in_flight: args.concurrency,
        round,
        warm_up,
        direct: get(direct.clone()),
        gated: get(gated.clone()),
    };
    saturation.run(stack, &Placement::Shared).await?.print();

    // (c) The same with the gateway on a core of its own, as it is deployed
    // (its own container): the ratio then shows what the hop costs the
    // calls, not what its CPU takes from the service sharing its cores.
    let cores = std::thread::available_parallelism()?.get();
    if cores < 2 {
        return Ok(());
    }
    println!(
        "gateway: the same, with the gateway alone on core {} and everything else on cores 0-{}",
        cores - 1,
        cores - 2
    );
    match saturation.run(stack, &Placement::OwnCore { cores }).await {
        Ok(figures) => figures.print(),
        Err(error) => println!("  skipped: cannot place processes on cores ({error:#})\n"),
    }
    Ok(())
}

/// Where the processes run during a saturation comparison.
enum Placement {
    /// Every process on every core.
    Shared,
    /// The gateway on the last of `cores`, everything else on the others.
    OwnCore { cores: usize },
}

impl Placement {
    /// Places the processes; they go back to every core when the run ends.
    async fn apply(&self, stack: &Stack) -> anyhow::Result<()> {
        if let Placement::OwnCore { cores } = *self {
            affinity::place(&[stack.gateway.pid()?], cores - 1..cores)?;
            affinity::place(&others(stack).await?, 0..cores - 1)?;
        }
        Ok(())
    }

    async fn reset(&self, stack: &Stack) -> anyhow::Result<()> {
        if let Placement::OwnCore { cores } = *self {
            let mut all = others(stack).await?;
            all.push(stack.gateway.pid()?);
            affinity::place(&all, 0..cores)?;
        }
        Ok(())
    }
}

/// Every process of the run but the gateway: this load generator, the
/// services, and the PostgreSQL backends serving the benchmark database
/// (read afresh each round, as pools open connections).
async fn others(stack: &Stack) -> anyhow::Result<Vec<u32>> {
    let mut pids = vec![
        std::process::id(),
        stack.contacts.pid()?,
        stack.feedback.pid()?,
    ];
    let mut admin = stack.db.admin().await;
    let backends: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            .fetch_all(&mut admin)
            .await?;
    pids.extend(
        backends
            .into_iter()
            .filter_map(|pid| u32::try_from(pid).ok()),
    );
    Ok(pids)
}

/// GetContact direct and through the gateway, in alternating rounds.
struct Saturation<F> {
    in_flight: usize,
    round: Duration,
    warm_up: Duration,
    direct: F,
    gated: F,
}

impl<F, Fut> Saturation<F>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    async fn run(&self, stack: &Stack, placement: &Placement) -> anyhow::Result<SaturationFigures> {
        let mut figures = SaturationFigures {
            direct: LoadReport::empty(self.round * ROUNDS),
            gated: LoadReport::empty(self.round * ROUNDS),
            gateway_cpu: Duration::ZERO,
            contacts_cpu: Duration::ZERO,
            warm_up: self.warm_up * ROUNDS,
        };
        let result = self.rounds(stack, placement, &mut figures).await;
        placement.reset(stack).await?;
        result.map(|()| figures)
    }

    async fn rounds(
        &self,
        stack: &Stack,
        placement: &Placement,
        figures: &mut SaturationFigures,
    ) -> anyhow::Result<()> {
        for _ in 0..ROUNDS {
            placement.apply(stack).await?;
            let before = stack.contacts.cpu_time()?;
            let direct = closed_loop(
                self.in_flight,
                self.warm_up,
                self.round,
                self.direct.clone(),
            )
            .await;
            figures.contacts_cpu += stack.contacts.cpu_time()? - before;
            figures.direct.merge(direct);

            placement.apply(stack).await?;
            let before = stack.gateway.cpu_time()?;
            let gated =
                closed_loop(self.in_flight, self.warm_up, self.round, self.gated.clone()).await;
            figures.gateway_cpu += stack.gateway.cpu_time()? - before;
            figures.gated.merge(gated);
        }
        Ok(())
    }
}

struct SaturationFigures {
    direct: LoadReport,
    gated: LoadReport,
    /// CPU time of the gateway in the gateway rounds, and of the contacts
    /// service in the direct rounds, warm-ups included.
    gateway_cpu: Duration,
    contacts_cpu: Duration,
    warm_up: Duration,
}

impl SaturationFigures {
    fn print(&self) {
        println!(
            "  direct       {:>10.0} req/s   (errors {})",
            self.direct.per_second(),
            self.direct.errors
        );
        println!(
            "  gateway      {:>10.0} req/s   (errors {})",
            self.gated.per_second(),
            self.gated.errors
        );
        println!(
            "  ratio        {:>10.2}            (goal >= 0.85)",
            self.gated.per_second() / self.direct.per_second()
        );
        println!(
            "  CPU per call {:>10.1} us in the gateway, {:.1} us in the contacts service (direct)\n",
            per_call(self.gateway_cpu, &self.gated, self.warm_up),
            per_call(self.contacts_cpu, &self.direct, self.warm_up),
        );
    }
}

/// `cpu` over the calls of `report` and those of its warm-ups, at the
/// same rate (the CPU time covers both).
fn per_call(cpu: Duration, report: &LoadReport, warm_up: Duration) -> f64 {
    let calls = report.calls as f64 + report.per_second() * warm_up.as_secs_f64();
    cpu.as_secs_f64() * 1e6 / calls
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
