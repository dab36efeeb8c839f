//! Prometheus metrics (§9), kept in a small in-process registry rendered in text format
//! 0.0.4. Channel depths are read from the buffer at scrape time, so they are exact for
//! every backend; counters here are per process.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use connect_protocol::ids::Protocol;
use hashbrown::{Equivalent, HashMap};
use parking_lot::Mutex;

use connect_buffer::Leased;

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Label names and values as stored (and as given to [`Metrics::render`]).
type Labels = Vec<(&'static str, String)>;
/// Label names and values as given on the hot path: nothing is allocated to find a series
/// that already exists (ingress records five per webhook).
type LabelRefs<'a> = [(&'static str, &'a str)];

/// One series: a metric name and its labels.
#[derive(PartialEq, Eq)]
struct Key {
    name: &'static str,
    labels: Labels,
}

/// A borrowed [`Key`], hashed the same way.
struct KeyRef<'a> {
    name: &'static str,
    labels: &'a LabelRefs<'a>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h);
        h.write_usize(self.labels.len());
        for (k, v) in &self.labels {
            k.hash(h);
            v.as_str().hash(h);
        }
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h);
        h.write_usize(self.labels.len());
        for (k, v) in self.labels {
            k.hash(h);
            v.hash(h);
        }
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.name == key.name
            && self.labels.len() == key.labels.len()
            && self
                .labels
                .iter()
                .zip(&key.labels)
                .all(|((a, x), (b, y))| a == b && *x == y.as_str())
    }
}

impl From<&KeyRef<'_>> for Key {
    fn from(k: &KeyRef<'_>) -> Self {
        Key {
            name: k.name,
            labels: k
                .labels
                .iter()
                .map(|(n, v)| (*n, (*v).to_owned()))
                .collect(),
        }
    }
}

/// The series of one kind, found by a borrowed key and created on first use.
struct Series<V>(HashMap<Key, V>);

impl<V> Default for Series<V> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<V> Series<V> {
    /// Drops the series of `channel` for which `dead` holds: those labelled `channel`, and a
    /// self-service channel's ingress series, which name it as the webhook (see
    /// [`Metrics::ingress`]).
    fn forget_channel(&mut self, channel: &str, dead: impl Fn(&V) -> bool) {
        let hosted = is_self_service_name(channel);
        self.0.retain(|k, v| {
            !(dead(v)
                && (k
                    .labels
                    .iter()
                    .any(|(l, x)| *l == "channel" && x == channel)
                    || (hosted && is_ingress_of(k, channel))))
        });
    }

    /// One hash lookup; allocates only when the series is new.
    fn get_or(&mut self, key: KeyRef<'_>, new: impl FnOnce() -> V) -> &mut V {
        self.0.entry_ref(&key).or_insert_with(new)
    }

    /// Every series, ordered by name and labels (a stable exposition).
    fn sorted(&self) -> Vec<(&Key, &V)> {
        let mut all: Vec<_> = self.0.iter().collect();
        all.sort_by(|a, b| (a.0.name, &a.0.labels).cmp(&(b.0.name, &b.0.labels)));
        all
    }
}

/// A self-service channel is named `<account>.<name>` (HOSTED.md §3); a configured webhook id
/// never holds a `.` (CONFIG.md: `^[A-Za-z0-9][A-Za-z0-9_-]*$`), so an ingress series with no
/// namespace and such a name as its webhook is that channel's.
fn is_self_service_name(channel: &str) -> bool {
    channel.contains('.')
}

/// Whether `k` is an ingress series of the self-service channel `channel`.
fn is_ingress_of(k: &Key, channel: &str) -> bool {
    k.name.starts_with("webhook_connect_ingress_")
        && k.labels
            .iter()
            .any(|(l, x)| *l == "namespace" && x.is_empty())
        && k.labels
            .iter()
            .any(|(l, x)| *l == "webhook" && x == channel)
}

struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: [0; BUCKETS.len()],
            sum: 0.0,
            count: 0,
        }
    }
}

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Series<u64>>,
    gauges: Mutex<Series<i64>>,
    histograms: Mutex<Series<Histogram>>,
}

impl Metrics {
    pub fn inc(&self, name: &'static str, labels: &LabelRefs<'_>, by: u64) {
        *self
            .counters
            .lock()
            .get_or(KeyRef { name, labels }, u64::default) += by;
    }

    fn gauge_add(&self, name: &'static str, labels: &LabelRefs<'_>, by: i64) {
        *self
            .gauges
            .lock()
            .get_or(KeyRef { name, labels }, i64::default) += by;
    }

    pub fn observe(&self, name: &'static str, labels: &LabelRefs<'_>, v: f64) {
        let mut h = self.histograms.lock();
        let e = h.get_or(KeyRef { name, labels }, Histogram::default);
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                e.buckets[i] += 1;
            }
        }
        e.sum += v;
        e.count += 1;
    }

    pub fn ingress(
        &self,
        namespace: &str,
        webhook: &str,
        status: u16,
        seconds: f64,
        body_bytes: usize,
    ) {
        let l: &LabelRefs<'_> = &[("namespace", namespace), ("webhook", webhook)];
        let digits = itoa_status(status);
        let status = digits.as_str();
        let with_status: &LabelRefs<'_> = &[
            ("namespace", namespace),
            ("webhook", webhook),
            ("status", status),
        ];
        self.inc("webhook_connect_ingress_requests_total", with_status, 1);
        self.observe(
            "webhook_connect_ingress_request_duration_seconds",
            l,
            seconds,
        );
        self.observe("webhook_connect_ingress_body_bytes", l, body_bytes as f64);
    }

    pub fn enqueued(&self, backend: &str, channel: &str, seconds: f64) {
        self.observe(
            "webhook_connect_enqueue_duration_seconds",
            &[("backend", backend)],
            seconds,
        );
        self.inc(
            "webhook_connect_messages_received_total",
            &[("channel", channel)],
            1,
        );
    }

    pub fn delivered(&self, channel: &str, protocol: Protocol, batch: &[Leased]) {
        self.inc(
            "webhook_connect_deliveries_total",
            &[("channel", channel), ("protocol", protocol.as_str())],
            batch.len() as u64,
        );
    }

    pub fn redelivery(&self, channel: &str, cause: &str, n: u64) {
        self.inc(
            "webhook_connect_redeliveries_total",
            &[("channel", channel), ("cause", cause)],
            n,
        );
    }

    pub fn acked(&self, channel: &str) {
        self.inc("webhook_connect_acks_total", &[("channel", channel)], 1);
    }

    pub fn nacked(&self, channel: &str, retry: bool) {
        self.inc(
            "webhook_connect_nacks_total",
            &[
                ("channel", channel),
                ("retry", if retry { "true" } else { "false" }),
            ],
            1,
        );
    }

    /// A deleted channel's series go with it (else create/delete churn grows them without
    /// bound); a connections gauge stays until its connections have closed.
    pub fn forget_channel(&self, channel: &str) {
        self.counters.lock().forget_channel(channel, |_| true);
        self.histograms.lock().forget_channel(channel, |_| true);
        self.gauges.lock().forget_channel(channel, |v| *v == 0);
    }

    pub fn discarded(&self, channel: &str, reason: &str, n: u64) {
        self.inc(
            "webhook_connect_messages_discarded_total",
            &[("channel", channel), ("reason", reason)],
            n,
        );
    }

    pub fn connection_opened(&self, channel: &str, protocol: Protocol) {
        self.gauge_add(
            "webhook_connect_connections",
            &[("channel", channel), ("protocol", protocol.as_str())],
            1,
        );
    }

    pub fn connection_closed(&self, channel: &str, protocol: Protocol) {
        self.gauge_add(
            "webhook_connect_connections",
            &[("channel", channel), ("protocol", protocol.as_str())],
            -1,
        );
    }

    pub fn connection_rejected(&self, reason: &str) {
        self.inc(
            "webhook_connect_connection_rejections_total",
            &[("reason", reason)],
            1,
        );
    }

    pub fn config_reload(&self, source: &str, result: &str) {
        self.inc(
            "webhook_connect_config_reloads_total",
            &[("source", source), ("result", result)],
            1,
        );
    }

    /// Renders everything, plus the scrape-time gauges given by the caller.
    pub fn render(
        &self,
        extra_gauges: &[(&'static str, Labels, f64)],
        extra_counters: &[(&'static str, Labels, f64)],
    ) -> String {
        let mut out = String::new();
        let mut last = "";
        for (name, labels, v) in extra_counters {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels, None));
        }
        for (Key { name, labels }, v) in self.counters.lock().sorted() {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels, None));
        }
        for (Key { name, labels }, v) in self.gauges.lock().sorted() {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} gauge");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels, None));
        }
        for (name, labels, v) in extra_gauges {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} gauge");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels, None));
        }
        for (Key { name, labels }, h) in self.histograms.lock().sorted() {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} histogram");
                last = name;
            }
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    fmt_labels(labels, Some(&b.to_string())),
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                fmt_labels(labels, Some("+Inf")),
                h.count
            );
            let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(labels, None), h.sum);
            let _ = writeln!(out, "{name}_count{} {}", fmt_labels(labels, None), h.count);
        }
        out
    }
}

/// A status code's decimal digits without allocating (HTTP status codes are 100–999).
struct StatusDigits {
    bytes: [u8; 5],
    len: usize,
}

impl StatusDigits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[5 - self.len..]).unwrap_or("0")
    }
}

fn itoa_status(mut n: u16) -> StatusDigits {
    let mut d = StatusDigits {
        bytes: [b'0'; 5],
        len: 0,
    };
    loop {
        d.len += 1;
        d.bytes[5 - d.len] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

fn fmt_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_digits_are_the_decimal_code() {
        for n in [0u16, 7, 200, 404, 503, 999, 65535] {
            assert_eq!(itoa_status(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn a_series_is_found_again_by_borrowed_labels_and_rendered_in_order() {
        let m = Metrics::default();
        m.inc("b_total", &[("channel", "y")], 1);
        m.inc("b_total", &[("channel", "x")], 2);
        m.inc("b_total", &[("channel", "y")], 3);
        m.inc("a_total", &[], 1);
        m.ingress("", "hook", 200, 0.001, 10);
        m.ingress("", "hook", 200, 0.001, 10);
        let text = m.render(&[], &[]);
        let a = text.find("a_total 1").expect("a_total");
        let x = text.find("b_total{channel=\"x\"} 2").expect("x");
        let y = text.find("b_total{channel=\"y\"} 4").expect("y");
        assert!(a < x && x < y, "{text}");
        assert!(
            text.contains(
                "webhook_connect_ingress_requests_total{namespace=\"\",webhook=\"hook\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "webhook_connect_ingress_body_bytes_count{namespace=\"\",webhook=\"hook\"} 2"
        ));
    }
}
