//! The body one fake target serves: a node_exporter-like text exposition.
//!
//! A [`Template`] is built once per series count: every HELP/TYPE line and
//! every series' name and labels are rendered into one static string, with
//! value slots between the pieces. A scrape only writes the values (and the
//! few churning series), so a body costs one pass over a pre-rendered buffer.

use std::fmt::Write as _;

/// What a series is, which tells how its value moves between scrapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// A monotonically growing counter (`_total`).
    Counter,
    /// A gauge that moves up and down.
    Gauge,
    /// A cumulative histogram bucket (`_bucket{le=...}`).
    HistogramBucket,
    /// A histogram's `_sum`.
    HistogramSum,
    /// A histogram's `_count`.
    HistogramCount,
}

impl SeriesKind {
    /// True for series whose value never decreases while the target lives.
    pub fn counter_like(self) -> bool {
        !matches!(self, SeriesKind::Gauge)
    }
}

/// One series a target exposes, as the exposition names it (without the
/// `job`/`instance` labels a scraper adds).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeriesInfo {
    /// The metric name.
    pub name: String,
    /// The labels in the order the exposition writes them.
    pub labels: Vec<(String, String)>,
    /// How the value moves.
    pub kind: SeriesKind,
}

/// Bucket upper bounds of every fake histogram.
const BUCKETS: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
];
/// Series per histogram label set: the buckets, `+Inf`, `_sum`, `_count`.
pub const HISTOGRAM_SERIES: usize = BUCKETS.len() + 3;

const CPU_MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const MEMORY_FIELDS: [&str; 8] = [
    "MemAvailable",
    "MemFree",
    "Buffers",
    "Cached",
    "SwapFree",
    "SwapTotal",
    "Active",
    "Inactive",
];

/// How one value slot computes its value from the scrape number.
#[derive(Debug, Clone, Copy)]
struct ValueGen {
    kind: SeriesKind,
    seed: u64,
    /// For buckets: the cumulative weight of this bucket; for sum and count:
    /// the label set's total weight.
    weight: u64,
}

impl ValueGen {
    fn value(&self, scrape: u64) -> f64 {
        let n = (scrape + 1) as f64;
        match self.kind {
            SeriesKind::Counter => (self.seed % 1000) as f64 + n * (1 + self.seed % 17) as f64,
            SeriesKind::Gauge => {
                let phase = (self.seed % 628) as f64 / 100.0;
                let amplitude = (1 + self.seed % 1000) as f64;
                // Always positive, and a different value on every scrape.
                (amplitude * 2.0 + amplitude * (phase + n * 0.37).sin()).round() + n * 1e-3
            }
            SeriesKind::HistogramBucket | SeriesKind::HistogramCount => n * self.weight as f64,
            SeriesKind::HistogramSum => {
                n * self.weight as f64 * (0.05 + (self.seed % 7) as f64 * 0.01)
            }
        }
    }
}

/// A series' identity and its value generator.
#[derive(Debug, Clone)]
struct SeriesSlot {
    info: SeriesInfo,
    gen_: ValueGen,
}

/// A metric family: one HELP/TYPE header and its series.
#[derive(Debug, Clone)]
struct Family {
    name: String,
    help: String,
    typ: &'static str,
    series: Vec<SeriesSlot>,
}

fn seed_of(index: usize) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&(index as u64).to_le_bytes())
}

/// The value generator of the next series (`index` counts every series).
fn next_slot(kind: SeriesKind, weight: u64, index: &mut usize) -> ValueGen {
    let gen_ = ValueGen {
        kind,
        seed: seed_of(*index),
        weight,
    };
    *index += 1;
    gen_
}

/// A counter or gauge family of `take` series, series `i` labelled
/// `labels(i)`.
fn simple_family(
    name: String,
    help: impl Into<String>,
    kind: SeriesKind,
    take: usize,
    index: &mut usize,
    labels: impl Fn(usize) -> Vec<(String, String)>,
) -> Family {
    let typ = match kind {
        SeriesKind::Counter => "counter",
        _ => "gauge",
    };
    let series = (0..take)
        .map(|i| SeriesSlot {
            info: SeriesInfo {
                name: name.clone(),
                labels: labels(i),
                kind,
            },
            gen_: next_slot(kind, 0, index),
        })
        .collect();
    Family {
        name,
        help: help.into(),
        typ,
        series,
    }
}

/// Lays out `count` series in node_exporter-like families.
fn build_families(count: usize) -> Vec<Family> {
    let mut families = Vec::new();
    let mut remaining = count;
    let mut index = 0usize;
    let mut round = 0usize;
    while remaining > 0 {
        let prefix = if round == 0 {
            String::new()
        } else {
            format!("r{round}_")
        };
        for entry in 0..6 {
            if remaining == 0 {
                break;
            }
            match entry {
                0 => {
                    let take = remaining.min(64);
                    families.push(simple_family(
                        format!("{prefix}node_cpu_seconds_total"),
                        "Seconds the CPUs spent in each mode.",
                        SeriesKind::Counter,
                        take,
                        &mut index,
                        |i| {
                            vec![
                                ("cpu".into(), (i / 8).to_string()),
                                ("mode".into(), CPU_MODES[i % 8].into()),
                            ]
                        },
                    ));
                    remaining -= take;
                }
                1 => {
                    for field in MEMORY_FIELDS {
                        if remaining == 0 {
                            break;
                        }
                        families.push(simple_family(
                            format!("{prefix}node_memory_{field}_bytes"),
                            format!("Memory information field {field}_bytes."),
                            SeriesKind::Gauge,
                            1,
                            &mut index,
                            |_| Vec::new(),
                        ));
                        remaining -= 1;
                    }
                }
                2 | 5 => {
                    let take = remaining.min(16);
                    let (name, help, dev) = if entry == 2 {
                        (
                            format!("{prefix}node_network_receive_bytes_total"),
                            "Network device statistic receive_bytes.",
                            "eth",
                        )
                    } else {
                        (
                            format!("{prefix}node_disk_read_bytes_total"),
                            "The total number of bytes read successfully.",
                            "sd",
                        )
                    };
                    families.push(simple_family(
                        name,
                        help,
                        SeriesKind::Counter,
                        take,
                        &mut index,
                        |i| vec![("device".into(), format!("{dev}{i}"))],
                    ));
                    remaining -= take;
                }
                3 => {
                    let take = remaining.min(16);
                    families.push(simple_family(
                        format!("{prefix}node_filesystem_avail_bytes"),
                        "Filesystem space available to non-root users in bytes.",
                        SeriesKind::Gauge,
                        take,
                        &mut index,
                        |i| {
                            vec![
                                ("device".into(), format!("/dev/vd{i}")),
                                ("fstype".into(), "ext4".into()),
                                ("mountpoint".into(), format!("/mnt/data{i}")),
                            ]
                        },
                    ));
                    remaining -= take;
                }
                _ => {
                    let sets = (remaining / HISTOGRAM_SERIES).min(4);
                    if sets == 0 {
                        continue;
                    }
                    let name = format!("{prefix}http_request_duration_seconds");
                    let mut series = Vec::with_capacity(sets * HISTOGRAM_SERIES);
                    for set in 0..sets {
                        let handler = format!("/api/v1/resource{set}");
                        let seed = seed_of(index);
                        // Cumulative weights: every bucket grows each scrape.
                        let mut cumulative = 0u64;
                        for (b, le) in BUCKETS.iter().chain(["+Inf"].iter()).enumerate() {
                            cumulative += 1 + (seed >> (b * 4)) % 5;
                            series.push(SeriesSlot {
                                info: SeriesInfo {
                                    name: format!("{name}_bucket"),
                                    labels: vec![
                                        ("handler".into(), handler.clone()),
                                        ("le".into(), (*le).into()),
                                    ],
                                    kind: SeriesKind::HistogramBucket,
                                },
                                gen_: next_slot(
                                    SeriesKind::HistogramBucket,
                                    cumulative,
                                    &mut index,
                                ),
                            });
                        }
                        for (suffix, kind) in [
                            ("_sum", SeriesKind::HistogramSum),
                            ("_count", SeriesKind::HistogramCount),
                        ] {
                            series.push(SeriesSlot {
                                info: SeriesInfo {
                                    name: format!("{name}{suffix}"),
                                    labels: vec![("handler".into(), handler.clone())],
                                    kind,
                                },
                                gen_: next_slot(kind, cumulative, &mut index),
                            });
                        }
                    }
                    families.push(Family {
                        name,
                        help: "A histogram of the request duration.".into(),
                        typ: "histogram",
                        series,
                    });
                    remaining -= sets * HISTOGRAM_SERIES;
                }
            }
        }
        round += 1;
    }
    families
}

fn write_series_prefix(out: &mut String, info: &SeriesInfo) {
    out.push_str(&info.name);
    if !info.labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in info.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{v}\"");
        }
        out.push('}');
    }
    out.push(' ');
}

/// Name of the family whose series are replaced on every churn generation.
pub const CHURN_FAMILY: &str = "app_session_requests_total";

/// The pre-rendered body of a target with a given series count.
#[derive(Debug)]
pub struct Template {
    /// Static text; `slots[i].0` is where value `i` goes.
    text: String,
    slots: Vec<(usize, ValueGen)>,
    churn_series: usize,
}

impl Template {
    /// Builds the template of a target exposing `count` series of which
    /// `churn_series` churn.
    pub fn new(count: usize, churn_series: usize) -> Template {
        let churn_series = churn_series.min(count);
        let families = build_families(count - churn_series);
        let mut text = String::with_capacity(count * 64);
        let mut slots = Vec::with_capacity(count);
        for family in families {
            let _ = writeln!(text, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(text, "# TYPE {} {}", family.name, family.typ);
            for slot in family.series {
                write_series_prefix(&mut text, &slot.info);
                slots.push((text.len(), slot.gen_));
                text.push('\n');
            }
        }
        Template {
            text,
            slots,
            churn_series,
        }
    }

    /// Series exposed per scrape.
    pub fn series_count(&self) -> usize {
        self.slots.len() + self.churn_series
    }

    /// The series exposed during churn generation `generation` (rebuilt on
    /// each call: a fleet of a million series keeps only the rendered text).
    pub fn series(&self, generation: u64) -> Vec<SeriesInfo> {
        let mut all: Vec<SeriesInfo> = build_families(self.slots.len())
            .into_iter()
            .flat_map(|f| f.series.into_iter().map(|s| s.info))
            .collect();
        all.extend((0..self.churn_series).map(|i| churn_info(generation, i)));
        all
    }

    /// Renders the body of scrape number `scrape` during churn generation
    /// `generation` into `out`.
    pub fn render(&self, scrape: u64, generation: u64, out: &mut String) {
        out.clear();
        out.reserve(self.text.len() + self.slots.len() * 8 + self.churn_series * 64);
        let mut from = 0;
        for (at, gen_) in &self.slots {
            out.push_str(&self.text[from..*at]);
            let _ = write!(out, "{}", gen_.value(scrape));
            from = *at;
        }
        out.push_str(&self.text[from..]);
        if self.churn_series > 0 {
            let _ = writeln!(
                out,
                "# HELP {CHURN_FAMILY} Requests per short-lived session.\n# TYPE {CHURN_FAMILY} counter"
            );
            for i in 0..self.churn_series {
                let _ = writeln!(
                    out,
                    "{CHURN_FAMILY}{{session=\"g{generation}-{i}\"}} {}",
                    scrape + 1 + i as u64
                );
            }
        }
    }
}

fn churn_info(generation: u64, i: usize) -> SeriesInfo {
    SeriesInfo {
        name: CHURN_FAMILY.into(),
        labels: vec![("session".into(), format!("g{generation}-{i}"))],
        kind: SeriesKind::Counter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_has_exactly_the_requested_series() {
        for count in [1, 7, 13, 14, 100, 1000, 2500] {
            let t = Template::new(count, count / 10);
            assert_eq!(t.series_count(), count);
            let mut body = String::new();
            t.render(0, 0, &mut body);
            let samples = body.lines().filter(|l| !l.starts_with('#')).count();
            assert_eq!(samples, count, "count {count}");
        }
    }

    #[test]
    fn series_identities_are_unique() {
        let t = Template::new(3000, 100);
        let mut seen = std::collections::HashSet::new();
        for s in t.series(3) {
            assert!(seen.insert((s.name.clone(), s.labels.clone())), "{s:?}");
        }
    }
}
