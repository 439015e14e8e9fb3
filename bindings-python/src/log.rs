//! Bridges corral's and llama.cpp's log lines to a Python handler (the facade's, which feeds
//! `logging`). Lines can be logged on any thread, including the engine thread while another
//! thread holds the GIL and waits for that engine (e.g. `close()`), so the core callback never
//! takes the GIL itself: it queues the line for a forwarder thread that does.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use pyo3::prelude::*;

use corral::log::{set_log_callback, LogLevel};

use crate::error::OrRaise;

struct Record {
    level: LogLevel,
    source: String,
    message: String,
}

/// The running forwarder thread, if a handler is installed.
static FORWARDER: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

/// Python `logging` levels.
fn python_level(level: LogLevel) -> i32 {
    match level {
        LogLevel::Debug => 10,
        LogLevel::Info => 20,
        LogLevel::Warn => 30,
        LogLevel::Error => 40,
    }
}

fn core_level(python_level: i32) -> LogLevel {
    match python_level {
        i32::MIN..=10 => LogLevel::Debug,
        11..=20 => LogLevel::Info,
        21..=30 => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

/// Installs `handler(level: int, source: str, message: str)` for lines at or above `level`
/// (a `logging` level), or removes it with `None`. Lines already queued are delivered before
/// this returns, so nothing is lost or delivered late when the handler changes.
#[pyfunction]
#[pyo3(signature = (handler, level=30))]
pub fn set_log_handler(py: Python<'_>, handler: Option<Py<PyAny>>, level: i32) -> PyResult<()> {
    // Released: the forwarder being stopped may be waiting for the GIL to deliver a line.
    py.detach(move || -> corral::Result<()> {
        let mut forwarder = FORWARDER.lock().unwrap_or_else(PoisonError::into_inner);
        // Dropping the old callback drops its sender; the thread drains and exits.
        set_log_callback(None, LogLevel::Error);
        if let Some(thread) = forwarder.take() {
            let _ = thread.join();
        }
        let Some(handler) = handler else { return Ok(()) };
        let (sender, receiver) = mpsc::channel::<Record>();
        let thread = std::thread::Builder::new()
            .name("corral-log".into())
            .spawn(move || {
                for record in receiver {
                    Python::attach(|py| {
                        let args = (python_level(record.level), record.source, record.message);
                        if let Err(e) = handler.call1(py, args) {
                            e.write_unraisable(py, None);
                        }
                    });
                }
            })
            .map_err(|e| corral::Error::with_source(corral::ErrorKind::Internal, "cannot start the log thread", e))?;
        set_log_callback(
            Some(Arc::new(move |level, source: &str, message: &str| {
                let _ = sender.send(Record { level, source: source.to_owned(), message: message.to_owned() });
            })),
            core_level(level),
        );
        *forwarder = Some(thread);
        Ok(())
    })
    .or_raise(py)
}
