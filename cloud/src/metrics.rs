//! Prometheus metrics (§9), kept in a small in-process registry rendered in text format
//! 0.0.4. Channel depths are read from the buffer at scrape time, so they are exact for
//! every backend; counters here are per process.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use connect_protocol::ids::Protocol;
use parking_lot::Mutex;

use connect_buffer::Leased;

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, Labels), u64>>,
    gauges: Mutex<BTreeMap<(&'static str, Labels), i64>>,
    histograms: Mutex<BTreeMap<(&'static str, Labels), Histogram>>,
}

impl Metrics {
    pub fn inc(&self, name: &'static str, labels: Labels, by: u64) {
        *self.counters.lock().entry((name, labels)).or_default() += by;
    }

    fn gauge_add(&self, name: &'static str, labels: Labels, by: i64) {
        *self.gauges.lock().entry((name, labels)).or_default() += by;
    }

    pub fn observe(&self, name: &'static str, labels: Labels, v: f64) {
        let mut h = self.histograms.lock();
        let e = h.entry((name, labels)).or_insert_with(|| Histogram {
            buckets: vec![0; BUCKETS.len()],
            ..Default::default()
        });
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
        let l = || {
            vec![
                ("namespace", namespace.to_owned()),
                ("webhook", webhook.to_owned()),
            ]
        };
        let mut with_status = l();
        with_status.push(("status", status.to_string()));
        self.inc("webhook_connect_ingress_requests_total", with_status, 1);
        self.observe(
            "webhook_connect_ingress_request_duration_seconds",
            l(),
            seconds,
        );
        self.observe("webhook_connect_ingress_body_bytes", l(), body_bytes as f64);
    }

    pub fn enqueued(&self, backend: &str, channel: &str, seconds: f64) {
        self.observe(
            "webhook_connect_enqueue_duration_seconds",
            vec![("backend", backend.to_owned())],
            seconds,
        );
        self.inc(
            "webhook_connect_messages_received_total",
            vec![("channel", channel.to_owned())],
            1,
        );
    }

    pub fn delivered(&self, channel: &str, protocol: Protocol, batch: &[Leased]) {
        self.inc(
            "webhook_connect_deliveries_total",
            vec![
                ("channel", channel.to_owned()),
                ("protocol", protocol.as_str().to_owned()),
            ],
            batch.len() as u64,
        );
    }

    pub fn redelivery(&self, channel: &str, cause: &str, n: u64) {
        self.inc(
            "webhook_connect_redeliveries_total",
            vec![("channel", channel.to_owned()), ("cause", cause.to_owned())],
            n,
        );
    }

    pub fn acked(&self, channel: &str) {
        self.inc(
            "webhook_connect_acks_total",
            vec![("channel", channel.to_owned())],
            1,
        );
    }

    pub fn nacked(&self, channel: &str, retry: bool) {
        self.inc(
            "webhook_connect_nacks_total",
            vec![
                ("channel", channel.to_owned()),
                ("retry", retry.to_string()),
            ],
            1,
        );
    }

    pub fn discarded(&self, channel: &str, reason: &str, n: u64) {
        self.inc(
            "webhook_connect_messages_discarded_total",
            vec![
                ("channel", channel.to_owned()),
                ("reason", reason.to_owned()),
            ],
            n,
        );
    }

    pub fn connection_opened(&self, channel: &str, protocol: Protocol) {
        self.gauge_add(
            "webhook_connect_connections",
            vec![
                ("channel", channel.to_owned()),
                ("protocol", protocol.as_str().to_owned()),
            ],
            1,
        );
    }

    pub fn connection_closed(&self, channel: &str, protocol: Protocol) {
        self.gauge_add(
            "webhook_connect_connections",
            vec![
                ("channel", channel.to_owned()),
                ("protocol", protocol.as_str().to_owned()),
            ],
            -1,
        );
    }

    pub fn connection_rejected(&self, reason: &str) {
        self.inc(
            "webhook_connect_connection_rejections_total",
            vec![("reason", reason.to_owned())],
            1,
        );
    }

    pub fn config_reload(&self, source: &str, result: &str) {
        self.inc(
            "webhook_connect_config_reloads_total",
            vec![("source", source.to_owned()), ("result", result.to_owned())],
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
        for ((name, labels), v) in self.counters.lock().iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels, None));
        }
        for ((name, labels), v) in self.gauges.lock().iter() {
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
        for ((name, labels), h) in self.histograms.lock().iter() {
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
