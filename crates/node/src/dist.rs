//! Process groups across N-API (data parallelism over c10d, cxformer_core::dist): create one per rank, run
//! collectives on Float32Arrays (metrics, tests), and hand it to `createTrainer` for DDP training. Every call
//! that talks to peers is a [`Job`]; failures reject with `[CXF_DIST] …`.
use crate::job::{Job, comm_job_with};
use crate::{invalid, js_error};
use cxformer_core::dist::{BackendChoice, PgOptions, ProcessGroup, ReduceOp};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tch::Tensor;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProcessGroupOptions {
    rank: i64,
    world_size: i64,
    /// Address of rank 0, which hosts the rendezvous store.
    master_addr: String,
    master_port: u32,
    /// Rendezvous and per-collective timeout.
    timeout_ms: u64,
    /// "gloo" | "nccl" | "auto". @default "auto"
    #[serde(default)]
    backend: Option<String>,
    /// The training device ("cpu", "cuda", "cuda:N"). @default "cpu"
    #[serde(default)]
    device: Option<String>,
}

/// The process group of `createProcessGroup`.
fn create(options: &str) -> napi::Result<ProcessGroup> {
    let o: ProcessGroupOptions = serde_json::from_str(options).map_err(|e| invalid(format!("createProcessGroup options: {e}")))?;
    if o.master_port == 0 || o.master_port > 65535 {
        return Err(invalid(format!("masterPort {} is not a TCP port (1-65535)", o.master_port)));
    }
    if o.timeout_ms == 0 {
        return Err(invalid("timeoutMs must be positive"));
    }
    let backend: BackendChoice = o.backend.as_deref().unwrap_or("auto").parse().map_err(js_error)?;
    let device = cxformer_core::runtime::parse_device(o.device.as_deref().unwrap_or("cpu")).map_err(js_error)?;
    ProcessGroup::new(&PgOptions {
        rank: o.rank,
        world: o.world_size,
        master_addr: o.master_addr,
        master_port: o.master_port as u16,
        timeout: Duration::from_millis(o.timeout_ms),
        backend,
        device,
    })
    .map_err(js_error)
}

/// Joins a process group off the JS thread: `options` is JSON `{rank, worldSize, masterAddr, masterPort,
/// timeoutMs, backend?: 'gloo'|'nccl'|'auto', device?}`. Rank 0 starts the rendezvous store on
/// masterAddr:masterPort; resolves once all ranks joined with the same worldSize (rejects with `[CXF_DIST]`
/// on a port in use, an unreachable master, a world-size mismatch, a duplicate rank or a rank that never joins).
#[napi(ts_return_type = "Promise<NativeProcessGroup>")]
pub fn create_process_group(options: String) -> AsyncTask<Job<ProcessGroup, NativeProcessGroup>> {
    comm_job_with("createProcessGroup", move || create(&options), |pg| Ok(NativeProcessGroup { pg: Arc::new(pg) }))
}

/// One rank's membership in a process group. Collectives must be called in the same order on every rank, and
/// not while a step of a trainer sharing this group is running.
#[napi]
pub struct NativeProcessGroup {
    pub(crate) pg: Arc<ProcessGroup>,
}

enum Op {
    AllReduce(ReduceOp),
    Broadcast(i64),
    AllGather,
    Barrier,
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::AllReduce(_) => "allReduce",
            Op::Broadcast(_) => "broadcast",
            Op::AllGather => "allGather",
            Op::Barrier => "barrier",
        }
    }
}

/// Runs one collective on `data` (a copy of the caller's array): the result arrays (one, or W for allGather).
fn collective(pg: &ProcessGroup, data: &[f32], op: &Op) -> napi::Result<Vec<Vec<f32>>> {
    let what = op.name();
    if !matches!(op, Op::Barrier) {
        // c10d does not check that the ranks passed equal lengths (a mismatch can silently give one rank a wrong
        // result): agree on them first, one small all-gather.
        let lens = pg
            .all_gather(&Tensor::from_slice(&[data.len() as i64]))
            .map_err(|e| js_error(cxformer_core::Error::Dist(format!("{what} (agreeing on lengths): {e}"))))?;
        let lens: Vec<i64> = lens.iter().map(|t| t.int64_value(&[0])).collect();
        if lens.iter().any(|&l| l != lens[0]) {
            let each: Vec<String> = lens.iter().enumerate().map(|(r, l)| format!("rank {r}: {l}")).collect();
            return Err(js_error(cxformer_core::Error::Dist(format!(
                "{what}: the ranks passed arrays of different lengths ({})",
                each.join(", ")
            ))));
        }
    }
    let t = crate::compute::run(|| Tensor::from_slice(data));
    let out = match op {
        Op::AllReduce(op) => pg.all_reduce(&t, *op).map(|_| vec![t]),
        Op::Broadcast(root) => pg.broadcast(&t, *root).map(|_| vec![t]),
        Op::AllGather => pg.all_gather(&t),
        Op::Barrier => pg.barrier().map(|_| vec![]),
    }
    .map_err(|e| match e {
        cxformer_core::Error::Dist(m) => js_error(cxformer_core::Error::Dist(format!("{what}: {m}"))),
        e => js_error(e),
    })?;
    out.iter().map(|t| Vec::<f32>::try_from(t).map_err(|e| js_error(e.into()))).collect()
}

#[napi]
impl NativeProcessGroup {
    /// This process's rank.
    #[napi(getter)]
    pub fn rank(&self) -> i64 {
        self.pg.rank()
    }

    /// Number of processes.
    #[napi(getter)]
    pub fn world_size(&self) -> i64 {
        self.pg.world()
    }

    /// "gloo" or "nccl".
    #[napi]
    pub fn backend(&self) -> String {
        self.pg.backend().to_string()
    }

    /// Element-wise sum or average over all ranks (the array is copied; resolves to the result).
    #[napi(ts_args_type = "data: Float32Array, op: 'sum' | 'avg'", ts_return_type = "Promise<Float32Array>")]
    pub fn all_reduce(&self, data: Float32Array, op: String) -> napi::Result<AsyncTask<Job<Vec<f32>, Float32Array>>> {
        let op = match op.as_str() {
            "sum" => ReduceOp::Sum,
            "avg" => ReduceOp::Avg,
            o => return Err(invalid(format!("allReduce op '{o}': expected 'sum' or 'avg'"))),
        };
        Ok(self.array(data.to_vec(), Op::AllReduce(op)))
    }

    /// Rank `root`'s array on every rank (same length everywhere).
    #[napi(ts_return_type = "Promise<Float32Array>")]
    pub fn broadcast(&self, data: Float32Array, root: u32) -> napi::Result<AsyncTask<Job<Vec<f32>, Float32Array>>> {
        if root as i64 >= self.pg.world() {
            return Err(invalid(format!("broadcast root {root} is outside [0, worldSize {})", self.pg.world())));
        }
        Ok(self.array(data.to_vec(), Op::Broadcast(root as i64)))
    }

    /// Every rank's array (same length everywhere), in rank order.
    #[napi(ts_return_type = "Promise<Float32Array[]>")]
    pub fn all_gather(&self, data: Float32Array) -> AsyncTask<Job<Vec<Vec<f32>>, Vec<Float32Array>>> {
        let (pg, data) = (self.pg.clone(), data.to_vec());
        comm_job_with("allGather", move || collective(&pg, &data, &Op::AllGather), |v| Ok(v.into_iter().map(Float32Array::new).collect()))
    }

    /// Resolves once every rank has called it.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn barrier(&self) -> AsyncTask<Job<(), ()>> {
        let pg = self.pg.clone();
        comm_job_with("barrier", move || collective(&pg, &[], &Op::Barrier).map(|_| ()), Ok)
    }

    /// Leaves the group now (frees the backend; on rank 0 also the store, so call it last there). Later calls,
    /// including steps of a trainer sharing the group, reject with `[CXF_DIST] … destroyed`. Idempotent.
    #[napi]
    pub fn destroy(&self) {
        self.pg.destroy();
    }

}

impl NativeProcessGroup {
    /// A collective whose result is one array (allReduce, broadcast).
    fn array(&self, data: Vec<f32>, op: Op) -> AsyncTask<Job<Vec<f32>, Float32Array>> {
        let pg = self.pg.clone();
        let what = op.name();
        comm_job_with(what, move || Ok(collective(&pg, &data, &op)?.pop().unwrap_or_default()), |v| Ok(Float32Array::new(v)))
    }
}
