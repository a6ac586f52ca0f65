//! The machine's gauges at `GET /metrics`, over real HTTP on 127.0.0.1 (no model is loaded):
//! they come from the hardware detection and are read at each scrape.

mod common;

use common::start_server;

/// The value of the series whose line starts with `prefix` (name and labels).
fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_cpu_and_memory_of_this_machine() {
    let server = start_server(|_| {}).await;
    let hw = hyperllama_engine::hardware::detect();
    for _ in 0..2 {
        let resp = reqwest::get(server.at("/metrics")).await.expect("scrape");
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.expect("body");
        assert!(
            text.contains("# TYPE hyperllama_cpu_logical_cores gauge\n"),
            "{text}"
        );
        assert_eq!(
            value(&text, "hyperllama_cpu_logical_cores "),
            hw.n_logical_cores as f64
        );
        let info = text
            .lines()
            .find(|l| l.starts_with("hyperllama_cpu_info{"))
            .unwrap_or_else(|| panic!("no cpu info in\n{text}"));
        assert!(info.ends_with("} 1"), "{info}");
        assert!(
            info.contains(&format!("simd=\"{}\"", hw.simd.join(","))),
            "{info}"
        );
        let total = value(&text, "hyperllama_memory_total_bytes ");
        let available = value(&text, "hyperllama_memory_available_bytes ");
        assert_eq!(total, hw.memory_total as f64);
        assert!(
            available > 0.0 && available <= total,
            "{available} of {total}"
        );
        if hw.gpus.iter().all(|g| g.memory_total == 0) {
            assert!(!text.contains("hyperllama_gpu_"), "{text}");
        } else {
            assert!(
                text.contains("hyperllama_gpu_memory_free_bytes{index=\"0\""),
                "{text}"
            );
        }
    }
    server.stop().await;
}
