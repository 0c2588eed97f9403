//! What the usage ledger costs, measured in pairs. `cliproxy` (ledger on) and
//! `cliproxy-unrecorded` (`usage-db = "off"`, otherwise the same) take turns in many short
//! rounds at the throughput scenario's connection count, the one that goes first alternating,
//! so that a slow spell of the shared machine falls on both halves of a pair. A pooled
//! comparison of the main rounds moves by more than the 3 % budget from run to run; the
//! median of the pairs' ratios is the budget line. Each server's CPU time per request (user
//! and system, from `/proc/<pid>/stat`) is reported beside it: it is what the ledger adds, and
//! the neighbours on the machine move it less than throughput.

use std::fs;
use std::ops::Range;
use std::time::Duration;

use super::load::{self, Plan, Target};

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// One server of a pair: where it listens and its process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Server {
    pub(crate) target: Target,
    pub(crate) pid: u32,
}

/// The paired rounds of one kind of request.
#[derive(Debug, Clone, Default)]
pub(crate) struct LedgerCost {
    pub(crate) stream: bool,
    /// Each pair's throughput with the ledger over without it.
    pub(crate) ratios: Vec<f64>,
    /// CPU ticks and requests of the server with the ledger, over all its rounds.
    pub(crate) on: Spent,
    /// The same of the server without it.
    pub(crate) off: Spent,
    /// Failed requests (any makes the measurement void).
    pub(crate) errors: u64,
}

/// CPU time and requests summed over rounds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spent {
    ticks: u64,
    requests: u64,
}

impl Spent {
    /// CPU time per request, when both were counted.
    pub(crate) fn per_request(self) -> Option<Duration> {
        (self.requests > 0 && self.ticks > 0).then(|| {
            Duration::from_secs_f64(self.ticks as f64 / TICKS_PER_SEC / self.requests as f64)
        })
    }
}

impl LedgerCost {
    /// Adds the pairs and CPU time of `more`, measured on other processes of the same kind.
    pub(crate) fn merge(&mut self, more: LedgerCost) {
        self.ratios.extend(more.ratios);
        self.on.ticks += more.on.ticks;
        self.on.requests += more.on.requests;
        self.off.ticks += more.off.ticks;
        self.off.requests += more.off.requests;
        self.errors += more.errors;
    }

    /// The median of the pairs' ratios.
    pub(crate) fn median(&self) -> Option<f64> {
        let mut sorted = self.ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        match sorted.len() {
            0 => None,
            n if n % 2 == 1 => Some(sorted[middle]),
            _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
        }
    }

    /// The 95 % confidence interval of the median ratio, free of any assumption about the
    /// ratios' distribution: from the k-th lowest to the k-th highest pair, k the largest rank
    /// that leaves the true median outside with a chance of at most 2.5 % on each side (the
    /// count of pairs below the median is binomial with p = ½). `None` under 6 pairs.
    pub(crate) fn median_interval(&self) -> Option<(f64, f64)> {
        let mut sorted = self.ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let k = interval_rank(sorted.len())?;
        Some((sorted[k - 1], sorted[sorted.len() - k]))
    }

    /// The lowest and highest pair ratio.
    pub(crate) fn spread(&self) -> Option<(f64, f64)> {
        let low = self.ratios.iter().copied().min_by(f64::total_cmp)?;
        let high = self.ratios.iter().copied().max_by(f64::total_cmp)?;
        Some((low, high))
    }

    /// CPU per request with the ledger over without it.
    pub(crate) fn cpu_ratio(&self) -> Option<f64> {
        let (on, off) = (self.on.per_request()?, self.off.per_request()?);
        Some(on.as_secs_f64() / off.as_secs_f64())
    }
}

/// The pairs numbered `pairs` of rounds of `each` (after a warm-up of a fifth of it) for
/// streaming and non-streaming requests at `concurrency` connections; an even pair starts with
/// `on`, an odd one with `off` (numbered across calls, so that shares of odd length still
/// alternate).
pub(crate) async fn measure(
    on: Server,
    off: Server,
    concurrency: usize,
    pairs: Range<usize>,
    each: Duration,
) -> Vec<LedgerCost> {
    let mut costs = Vec::new();
    for stream in [false, true] {
        let plan = Plan {
            stream,
            concurrency,
            warmup: each / 5,
            measure: each,
        };
        let mut cost = LedgerCost {
            stream,
            ..LedgerCost::default()
        };
        for pair in pairs.clone() {
            let order = if pair % 2 == 0 { [on, off] } else { [off, on] };
            let mut rates = [0.0; 2];
            for server in order {
                let before = cpu_ticks(server.pid);
                let outcome = load::run(server.target, plan).await;
                let spent = cpu_ticks(server.pid).zip(before).map(|(a, b)| a - b);
                cost.errors += outcome.errors;
                let is_on = server.pid == on.pid;
                let total = if is_on { &mut cost.on } else { &mut cost.off };
                total.ticks += spent.unwrap_or(0);
                total.requests += outcome.requests;
                rates[usize::from(!is_on)] = outcome.requests_per_sec();
            }
            if rates[1] > 0.0 {
                cost.ratios.push(rates[0] / rates[1]);
            }
        }
        costs.push(cost);
    }
    costs
}

/// The largest rank k for `pairs` ratios with P(Binomial(pairs, ½) < k) <= 2.5 %. Exact up
/// to about 1,000 pairs (`--pairs` allows no more): beyond, ½ to the power of `pairs` is 0 in
/// an `f64`.
fn interval_rank(pairs: usize) -> Option<usize> {
    let mut term = 0.5_f64.powi(i32::try_from(pairs).ok()?);
    let mut at_most = 0.0;
    let mut rank = None;
    for below in 0..pairs {
        at_most += term;
        if at_most > 0.025 {
            break;
        }
        rank = Some(below + 1);
        term *= (pairs - below) as f64 / (below + 1) as f64;
    }
    rank
}

/// User and system CPU ticks `pid` has used, its threads' included.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after its end.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields; the 3rd (state) is the first after ')'.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_and_spread_of_pairs() {
        let cost = LedgerCost {
            ratios: vec![1.02, 0.95, 0.99, 0.97],
            ..LedgerCost::default()
        };
        assert!(
            cost.median()
                .is_some_and(|median| (median - 0.98).abs() < 1e-9)
        );
        assert_eq!(cost.spread(), Some((0.95, 1.02)));
        assert_eq!(LedgerCost::default().median(), None);
    }

    #[test]
    fn the_median_interval_takes_the_ranks_of_the_binomial_table() {
        // Ranks of the usual tables for the median's 95 % interval.
        assert_eq!(interval_rank(5), None);
        assert_eq!(interval_rank(6), Some(1));
        assert_eq!(interval_rank(12), Some(3));
        assert_eq!(interval_rank(20), Some(6));
        assert_eq!(interval_rank(40), Some(14));
        let cost = LedgerCost {
            ratios: (1..=12).rev().map(|i| f64::from(i) / 10.0).collect(),
            ..LedgerCost::default()
        };
        assert_eq!(cost.median_interval(), Some((0.3, 1.0)));
        let few = LedgerCost {
            ratios: vec![1.0; 5],
            ..LedgerCost::default()
        };
        assert_eq!(few.median_interval(), None);
    }

    #[test]
    fn reads_the_cpu_time_of_a_process() {
        assert!(cpu_ticks(std::process::id()).is_some());
        assert_eq!(cpu_ticks(u32::MAX), None);
    }
}
