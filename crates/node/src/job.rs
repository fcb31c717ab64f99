//! One generic job for every asynchronous N-API call: a closure started on libuv's pool and run on the compute
//! thread (under [`guarded`]: a panic becomes a JS error; see crate::compute), its output converted to the JS value
//! on the JS thread. Process-group calls ([`comm_job_with`]) stay on their libuv thread: two ranks may live in one
//! process (tests), and one rank's collective waits for the other's. The native state behind a JS
//! handle sits in a [`Shared`] (calls on one instance are serialised); [`report`] records a collective call's
//! failure in the process group so that the peer ranks name it.
use crate::{guarded, guarded_here, invalid, js_error};
use cxformer_core::dist::ProcessGroup;
use napi::bindgen_prelude::*;
use std::sync::{Arc, Mutex, MutexGuard};

type Work<T> = Box<dyn FnOnce() -> napi::Result<T> + Send>;

/// One asynchronous call: `work` runs off the JS thread, `to_js` turns its output into the JS value.
pub struct Job<T, J> {
    what: &'static str,
    work: Option<Work<T>>,
    to_js: fn(T) -> napi::Result<J>,
    /// Run on the compute thread (every job but the process-group calls).
    on_compute: bool,
}

impl<T, J> Job<T, J> {
    /// A job named `what` in errors (a panic, a second run).
    pub fn new(what: &'static str, work: impl FnOnce() -> napi::Result<T> + Send + 'static, to_js: fn(T) -> napi::Result<J>) -> Self {
        Job { what, work: Some(Box::new(work)), to_js, on_compute: true }
    }
}

impl<T: Send + 'static, J: ToNapiValue + TypeName> Task for Job<T, J> {
    type Output = T;
    type JsValue = J;
    fn compute(&mut self) -> napi::Result<T> {
        let work = self.work.take().ok_or_else(|| invalid(format!("{} ran twice", self.what)))?;
        if self.on_compute { guarded(self.what, work) } else { guarded_here(self.what, work) }
    }
    fn resolve(&mut self, _env: Env, out: T) -> napi::Result<J> {
        (self.to_js)(out)
    }
}

/// A job whose output is its JS value (a string, a metadata map, nothing).
pub fn job<T: Send + ToNapiValue + TypeName + 'static>(
    what: &'static str,
    work: impl FnOnce() -> napi::Result<T> + Send + 'static,
) -> AsyncTask<Job<T, T>> {
    AsyncTask::new(Job::new(what, work, Ok))
}

/// A job whose output `to_js` converts on the JS thread (typed arrays, a new handle).
pub fn job_with<T: Send + 'static, J: ToNapiValue + TypeName>(
    what: &'static str,
    work: impl FnOnce() -> napi::Result<T> + Send + 'static,
    to_js: fn(T) -> napi::Result<J>,
) -> AsyncTask<Job<T, J>> {
    AsyncTask::new(Job::new(what, work, to_js))
}

/// A process-group call: like [`job_with`], but run on its libuv thread, not the compute thread (it may wait for a
/// peer rank of the same process). Its large tensors are still made on the compute thread.
pub fn comm_job_with<T: Send + 'static, J: ToNapiValue + TypeName>(
    what: &'static str,
    work: impl FnOnce() -> napi::Result<T> + Send + 'static,
    to_js: fn(T) -> napi::Result<J>,
) -> AsyncTask<Job<T, J>> {
    AsyncTask::new(Job { on_compute: false, ..Job::new(what, work, to_js) })
}

/// The native state behind a JS handle, shared with the jobs that run on it: calls on one instance are serialised.
pub struct Shared<T> {
    inner: Arc<Mutex<T>>,
    /// The handle in words ("trainer"), for the poisoned-lock error.
    name: &'static str,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared { inner: self.inner.clone(), name: self.name }
    }
}

impl<T> Shared<T> {
    pub fn new(name: &'static str, value: T) -> Self {
        Shared { inner: Arc::new(Mutex::new(value)), name }
    }

    /// The state, once the calls before this one are done.
    pub fn lock(&self) -> napi::Result<MutexGuard<'_, T>> {
        self.inner.lock().map_err(|_| invalid(format!("{} is poisoned by an earlier panic", self.name)))
    }
}

/// The outcome of a collective call as a JS result; a failure is first recorded in the process group's store
/// (`context` names the call, e.g. "iteration 12"), so that the peers' failing collectives name this rank and its
/// error.
pub fn report<T>(pg: Option<&ProcessGroup>, context: impl FnOnce() -> String, r: cxformer_core::Result<T>) -> napi::Result<T> {
    if let (Err(e), Some(pg)) = (&r, pg) {
        pg.report_error(&format!("{}: [{}] {e}", context(), e.code()));
    }
    r.map_err(js_error)
}
