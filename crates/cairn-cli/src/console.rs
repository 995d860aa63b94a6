//! Where command output goes: standard output, or a buffer when the command runs inside
//! `cairn serve` on behalf of another `cairn` process (see `control`).

use std::cell::RefCell;
use std::io::Write;

thread_local! {
    static CAPTURE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's output captured; returns its result and the output.
pub(crate) fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<u8>) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let r = f();
    let out = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (r, out)
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
            Some(v) => {
                v.extend_from_slice(buf);
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
