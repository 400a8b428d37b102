//! The Prometheus text exposition (format 0.0.4), encoded by `prometheus-client` from one
//! [`Snapshot`] per scrape through a [`Collector`].

use std::fmt;
use std::sync::LazyLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::names::{Metric, Num, names};
use super::process::PROCESS;
use super::snapshot::{self, Snapshot};
use crate::stats::fields::{Kind, PromUnit};

/// The `Content-Type` to serve [`prometheus_text`](super::prometheus_text) with.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The registry holding rdebug's one collector; built on first use.
static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let mut r = Registry::default();
    r.register_collector(Box::new(Figures));
    r
});

/// Appends every figure to `out` in the Prometheus text format: what `/metrics` serves.
pub(crate) fn render(out: &mut String) {
    // Writing to a String cannot fail, and the collector returns no error of its own.
    let _ = prometheus_client::encoding::prometheus_text::encode(out, &REGISTRY);
}

/// Reads a [`Snapshot`] at every encode (scrape) and writes it.
#[derive(Debug)]
struct Figures;

impl Collector for Figures {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        encode_snapshot(&snapshot::take(), &mut enc)
    }
}

static BYTES: Unit = Unit::Bytes;
static SECONDS: Unit = Unit::Seconds;

fn unit(u: PromUnit) -> Option<&'static Unit> {
    match u {
        PromUnit::None => None,
        PromUnit::Bytes => Some(&BYTES),
        PromUnit::NsAsSeconds => Some(&SECONDS),
    }
}

fn metric_type(k: Kind) -> MetricType {
    match k {
        Kind::Gauge => MetricType::Gauge,
        Kind::Counter => MetricType::Counter,
    }
}

fn sample(me: MetricEncoder, kind: Kind, v: Num) -> fmt::Result {
    match (kind, v) {
        (Kind::Counter, Num::Int(v)) => ConstCounter::new(v).encode(me),
        (Kind::Counter, Num::Float(v)) => ConstCounter::new(v).encode(me),
        (Kind::Gauge, Num::Int(v)) => ConstGauge::new(v).encode(me),
        (Kind::Gauge, Num::Float(v)) => ConstGauge::new(v).encode(me),
    }
}

/// One unlabelled series.
fn single(
    enc: &mut DescriptorEncoder,
    stem: &str,
    help: &str,
    u: PromUnit,
    kind: Kind,
    v: Num,
) -> fmt::Result {
    let me = enc.encode_descriptor(stem, help, unit(u), metric_type(kind))?;
    sample(me, kind, v)
}

pub(crate) fn encode_snapshot(s: &Snapshot, enc: &mut DescriptorEncoder) -> fmt::Result {
    for p in PROCESS {
        if let Some(v) = (p.get)(&s.process) {
            single(enc, p.stem, p.help, p.unit, p.kind, v)?;
        }
    }
    let n = names();
    for m in &n.mem {
        if let Some(v) = m.value(&s.mem) {
            single(enc, &m.stem, m.field.help, m.unit, m.field.kind, v)?;
        }
    }
    for m in &n.sched {
        if !m.per_runtime {
            if let Some(v) = m.value(&s.process_sched) {
                single(enc, &m.stem, m.field.help, m.unit, m.field.kind, v)?;
            }
            continue;
        }
        family(
            enc,
            m,
            s.runtimes
                .iter()
                .map(|(label, st)| ([("runtime", label.as_str())], st)),
        )?;
    }
    stall_histogram(enc, s)?;
    for m in &n.worker {
        let series = s.runtimes.iter().flat_map(|(label, st)| {
            st.per_worker
                .iter()
                .enumerate()
                .map(move |(i, w)| (([("runtime", label.as_str())], [("worker", i)]), w))
        });
        family(enc, m, series)?;
    }
    Ok(())
}

/// One metric with a series per label set; nothing at all when no series has the figure.
fn family<'a, R: 'static, L>(
    enc: &mut DescriptorEncoder,
    m: &Metric<R>,
    series: impl Iterator<Item = (L, &'a R)> + Clone,
) -> fmt::Result
where
    L: prometheus_client::encoding::EncodeLabelSet,
{
    if !series.clone().any(|(_, r)| m.value(r).is_some()) {
        return Ok(());
    }
    let mut me = enc.encode_descriptor(
        &m.stem,
        m.field.help,
        unit(m.unit),
        metric_type(m.field.kind),
    )?;
    for (labels, r) in series {
        if let Some(v) = m.value(r) {
            sample(me.encode_family(&labels)?, m.field.kind, v)?;
        }
    }
    Ok(())
}

/// `rdebug_sched_stall_seconds{runtime}`: how long each stall held its worker, once its poll
/// ended (`RDEBUG=stalltrace`, the STALL-END lines). Nothing while no runtime is watched.
fn stall_histogram(enc: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    use crate::runtime::watched::STALL_BUCKETS;
    if s.stall_lengths.is_empty() {
        return Ok(());
    }
    let mut me = enc.encode_descriptor(
        super::names::STALL_STEM,
        "How long each stall held its worker, once its poll ended (RDEBUG=stalltrace; the \
         STALL-END lines).",
        Some(&SECONDS),
        MetricType::Histogram,
    )?;
    for (label, h) in &s.stall_lengths {
        // prometheus-client takes each bucket's own count and sums them as it writes.
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(STALL_BUCKETS.len() + 1);
        let mut below = 0u64;
        for (bound, &le) in STALL_BUCKETS.iter().zip(&h.le) {
            buckets.push((*bound, le.saturating_sub(below)));
            below = le;
        }
        buckets.push((f64::INFINITY, h.count.saturating_sub(below)));
        me.encode_family(&[("runtime", label.as_str())])?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum_seconds,
                h.count,
                &buckets,
                None,
            )?;
    }
    Ok(())
}
