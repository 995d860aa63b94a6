//! Running each window's parsers under a deadline.
//!
//! A Rust function that loops cannot be interrupted from outside: there is no safe way to stop
//! a thread. So the parsers do not run on the analysis thread. One scan worker per analysis
//! takes a window at a time (shared, not copied: one hand-off per 64 MiB window, nothing per
//! parser call but a timestamp) and streams back what the parsers accept. The analysis thread
//! waits with a deadline: when one parser call runs past [`Budget::per_call`], the window's
//! calls past [`Budget::per_window`], or the image's past [`Budget::per_image`], it abandons
//! the worker, keeps what was found so far,
//! records an [`INCOMPLETE`] warning naming the parser and offset, and hashes the rest of the
//! image with no more parsing. The analysis always finishes.
//!
//! The limit, honestly: the abandoned worker keeps running (for a loop, spinning one core) and
//! keeps its window buffer until it returns or the process exits. `cairn firmware add` exits
//! right after recording, so the cost ends with the command; a long-running process that adds
//! images would keep one such thread per hostile image. At most one worker per analysis can be
//! abandoned, since parsing stops with it. Known loops are stopped before they start, and
//! deterministically, by [`crate::guard`]; the deadline is the net under the ones not yet known.
//!
//! [`Budget::per_call`]: crate::scan::Budget::per_call
//! [`Budget::per_window`]: crate::scan::Budget::per_window
//! [`Budget::per_image`]: crate::scan::Budget::per_image

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use binwalk::signatures::common::SignatureResult;

use crate::scan::{Found, INCOMPLETE, Scanner, SigRef, Sink, Stopped, resolve};

/// How often, at most, the analysis thread looks at a busy worker (more often when the
/// per-call budget is shorter).
const TICK: Duration = Duration::from_millis(50);

/// The parser call in progress: when it started, which parser, at which image offset.
type Current = Arc<Mutex<Option<(Instant, SigRef, u64)>>>;

struct Job {
    buf: Arc<Vec<u8>>,
    base: u64,
    search_end: usize,
    image_len: u64,
    skip_until: u64,
}

enum Msg {
    Found(SignatureResult),
    Warn(String),
    Done(Option<String>),
}

struct Worker {
    jobs: Sender<Job>,
    msgs: Receiver<Msg>,
    current: Current,
    thread: std::thread::JoinHandle<()>,
}

struct ToAnalysis {
    msgs: Sender<Msg>,
    current: Current,
}

impl Sink for ToAnalysis {
    fn found(&mut self, r: SignatureResult) {
        let _ = self.msgs.send(Msg::Found(r));
    }
    fn warn(&mut self, w: String) {
        let _ = self.msgs.send(Msg::Warn(w));
    }
    fn calling(&mut self, call: Option<(SigRef, u64)>) {
        let now = call.map(|(s, at)| (Instant::now(), s, at));
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }
}

/// Scans the windows of one image, in order, under the scanner's budget.
pub(crate) struct Driver {
    scanner: Scanner,
    worker: Option<Worker>,
    /// Parsing was abandoned; later windows are only hashed.
    stopped: bool,
    /// When the first window was handed to the worker ([`Budget::per_image`] counts from it).
    ///
    /// [`Budget::per_image`]: crate::scan::Budget::per_image
    image_started: Option<Instant>,
}

impl Driver {
    pub(crate) fn new(scanner: &Scanner) -> Driver {
        Driver {
            scanner: scanner.clone(),
            worker: None,
            stopped: false,
            image_started: None,
        }
    }

    fn spawn(&self) -> Option<Worker> {
        let (jobs, job_rx) = channel::<Job>();
        let (msg_tx, msgs) = channel::<Msg>();
        let current: Current = Arc::default();
        let scanner = self.scanner.clone();
        let mut sink = ToAnalysis {
            msgs: msg_tx,
            current: current.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("cairn-scan".into())
            .spawn(move || {
                for job in job_rx {
                    let stop = {
                        let Job {
                            buf,
                            base,
                            search_end,
                            image_len,
                            skip_until,
                        } = job;
                        scanner
                            .collect(&buf, base, search_end, image_len, skip_until, &mut sink)
                            .err()
                        // `buf` is dropped here, before Done, so the analysis gets it back.
                    };
                    if sink.msgs.send(Msg::Done(stop.map(|Stopped(w)| w))).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| tracing::warn!("no scan worker ({e}); scanning without a deadline"))
            .ok()?;
        Some(Worker {
            jobs,
            msgs,
            current,
            thread,
        })
    }

    /// The parts of one window (see [`Scanner::scan_window`] for the arguments); `buf` is
    /// shared with the worker while it scans. `meanwhile` runs once on this thread while the
    /// worker parses (work on the window that needs no parts, such as its entropy).
    #[allow(clippy::too_many_arguments)] // the window's coordinates, as `scan_window` takes them
    pub(crate) fn window(
        &mut self,
        buf: &Arc<Vec<u8>>,
        base: u64,
        search_end: usize,
        image_len: u64,
        skip_until: &mut u64,
        warnings: &mut Vec<String>,
        meanwhile: impl FnOnce(),
    ) -> Vec<Found> {
        if self.stopped {
            meanwhile();
            return Vec::new();
        }
        if self.worker.is_none() {
            self.worker = self.spawn();
        }
        let Some(w) = self.worker.take() else {
            meanwhile();
            return self
                .scanner
                .scan_window(buf, base, search_end, image_len, skip_until, warnings);
        };
        let job = Job {
            buf: buf.clone(),
            base,
            search_end,
            image_len,
            skip_until: *skip_until,
        };
        let mut found = Vec::new();
        // The budgets count from the hand-off: parsing that overlaps `meanwhile` counts too.
        let budget = self.scanner.budget();
        let started = Instant::now();
        let image_started = *self.image_started.get_or_insert(started);
        let sent = w.jobs.send(job).is_ok();
        meanwhile();
        if !sent {
            self.give_up(
                format!("{INCOMPLETE}the scan worker stopped before the window at {base:#x}"),
                warnings,
            );
            return Vec::new();
        }
        let tick = budget.per_call.clamp(Duration::from_millis(1), TICK);
        loop {
            match w.msgs.recv_timeout(tick) {
                Ok(Msg::Found(r)) => found.push(r),
                Ok(Msg::Warn(x)) => warnings.push(x),
                Ok(Msg::Done(stop)) => {
                    warnings.extend(stop);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let why = format!(
                        "{INCOMPLETE}the scan worker stopped in the window at {base:#x}; \
                         no parts were looked for from there on"
                    );
                    self.give_up(why, warnings);
                    break;
                }
            }
            let current = *w.current.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let over = match current {
                Some((t, sig, at)) if now.duration_since(t) > budget.per_call => Some(format!(
                    "{INCOMPLETE}the {} parser exceeded its {:?} budget at offset {at:#x}; \
                     no parts were looked for from there on (the rest of the image is hashed \
                     as unidentified data)",
                    self.scanner.name_of(sig),
                    budget.per_call,
                )),
                _ if now.duration_since(image_started) > budget.per_image => Some(format!(
                    "{INCOMPLETE}the image exceeded its {:?} parsing budget in the window at \
                     {base:#x}{}; no parts were looked for from there on (the rest of the image \
                     is hashed as unidentified data)",
                    budget.per_image,
                    current.map_or(String::new(), |(_, sig, at)| format!(
                        " (in the {} parser at offset {at:#x})",
                        self.scanner.name_of(sig)
                    )),
                )),
                _ if now.duration_since(started) > budget.per_window => Some(format!(
                    "{INCOMPLETE}the window at {base:#x} exceeded its {:?} parsing budget{}; \
                     no parts were looked for from there on (the rest of the image is hashed \
                     as unidentified data)",
                    budget.per_window,
                    current.map_or(String::new(), |(_, sig, at)| format!(
                        " (in the {} parser at offset {at:#x})",
                        self.scanner.name_of(sig)
                    )),
                )),
                _ => None,
            };
            if let Some(why) = over {
                self.give_up(why, warnings);
                break;
            }
        }
        if !self.stopped {
            self.worker = Some(w);
        }
        resolve(found, base, skip_until)
    }

    /// Abandons the worker: no more parsing for this image. Its handle is dropped, not joined:
    /// it may never return.
    fn give_up(&mut self, why: String, warnings: &mut Vec<String>) {
        tracing::warn!("{why}");
        warnings.push(why);
        self.stopped = true;
    }
}

impl Drop for Driver {
    /// A worker that was not abandoned is idle, waiting for its next window: closing its job
    /// channel ends it, and joining means no scan thread outlives the analysis that started it
    /// (one that was still tearing down after `analyse` returned showed up as a leak).
    fn drop(&mut self) {
        if let Some(Worker { jobs, thread, .. }) = self.worker.take() {
            drop(jobs);
            if thread.join().is_err() {
                tracing::warn!("the scan worker panicked while stopping");
            }
        }
    }
}
