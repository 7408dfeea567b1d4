//! A criterion measurement of CPU time instead of wall time: the benchmark
//! thread's (`CLOCK_THREAD_CPUTIME_ID`) or the whole process's
//! (`CLOCK_PROCESS_CPUTIME_ID`, for work spread over threads, such as the
//! store's writer).
//!
//! The machines we benchmark on are small and shared (2 cores, other
//! builds running): wall time then includes whatever else was scheduled.
//! Plugin calls on a current-thread runtime run entirely on the calling
//! thread (fibers switch stacks, not threads), so its CPU time, kernel time
//! for page faults and `madvise` included, is the call's cost without the
//! neighbours' noise.

use std::time::Duration;

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};

/// CPU time of one clock.
pub struct CpuTime(rustix::time::ClockId);

impl CpuTime {
    /// The calling thread's CPU time.
    #[allow(dead_code, reason = "each benchmark uses one of the clocks")]
    pub fn thread() -> Self {
        CpuTime(rustix::time::ClockId::ThreadCPUTime)
    }

    /// The whole process's CPU time, every thread.
    #[allow(dead_code, reason = "each benchmark uses one of the clocks")]
    pub fn process() -> Self {
        CpuTime(rustix::time::ClockId::ProcessCPUTime)
    }

    fn now(&self) -> Duration {
        let t = rustix::time::clock_gettime(self.0);
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        )
    }
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.now()
    }
    fn end(&self, start: Duration) -> Duration {
        self.now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Nanoseconds of CPU, shown like criterion shows durations.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical_ns < 1e3 {
            (1.0, "ns")
        } else if typical_ns < 1e6 {
            (1e-3, "µs")
        } else if typical_ns < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }

    fn scale_throughputs(
        &self,
        _typical_ns: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        const MIB: f64 = (1 << 20) as f64;
        let (per_iteration, unit) = match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (n as f64 / MIB, "MiB/s"),
            Throughput::Bits(n) => (n as f64 / 8.0 / MIB, "MiB/s"),
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => {
                (n as f64, "elem/s")
            }
        };
        for v in values {
            *v = per_iteration * 1e9 / *v;
        }
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}
