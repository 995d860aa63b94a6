//! Progress bars on standard error (hidden when it is not a terminal, or when the command
//! runs inside `cairn serve` for another process).

use std::cell::RefCell;

use cairn_app::Unit;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

fn target() -> ProgressDrawTarget {
    if crate::console::captured() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// A byte-count progress bar.
fn bytes(total: u64, msg: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg);
    bar
}

/// An item-count progress bar.
pub(crate) fn items(total: u64, msg: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg);
    bar
}

/// Progress that operations report, drawn as one bar at a time.
#[derive(Default)]
pub(crate) struct Bar(RefCell<Option<ProgressBar>>);

impl cairn_app::Progress for Bar {
    fn begin(&self, what: &'static str, unit: Unit, total: u64) {
        let bar = match unit {
            Unit::Bytes => bytes(total, what),
            Unit::Items => items(total, what),
        };
        if let Some(old) = self.0.replace(Some(bar)) {
            old.finish_and_clear();
        }
    }

    fn at(&self, done: u64) {
        if let Some(b) = self.0.borrow().as_ref() {
            b.set_position(done);
        }
    }

    fn end(&self) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
    }
}
