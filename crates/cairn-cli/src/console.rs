//! Where command output goes: standard output, or a buffer when the command runs inside
//! `cairn serve` on behalf of another `cairn` process (see `control`).

use std::cell::RefCell;
use std::io::Write;

/// What a command wrote while captured: its output, and its notes for the user (standard
/// error when run directly).
#[derive(Default)]
struct Captured {
    out: Vec<u8>,
    notes: Vec<u8>,
}

thread_local! {
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's output captured; returns its result, the output and the notes,
/// so that a command run for another process writes nothing on this one's terminal.
pub(crate) fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<u8>, Vec<u8>) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Captured::default()));
    let r = f();
    let c = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (r, c.out, c.notes)
}

/// Whether output is being captured (progress bars are then hidden).
pub(crate) fn captured() -> bool {
    CAPTURE.with(|c| c.borrow().is_some())
}

/// Command output: standard output, or the capture buffer.
pub(crate) struct Out;

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let done = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
            Some(c) => {
                c.out.extend_from_slice(buf);
                true
            }
            None => false,
        });
        if done {
            Ok(buf.len())
        } else {
            std::io::stdout().lock().write(buf)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

/// Writes formatted output. A closed standard output (e.g. `cairn log | head`) is not an
/// error worth reporting, so write failures are ignored here.
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    let _ = Out.write_fmt(args);
}

/// Writes a note for the user: standard error, or the capture's notes.
pub(crate) fn note(args: std::fmt::Arguments<'_>) {
    let done = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(c) => {
            let _ = c.notes.write_fmt(args);
            c.notes.push(b'\n');
            true
        }
        None => false,
    });
    if !done {
        let mut e = std::io::stderr().lock();
        let _ = e.write_fmt(args);
        let _ = e.write_all(b"\n");
    }
}

/// `eprintln!` for notes to the user that are not the command's output (hints, failures of
/// one of several targets): they reach the user's terminal also when the command runs inside
/// `cairn serve`.
macro_rules! note {
    ($($t:tt)*) => { $crate::console::note(format_args!($($t)*)) };
}

/// `println!` for command output.
macro_rules! say {
    () => { $crate::console::write(format_args!("\n")) };
    ($($t:tt)*) => {{
        $crate::console::write(format_args!($($t)*));
        $crate::console::write(format_args!("\n"));
    }};
}

/// `print!` for command output.
macro_rules! say_raw {
    ($($t:tt)*) => { $crate::console::write(format_args!($($t)*)) };
}
