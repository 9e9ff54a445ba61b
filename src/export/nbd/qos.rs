//! qos: per-export I/O limits, enforced by the NBD server (Cinder QoS specs with consumer
//! `back-end` or `both`): token buckets for total/read/write IOPS and bytes per second, with
//! Cinder's `*_max` keys as the burst size.
//!
//! One [`Throttle`] per export, shared by all its connections (multi-conn clients get one
//! budget, not one per socket). A request reserves its tokens when it is read and the buckets
//! may go into debt; the connection then waits until the debt is paid before it reads its next
//! request, so a throttled client is slowed by TCP back-pressure and holds no server memory.
//! Unlimited exports (the default) take one relaxed atomic load per request and nothing else.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::proto;

/// Limits of one export; `None` = unlimited. Rates are per second; a burst is the bucket size
/// (defaults to one second of the rate).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QosLimits {
    /// `total_iops_sec`, `total_iops_sec_max`.
    pub total_iops: Option<(f64, f64)>,
    /// `read_iops_sec`, `read_iops_sec_max`.
    pub read_iops: Option<(f64, f64)>,
    /// `write_iops_sec`, `write_iops_sec_max`.
    pub write_iops: Option<(f64, f64)>,
    /// `total_bytes_sec`, `total_bytes_sec_max`.
    pub total_bytes: Option<(f64, f64)>,
    /// `read_bytes_sec`, `read_bytes_sec_max`.
    pub read_bytes: Option<(f64, f64)>,
    /// `write_bytes_sec`, `write_bytes_sec_max`.
    pub write_bytes: Option<(f64, f64)>,
}

impl QosLimits {
    /// Limits from Cinder QoS spec keys; unknown keys and non-positive or unparsable values
    /// are ignored (Cinder passes them on to the consumer unchecked).
    pub fn from_specs<'a>(specs: impl IntoIterator<Item = (&'a str, &'a str)>) -> QosLimits {
        let specs: Vec<(&str, &str)> = specs.into_iter().collect();
        let get = |k: &str| {
            specs.iter().find(|(key, _)| *key == k).and_then(|(_, v)| v.trim().parse::<f64>().ok()).filter(|v| *v > 0.0)
        };
        let pair = |base: &str| {
            get(&format!("{base}_sec")).map(|rate| (rate, get(&format!("{base}_sec_max")).unwrap_or(rate).max(rate)))
        };
        QosLimits {
            total_iops: pair("total_iops"),
            read_iops: pair("read_iops"),
            write_iops: pair("write_iops"),
            total_bytes: pair("total_bytes"),
            read_bytes: pair("read_bytes"),
            write_bytes: pair("write_bytes"),
        }
    }

    /// True when no limit is set.
    pub fn is_unlimited(&self) -> bool {
        *self == QosLimits::default()
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
}

impl Bucket {
    fn new((rate, burst): (f64, f64)) -> Bucket {
        Bucket { rate, burst, tokens: burst }
    }

    fn refill(&mut self, secs: f64) {
        self.tokens = (self.tokens + secs * self.rate).min(self.burst);
    }

    /// Take `n` tokens (possibly into debt); how long until the debt is paid.
    fn take(&mut self, n: f64) -> f64 {
        self.tokens -= n;
        if self.tokens >= 0.0 {
            0.0
        } else {
            -self.tokens / self.rate
        }
    }
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    buckets: [Option<Bucket>; 6],
}

/// The token buckets of one export (see the module docs).
#[derive(Debug, Default)]
pub struct Throttle {
    enabled: AtomicBool,
    state: Mutex<State>,
}

impl Throttle {
    /// Replace the limits (live connections follow from their next request).
    pub fn set(&self, limits: QosLimits) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let l = limits;
        st.buckets = [l.total_iops, l.read_iops, l.write_iops, l.total_bytes, l.read_bytes, l.write_bytes]
            .map(|x| x.map(Bucket::new));
        st.last = None;
        self.enabled.store(!limits.is_unlimited(), Ordering::Release);
    }

    /// Reserve what a request costs; `Some(wait)` when the connection must pause first.
    pub fn reserve(&self, command: u16, length: u32) -> Option<Duration> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let (read, write, bytes) = match command {
            proto::CMD_READ => (true, false, f64::from(length)),
            proto::CMD_WRITE => (false, true, f64::from(length)),
            // Space-only writes cost an operation, not bandwidth.
            proto::CMD_WRITE_ZEROES | proto::CMD_TRIM => (false, true, 0.0),
            _ => return None,
        };
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let secs = st.last.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        st.last = Some(now);
        let mut wait: f64 = 0.0;
        let costs = [1.0, 1.0, 1.0, bytes, bytes, bytes];
        let applies = [true, read, write, true, read, write];
        for ((b, cost), on) in st.buckets.iter_mut().zip(costs).zip(applies) {
            if let (Some(b), true) = (b.as_mut(), on) {
                b.refill(secs);
                if cost > 0.0 {
                    wait = wait.max(b.take(cost));
                }
            }
        }
        (wait > 0.0).then(|| Duration::from_secs_f64(wait.min(60.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cinder_keys() {
        let l = QosLimits::from_specs([
            ("total_iops_sec", "1000"),
            ("total_iops_sec_max", "2000"),
            ("write_bytes_sec", "52428800"),
            ("read_iops_sec", "-1"),
            ("bogus", "1"),
        ]);
        assert_eq!(l.total_iops, Some((1000.0, 2000.0)));
        assert_eq!(l.write_bytes, Some((52428800.0, 52428800.0)));
        assert_eq!(l.read_iops, None);
        assert!(QosLimits::from_specs([("x", "1")]).is_unlimited());
    }

    #[test]
    fn unlimited_never_waits_and_limits_add_up() {
        let t = Throttle::default();
        assert_eq!(t.reserve(proto::CMD_READ, 1 << 20), None);
        t.set(QosLimits { total_iops: Some((100.0, 10.0)), ..Default::default() });
        // The burst of 10 passes at once; the next ones wait 1/100 s each, cumulatively.
        for _ in 0..10 {
            assert_eq!(t.reserve(proto::CMD_READ, 4096), None);
        }
        let w = t.reserve(proto::CMD_WRITE, 4096).expect("throttled");
        assert!(w <= Duration::from_millis(11), "{w:?}");
        let w2 = t.reserve(proto::CMD_WRITE, 4096).expect("throttled");
        assert!(w2 > w, "{w2:?} after {w:?}");
        // Flush is free; read limits do not touch writes.
        assert_eq!(t.reserve(proto::CMD_FLUSH, 0), None);
        t.set(QosLimits { read_bytes: Some((1000.0, 1000.0)), ..Default::default() });
        assert_eq!(t.reserve(proto::CMD_WRITE, 1 << 20), None);
        assert_eq!(t.reserve(proto::CMD_READ, 1000), None);
        assert!(t.reserve(proto::CMD_READ, 500).is_some());
    }
}
