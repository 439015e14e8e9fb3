//! Memory stays flat over repeated rounds of concurrent sessions (its own test binary, so no
//! other test's model shares the process RSS).

#[path = "support/models.rs"]
mod models;

use models::{greedy, load};

use corral::{Model, ModelOptions};

fn prompt(i: usize) -> String {
    format!("Story {i}: {}. Then", "alpha river stone cloud ".repeat(i * 5 + 1))
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn memory_is_stable_over_rounds() {
    let model = load(ModelOptions { context_length: Some(4096), max_sequences: 8, ..Default::default() });
    let round = |model: &Model| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let model = model.clone();
                std::thread::spawn(move || {
                    let session = model.session().unwrap();
                    session.complete(&prompt(i), &greedy(8)).unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    };
    round(&model);
    round(&model);
    let before = rss_kb();
    for _ in 0..5 {
        round(&model);
    }
    let after = rss_kb();
    assert!(after < before + 20_000, "RSS grew from {before} kB to {after} kB");
}
