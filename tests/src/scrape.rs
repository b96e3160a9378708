//! Reading a metrics port as Prometheus does, for the tests that check what it counts and
//! for roster-bench.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One scrape, over plain HTTP/1.1.
pub async fn scrape(addr: SocketAddr) -> Vec<prometheus_parse::Sample> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("the metrics port accepts");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: roster\r\nConnection: close\r\n\r\n").await.expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lines = body.lines().map(|line| Ok(line.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format").samples
}

pub fn value(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).map(
        |s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        },
    )
}
