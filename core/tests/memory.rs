//! Memory stays flat over repeated rounds of concurrent sessions (its own test binary, so no
//! other test's model shares the process RSS).

#[path = "support/models.rs"]
mod models;

use models::{greedy, load, proc_status_kb};

use corral::{Model, ModelOptions};

fn prompt(i: usize) -> String {
    format!("Story {i}: {}. Then", "alpha river stone cloud ".repeat(i * 5 + 1))
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
    let before = proc_status_kb("VmRSS");
    for _ in 0..5 {
        round(&model);
    }
    let after = proc_status_kb("VmRSS");
    assert!(after < before + 20_000, "RSS grew from {before} kB to {after} kB");
}
