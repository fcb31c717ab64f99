//! One thread for all of the addon's LibTorch work. libgomp gives every thread that opens a parallel region its own
//! team; with work spread over libuv's pool (4 threads) and the JS thread, the process held more OpenMP threads than
//! cores, and libgomp then throttles its spin-waiting (100 spins instead of 300,000 before sleeping), so every
//! parallel region of a training step paid futex sleeps and wake-ups (~55k context switches per 12 steps on 2
//! cores, 1.6 of 2 CPUs busy). Running every job here keeps one team: the caller (a libuv thread for async jobs,
//! the JS thread for the few synchronous calls) blocks until its call is done, so calls also stay in order. The JS
//! thread should not wait behind a long job: jobs hand back contiguous float32 CPU tensors, which it copies out
//! itself (lib.rs `named`). Process-group calls stay on their libuv thread (job.rs `comm_job_with`). One process is
//! one rank: two trainers with a process group in one process would wait for each other here.
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};

type Call = Box<dyn FnOnce() + Send + 'static>;

const NAME: &str = "cxformer-compute";

fn queue() -> &'static Mutex<Sender<Call>> {
    static QUEUE: OnceLock<Mutex<Sender<Call>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name(NAME.into())
            // LibTorch's autograd and the c10d collectives recurse deeper than Rust's 2 MiB default; libuv's pool
            // threads, which ran this work before, have 8 MiB.
            .stack_size(16 << 20)
            .spawn(move || {
                for call in rx {
                    call();
                }
            })
            .expect("cannot start the cxformer compute thread");
        Mutex::new(tx)
    })
}

/// Runs `f` on the compute thread and returns its result (a panic is re-raised here). `f` may borrow from the
/// caller: the caller waits until `f` has finished. Called on the compute thread itself, runs `f` directly.
pub(crate) fn run<'a, T: Send + 'a>(f: impl FnOnce() -> T + Send + 'a) -> T {
    if std::thread::current().name() == Some(NAME) {
        return f();
    }
    let (tx, rx) = mpsc::sync_channel::<std::thread::Result<T>>(1);
    let call: Box<dyn FnOnce() + Send + 'a> = Box::new(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    // SAFETY: the call always runs to completion and sends its result (panics are caught above), and this frame
    // waits for that result before returning, so nothing the call borrows is dropped while it runs (the scoped-
    // thread argument). If the compute thread were gone, `send` fails and returns the call, dropped here unrun.
    let call: Call = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + 'a>, Call>(call) };
    let sent = queue().lock().unwrap_or_else(|p| p.into_inner()).send(call);
    if sent.is_err() {
        panic!("the cxformer compute thread is gone");
    }
    match rx.recv() {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => resume_unwind(p),
        Err(_) => panic!("the cxformer compute thread is gone"),
    }
}
