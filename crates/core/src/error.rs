//! One error type for the core crate. Every variant's message names what was being read or computed,
//! what was expected and what was found; crates/node maps each variant to a stable JS error code.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A LibTorch (C++) error, e.g. a shape mismatch inside an op.
    #[error("LibTorch error: {}", torch_message(.0))]
    Torch(#[from] tch::TchError),
    /// A tensor had the wrong rank, size or dtype for the operation.
    #[error("{0}")]
    Shape(String),
    /// A model or run configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A weight file is unreadable, malformed or does not match the model.
    #[error("{path}: {msg}")]
    Weights { path: PathBuf, msg: String },
    /// File-system error with the path involved.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Error reported by the project's C++ shim (csrc/shim.cc).
    #[error("LibTorch shim error: {0}")]
    Shim(String),
    /// A loss became NaN or infinite: training stops before the step modifies anything.
    #[error("iteration {iteration}: {term} is {value} (not finite); the step was not applied and the last checkpoint is intact")]
    NonFinite { iteration: i64, term: String, value: f64 },
    /// The caller asked the work to stop.
    #[error("cancelled")]
    Cancelled,
    /// A distributed (c10d) failure: rendezvous, a collective that failed or timed out, a destroyed group.
    /// The message names the operation, the timeout and, where known, the peer.
    #[error("{0}")]
    Dist(String),
}

impl Error {
    pub fn weights(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Weights { path: path.into(), msg: msg.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    /// Stable code used by the Node binding (`err.code` in JS).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Torch(_) => "CXF_TORCH",
            Error::Shape(_) => "CXF_SHAPE",
            Error::Config(_) => "CXF_CONFIG",
            Error::Weights { .. } => "CXF_WEIGHTS",
            Error::Io { .. } => "CXF_IO",
            Error::Shim(_) => "CXF_TORCH",
            Error::Cancelled => "CXF_CANCELLED",
            Error::NonFinite { .. } => "CXF_NONFINITE",
            Error::Dist(_) => "CXF_DIST",
        }
    }
}

/// LibTorch's message without the C++ backtrace that follows "Exception raised from".
fn torch_message(e: &tch::TchError) -> String {
    let s = e.to_string();
    let s = s.strip_prefix("Internal torch error: ").unwrap_or(&s);
    match s.find("\nException raised from") {
        Some(i) => s[..i].trim_end().to_string(),
        None => s.trim_end().to_string(),
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `bail_shape!("...")` returns an `Error::Shape` with a formatted message.
#[macro_export]
macro_rules! bail_shape {
    ($($arg:tt)*) => { return Err($crate::error::Error::Shape(format!($($arg)*))) };
}
