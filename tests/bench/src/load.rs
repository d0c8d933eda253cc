//! Closed-loop load: N workers each issue calls back to back for a fixed
//! time; latencies go into one histogram.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub struct LoadReport {
    pub calls: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
}

impl LoadReport {
    /// A report of no calls yet, for `merge`.
    pub fn empty(elapsed: Duration) -> Self {
        Self {
            calls: 0,
            errors: 0,
            elapsed,
            latency_us: new_histogram(),
        }
    }

    /// Adds the calls of `other` (its time is already in `elapsed`).
    pub fn merge(&mut self, other: LoadReport) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.latency_us.add(other.latency_us).expect("same bounds");
    }

    /// Successful calls per second.
    pub fn per_second(&self) -> f64 {
        (self.calls - self.errors) as f64 / self.elapsed.as_secs_f64()
    }

    pub fn p(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Runs `workers` copies of `call` back to back: first for `warm_up`
/// (not measured), then for `duration`.
pub async fn closed_loop<F, Fut>(
    workers: usize,
    warm_up: Duration,
    duration: Duration,
    call: F,
) -> LoadReport
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let measure_from = started + warm_up;
    let until = measure_from + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut histogram = new_histogram();
                let (mut calls, mut errors) = (0_u64, 0_u64);
                let mut i = worker;
                loop {
                    let begin = Instant::now();
                    if begin >= until {
                        break;
                    }
                    let ok = call(i).await;
                    i += workers;
                    if begin >= measure_from {
                        calls += 1;
                        errors += u64::from(!ok);
                        histogram.saturating_record(begin.elapsed().as_micros() as u64);
                    }
                }
                (histogram, calls, errors)
            })
        })
        .collect();
    let mut report = LoadReport {
        calls: 0,
        errors: 0,
        elapsed: duration,
        latency_us: new_histogram(),
    };
    for task in tasks {
        let (histogram, calls, errors) = task.await.expect("load worker panicked");
        report.latency_us.add(histogram).expect("same precision");
        report.calls += calls;
        report.errors += errors;
    }
    report
}

/// Open-loop load: one call every `1/rate` seconds whatever the replies
/// do, first for `warm_up` (not measured), then for `duration`. Latency is
/// taken from when each call was due, so a stall counts against every call
/// it delays.
pub async fn open_loop<F, Fut>(
    rate: u32,
    warm_up: Duration,
    duration: Duration,
    call: F,
) -> LoadReport
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let period = Duration::from_secs(1) / rate;
    let started = tokio::time::Instant::now();
    let measure_from = started + warm_up;
    let until = measure_from + duration;
    let mut calls = tokio::task::JoinSet::new();
    let mut due = started;
    let mut i = 0;
    while due < until {
        tokio::time::sleep_until(due).await;
        let measured = due >= measure_from;
        let scheduled = due.into_std();
        let future = call(i);
        calls.spawn(async move {
            let ok = future.await;
            (measured, ok, scheduled.elapsed())
        });
        due += period;
        i += 1;
    }
    let mut report = LoadReport {
        calls: 0,
        errors: 0,
        elapsed: duration,
        latency_us: new_histogram(),
    };
    while let Some(result) = calls.join_next().await {
        let (measured, ok, latency) = result.expect("load call panicked");
        if measured {
            report.calls += 1;
            report.errors += u64::from(!ok);
            report
                .latency_us
                .saturating_record(latency.as_micros() as u64);
        }
    }
    report
}

/// Microseconds from 1 µs to 60 s at 3 significant digits. Fixed bounds:
/// an auto-resizing histogram would clamp values on `saturating_record`.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}
