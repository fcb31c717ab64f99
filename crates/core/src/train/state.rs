//! One training-state format for every trainer: a safetensors file (written atomically) of named tensors (the
//! parameters under their checkpoint names, the AdamW moments `optim.exp_avg.<param>` / `optim.exp_avg_sq.<param>`,
//! and whatever else the trainer needs, e.g. the SSL centres) with one metadata convention:
//!
//! | key | value |
//! |---|---|
//! | `cxformer_state` | the trainer: `ssl`, `finetune`, `seg`, `rrg` or `llava` |
//! | `cxformer_state_version` | `2` |
//! | `cxformer_train_config` | the trainer's native config JSON, compared on load |
//! | `cxformer_step` | optimizer steps taken |
//! | `cxformer_counters` | the trainer's other counters as a JSON object (fine-tuning: `scheduled_steps`); absent when none |
//!
//! Every other metadata entry is the caller's (the TypeScript side stores `cxformer_iteration`, `cxformer_progress`,
//! `seg_state`, `run`…) and passes through untouched.
//!
//! Loading is strict (the kind must match, every expected tensor must be present with its shape and nothing else,
//! else nothing is loaded) and, under a process group, collective: every rank reads and checks its file, the ranks
//! agree that every one of them succeeded ([`agree`]), then the trainer broadcasts rank 0's state
//! ([`sync_from_rank0`]), so that the ranks hold the same state whatever file each one read (docs/recipe.md §3.10).
//!
//! The trainers other than SSL pretraining share the plumbing around the format, [`TrainerState`]: each one says
//! where its state lives (config JSON, live tensors, optimizer step and counters, process group, own checks and
//! metadata) and gets `state`, `train_state`, `save_state`, `load_state`, `restore` and the one strict, collective
//! `restore_checked` (each trainer's public methods of those names call them, so that callers need not import the
//! trait).
//!
//! Version 1, the three conventions before this one, is read by [`TrainState::read`] and converted on the fly, so
//! that a run folder written before it resumes: SSL `ckpt-N.safetensors` (`cxformer_checkpoint: "1"`, the optimizer
//! step as the tensor `optim.step`), fine-tuning `state.safetensors` (`format: cxformer-finetune-state`, the step
//! counters as the tensors `optim.step` and `finetune.step`), segmentation `last.safetensors` (`format: cxformer-seg`
//! with optimizer moments, the step as the metadata `optim_step`).
use crate::error::{Error, Result};
use crate::train::collective::{Collective, broadcast_tensors};
use crate::weights::{WeightFile, state_mismatch, write_safetensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::Tensor;

/// Metadata key of the trainer that wrote a state.
pub const KIND_KEY: &str = "cxformer_state";
/// Metadata key of the state-format version.
pub const VERSION_KEY: &str = "cxformer_state_version";
/// The version this code writes.
pub const VERSION: &str = "2";
/// Metadata key of the trainer's native config JSON.
pub const CONFIG_KEY: &str = "cxformer_train_config";
/// Metadata key of the optimizer steps taken.
pub const STEP_KEY: &str = "cxformer_step";
/// Metadata key of the trainer's other counters (a JSON object of integers).
pub const COUNTERS_KEY: &str = "cxformer_counters";
/// The counter of scheduled steps of a fine-tuning state (train-step calls, skipped batches included).
pub const SCHEDULED_STEPS: &str = "scheduled_steps";

/// Which trainer a state belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateKind {
    Ssl,
    Finetune,
    Seg,
    /// The report captioner ([`crate::rrg::train::ReportTrainer`]); no version-1 files exist.
    Rrg,
    /// The LLaVA trainer ([`crate::llava::train::LlavaTrainer`]); no version-1 files exist.
    Llava,
}

impl StateKind {
    /// The value of `cxformer_state`.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Ssl => "ssl",
            StateKind::Finetune => "finetune",
            StateKind::Seg => "seg",
            StateKind::Rrg => "rrg",
            StateKind::Llava => "llava",
        }
    }

    /// The trainer in words, for messages.
    pub fn label(self) -> &'static str {
        match self {
            StateKind::Ssl => "SSL pretraining",
            StateKind::Finetune => "fine-tuning",
            StateKind::Seg => "segmentation",
            StateKind::Rrg => "report captioner",
            StateKind::Llava => "LLaVA",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [StateKind::Ssl, StateKind::Finetune, StateKind::Seg, StateKind::Rrg, StateKind::Llava].into_iter().find(|k| k.as_str() == s)
    }
}

/// The whole training state of a trainer, in memory.
#[derive(Debug)]
pub struct TrainState {
    pub kind: StateKind,
    /// The trainer's native config JSON.
    pub config: String,
    /// Optimizer steps taken.
    pub step: i64,
    /// The trainer's other counters, by name.
    pub counters: BTreeMap<String, i64>,
    /// Every tensor under its checkpoint name, on the CPU. A state taken from a CPU model shares storage with it
    /// (no copy of a large model for each checkpoint): copy the tensors to keep a snapshot while training goes on.
    pub tensors: BTreeMap<String, Tensor>,
    /// The caller's metadata (no `cxformer_state*` convention keys), passed through untouched.
    pub metadata: HashMap<String, String>,
    /// Where the state came from (its file, or "memory"), named in errors.
    pub source: String,
}

impl TrainState {
    /// A state built in memory from a trainer's tensors.
    pub fn new(kind: StateKind, config: String, step: i64, tensors: BTreeMap<String, Tensor>) -> Self {
        TrainState { kind, config, step, counters: BTreeMap::new(), tensors, metadata: HashMap::new(), source: "memory".into() }
    }

    /// Writes the state atomically (temp file + rename): the tensors, the caller's metadata and the convention
    /// keys (which win over a caller entry of the same name).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut md = self.metadata.clone();
        md.insert(KIND_KEY.into(), self.kind.as_str().into());
        md.insert(VERSION_KEY.into(), VERSION.into());
        md.insert(CONFIG_KEY.into(), self.config.clone());
        md.insert(STEP_KEY.into(), self.step.to_string());
        if self.counters.is_empty() {
            md.remove(COUNTERS_KEY);
        } else {
            md.insert(COUNTERS_KEY.into(), serde_json::to_string(&self.counters).expect("serializable"));
        }
        write_safetensors(path, &self.tensors, md)
    }

    /// Reads a state file of trainer `kind`: version 2, or a version-1 file converted (see the module docs).
    /// Local; [`TrainState::check`] then compares it with what the trainer expects.
    pub fn read(path: &Path, kind: StateKind) -> Result<TrainState> {
        let file = WeightFile::open(path)?;
        let md = file.metadata();
        let tensors = file.tensors()?;
        let source = path.display().to_string();
        if md.contains_key(VERSION_KEY) || md.contains_key(KIND_KEY) {
            from_v2(kind, md, tensors, source)
        } else {
            from_v1(kind, md, tensors, source)
        }
    }

    /// Whether a file's metadata and tensor names are those of a training state (of any version) rather than
    /// of a model saved without its optimizer.
    pub fn is_state(md: &HashMap<String, String>, names: &[String]) -> bool {
        md.contains_key(KIND_KEY) || md.contains_key("cxformer_checkpoint") || names.iter().any(|n| n.starts_with("optim."))
    }

    /// The strict check against the trainer: the kind; the config (`config`, the trainer's JSON now), unless
    /// `force`; the tensors: every one of `expect` present with its shape and nothing else, except the names
    /// `optional` accepts (present or not). Nothing is modified; an error says that nothing was loaded.
    pub fn check(
        &self,
        kind: StateKind,
        config: &str,
        force: bool,
        expect: &BTreeMap<String, Tensor>,
        optional: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let err = |msg: String| Err(Error::weights(&self.source, msg));
        if self.kind != kind {
            return err(format!("a {} training state, not a {} one; nothing was loaded", self.kind.label(), kind.label()));
        }
        let differ = config_diff(&self.config, config);
        if !differ.is_empty() && !force {
            return err(format!(
                "the state was written with another {} configuration (differing: {}); nothing was loaded. \
                 Resume with force to accept the change.\n  file: {}\n  now:  {config}",
                kind.label(),
                differ.join(", "),
                self.config
            ));
        }
        if let Err(listing) = state_mismatch(expect, &self.tensors, optional) {
            return err(format!("the state does not match the model; nothing was loaded.\n  {listing}"));
        }
        Ok(())
    }
}

/// The top-level keys whose values differ between two config JSON objects (a key missing on one side differs);
/// `["(the whole config)"]` when either is not a JSON object.
pub fn config_diff(saved: &str, now: &str) -> Vec<String> {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    match (parse(saved), parse(now)) {
        (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
        }
        _ if saved == now => Vec::new(),
        _ => vec!["(the whole config)".into()],
    }
}

/// Removes a metadata entry that must be there.
fn take(md: &mut HashMap<String, String>, key: &str, source: &str) -> Result<String> {
    md.remove(key).ok_or_else(|| Error::weights(source, format!("the metadata entry '{key}' is missing")))
}

fn parse_step(s: &str, key: &str, source: &str) -> Result<i64> {
    s.parse::<i64>().map_err(|_| Error::weights(source, format!("metadata {key} = {s:?} is not an integer")))
}

fn from_v2(kind: StateKind, mut md: HashMap<String, String>, tensors: BTreeMap<String, Tensor>, source: String) -> Result<TrainState> {
    let version = md.remove(VERSION_KEY).unwrap_or_default();
    if version != VERSION {
        return Err(Error::weights(&source, format!("training-state version {version:?}; this cxformer reads versions 1 and {VERSION}")));
    }
    let tag = take(&mut md, KIND_KEY, &source)?;
    let found = StateKind::parse(&tag).ok_or_else(|| Error::weights(&source, format!("unknown training-state kind {tag:?}")))?;
    if found != kind {
        return Err(Error::weights(&source, format!("a {} training state, not a {} one; nothing was loaded", found.label(), kind.label())));
    }
    let config = take(&mut md, CONFIG_KEY, &source)?;
    let step = parse_step(&take(&mut md, STEP_KEY, &source)?, STEP_KEY, &source)?;
    let counters = match md.remove(COUNTERS_KEY) {
        Some(c) => serde_json::from_str(&c).map_err(|e| Error::weights(&source, format!("metadata {COUNTERS_KEY}: {e}")))?,
        None => BTreeMap::new(),
    };
    Ok(TrainState { kind, config, step, counters, tensors, metadata: md, source })
}

/// Converts a version-1 file (see the module docs). The metadata left is the caller's, and the SSL writer's own
/// `format`, `cxformer_iteration` and `cxformer_config`, which version 2 keeps writing.
fn from_v1(kind: StateKind, mut md: HashMap<String, String>, mut tensors: BTreeMap<String, Tensor>, source: String) -> Result<TrainState> {
    let not = |what: &str, found: Option<&String>| {
        Error::weights(&source, format!("not a cxformer {what} (metadata {KIND_KEY} is missing and format is {found:?})"))
    };
    let mut tensor_step = |name: &str| -> Result<i64> {
        let t = tensors.remove(name).ok_or_else(|| Error::weights(&source, format!("version-1 state without its '{name}' tensor")))?;
        Ok(t.f_int64_value(&[])?)
    };
    let mut counters = BTreeMap::new();
    let (config, step) = match kind {
        StateKind::Ssl => {
            if md.get("cxformer_checkpoint").map(String::as_str) != Some("1") {
                return Err(Error::weights(
                    &source,
                    "not a cxformer training checkpoint (neither cxformer_state nor cxformer_checkpoint is in the metadata)",
                ));
            }
            md.remove("cxformer_checkpoint");
            let step = tensor_step("optim.step")?;
            (take(&mut md, "cxformer_ssl_config", &source)?, step)
        }
        StateKind::Finetune => {
            if md.get("format").map(String::as_str) != Some("cxformer-finetune-state") {
                return Err(not("fine-tuning state", md.get("format")));
            }
            md.remove("format");
            let step = tensor_step("optim.step")?;
            counters.insert(SCHEDULED_STEPS.to_string(), tensor_step("finetune.step")?);
            (take(&mut md, "cxformer_finetune_config", &source)?, step)
        }
        StateKind::Seg => {
            if md.get("format").map(String::as_str) != Some("cxformer-seg") {
                return Err(not("segmentation state", md.get("format")));
            }
            if !tensors.keys().any(|k| k.starts_with("optim.")) {
                return Err(Error::weights(&source, "a segmentation model saved without its optimizer (e.g. best.safetensors), not a training state"));
            }
            md.remove("format");
            md.remove("backbone_config");
            let step = parse_step(&take(&mut md, "optim_step", &source)?, "optim_step", &source)?;
            (take(&mut md, "config", &source)?, step)
        }
        StateKind::Rrg => {
            return Err(Error::weights(&source, format!("not a report-captioner training state (metadata {KIND_KEY} is missing)")));
        }
        StateKind::Llava => {
            return Err(Error::weights(&source, format!("not a LLaVA training state (metadata {KIND_KEY} is missing)")));
        }
    };
    Ok(TrainState { kind, config, step, counters, tensors, metadata: md, source })
}

/// Collective: every rank's outcome of a local phase (reading and checking a state) becomes everyone's. A rank
/// that failed returns its own error; the others an error naming the ranks that failed, so that no rank goes on
/// alone (nor waits in a broadcast that a failed rank never joins). One process: `local` as it is.
pub fn agree<T>(dist: &dyn Collective, local: Result<T>, what: &str) -> Result<T> {
    if dist.world() <= 1 {
        return local;
    }
    let flags = dist.all_gather(&Tensor::from_slice(&[local.is_err() as i64]))?;
    let failed: Vec<String> = flags
        .iter()
        .enumerate()
        .filter(|(_, f)| f.int64_value(&[0]) != 0)
        .map(|(r, _)| r.to_string())
        .collect();
    match local {
        Err(e) => Err(e),
        Ok(_) if !failed.is_empty() => Err(Error::Dist(format!(
            "{what} failed on rank {} (see that rank's error); nothing was loaded on rank {} either",
            failed.join(", "),
            dist.rank()
        ))),
        ok => ok,
    }
}

/// Copies the state's tensors into the trainer's live tensors of the same names (converted to each one's kind and
/// device), without recording gradients. Call it after [`TrainState::check`].
pub fn copy_into(live: &BTreeMap<String, Tensor>, state: &TrainState) -> Result<()> {
    tch::no_grad(|| -> Result<()> {
        for (name, dst) in live {
            let src = state.tensors.get(name).ok_or_else(|| Error::weights(&state.source, format!("no tensor named '{name}'")))?;
            let mut dst = dst.shallow_clone();
            dst.f_copy_(&src.f_to_kind(dst.kind())?.f_to_device(dst.device())?)?;
        }
        Ok(())
    })
}

/// Broadcasts rank 0's `counters` to every rank. Collective; no-op on one process.
pub fn broadcast_counters(dist: &dyn Collective, counters: &mut [i64]) -> Result<()> {
    if dist.world() <= 1 || counters.is_empty() {
        return Ok(());
    }
    let mut t = Tensor::f_from_slice(counters)?;
    dist.broadcast(&mut t, 0)?;
    counters.copy_from_slice(&Vec::<i64>::try_from(&t)?);
    Ok(())
}

/// Every rank's `counters` and `tensors` (parameters, buffers, optimizer moments…, in the same order on every
/// rank) become rank 0's. Collective; no-op on one process.
pub fn sync_from_rank0(dist: &dyn Collective, tensors: &[Tensor], counters: &mut [i64]) -> Result<()> {
    if dist.world() <= 1 {
        return Ok(());
    }
    broadcast_counters(dist, counters)?;
    tch::no_grad(|| broadcast_tensors(dist, tensors, 0))
}

/// The save/load plumbing of a trainer whose whole state is one [`TrainState`] of kind [`TrainerState::KIND`]:
/// each trainer says where its state lives (its config JSON, its live tensors, its optimizer step and counters,
/// its process group) and inherits [`TrainerState::state`], [`TrainerState::train_state`],
/// [`TrainerState::save_state`], [`TrainerState::load_state`], [`TrainerState::restore`] and the one strict,
/// collective [`TrainerState::restore_checked`]. Implemented by [`crate::classify::finetune::FineTuner`],
/// [`crate::rrg::train::ReportTrainer`], [`crate::llava::train::LlavaTrainer`] and [`crate::seg::model::SegModel`],
/// whose public methods of the same names call these.
pub trait TrainerState {
    /// The kind of its states.
    const KIND: StateKind;
    /// What [`agree`] names when loading failed on another rank ("loading the fine-tuning state").
    const LOADING: &'static str;
    /// Its counters besides the optimizer step, saved under these names, required in a state, and broadcast in
    /// this order after the optimizer step ([`TrainerState::counters`]).
    const COUNTERS: &'static [&'static str];

    /// The native config JSON, written in a state and compared on load.
    fn config_json(&self) -> String;
    /// The live tensors under their state names, sharing storage with the trainer (parameters, AdamW moments…).
    fn live(&self) -> BTreeMap<String, Tensor>;
    /// The process group.
    fn dist(&self) -> &dyn Collective;
    /// [optimizer step, one value per [`TrainerState::COUNTERS`] in that order].
    fn counters(&self) -> Vec<i64>;
    /// Sets what [`TrainerState::counters`] reads, in the same order.
    fn set_counters(&mut self, values: &[i64]);

    /// The trainer's own checks of a state, run before the common ones of [`TrainerState::restore_checked`]; it may
    /// take its own entries out of the state's metadata. None by default.
    fn check_own(&self, _state: &mut TrainState) -> Result<()> {
        Ok(())
    }

    /// Metadata entries of the trainer's own, written in every state (over the caller's of the same name). None
    /// by default.
    fn own_metadata(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Broadcasts rank 0's [`TrainerState::live`] tensors and [`TrainerState::counters`] to every rank.
    /// Collective; no-op on one process.
    fn sync_from_rank0(&mut self) -> Result<()> {
        let mut counters = self.counters();
        let live: Vec<Tensor> = self.live().into_values().collect();
        sync_from_rank0(self.dist(), &live, &mut counters)?;
        self.set_counters(&counters);
        Ok(())
    }

    /// Every tensor of the training state on the CPU (CPU tensors share storage with the trainer).
    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        self.live().into_iter().map(|(k, t)| Ok((k, t.f_detach()?.f_to_device(tch::Device::Cpu)?))).collect()
    }

    /// The whole training state: [`TrainerState::state`], the config, the optimizer step, the counters and the
    /// trainer's own metadata.
    fn train_state(&self) -> Result<TrainState> {
        let counters = self.counters();
        let mut st = TrainState::new(Self::KIND, self.config_json(), counters[0], self.state()?);
        for (name, v) in Self::COUNTERS.iter().zip(&counters[1..]) {
            st.counters.insert((*name).into(), *v);
        }
        for (k, v) in self.own_metadata() {
            st.metadata.insert(k.into(), v);
        }
        Ok(st)
    }

    /// Writes the training state atomically ([`TrainState::save`]) with the caller's `metadata` (epoch, batch
    /// position…).
    fn save_state(&self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        let mut st = self.train_state()?;
        st.metadata.extend(metadata);
        for (k, v) in self.own_metadata() {
            st.metadata.insert(k.into(), v);
        }
        st.save(path)
    }

    /// Reads a state file ([`TrainState::read`]) and restores it ([`TrainerState::restore_checked`]).
    fn load_state(&mut self, path: &Path, force: bool) -> Result<HashMap<String, String>> {
        self.restore_checked(TrainState::read(path, Self::KIND), force)
    }

    /// [`TrainerState::load_state`] of a state in memory.
    fn restore(&mut self, state: TrainState, force: bool) -> Result<HashMap<String, String>> {
        self.restore_checked(Ok(state), force)
    }

    /// Restores a state that was read (or failed to be read) on this rank, in this order: the trainer's own checks
    /// ([`TrainerState::check_own`]) → [`TrainState::check`] (the kind; the config unless `force`; every live
    /// tensor present with its shape and nothing else) → every [`TrainerState::COUNTERS`] present → [`agree`]
    /// over the ranks → [`copy_into`] the live tensors → the counters → [`TrainerState::sync_from_rank0`]. Any
    /// failure before the copy leaves the trainer untouched on every rank. Returns the caller's metadata.
    fn restore_checked(&mut self, state: Result<TrainState>, force: bool) -> Result<HashMap<String, String>> {
        let live = self.live();
        let config = self.config_json();
        let state = state.and_then(|mut s| {
            self.check_own(&mut s)?;
            s.check(Self::KIND, &config, force, &live, |_| false)?;
            match Self::COUNTERS.iter().find(|c| !s.counters.contains_key(**c)) {
                None => Ok(s),
                Some(c) => Err(Error::weights(&s.source, format!("the state has no '{c}' counter; nothing was loaded"))),
            }
        });
        let state = agree(self.dist(), state, Self::LOADING)?;
        // The live tensors share storage with the trainer: the copies write into it.
        copy_into(&live, &state)?;
        let mut counters = vec![state.step];
        counters.extend(Self::COUNTERS.iter().map(|c| state.counters[*c]));
        self.set_counters(&counters);
        self.sync_from_rank0()?;
        Ok(state.metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn config_diff_names_top_level_keys() {
        assert!(config_diff(r#"{"a":1,"b":{"c":2}}"#, r#"{"b":{"c":2},"a":1}"#).is_empty());
        assert_eq!(config_diff(r#"{"a":1,"b":{"c":2},"d":0}"#, r#"{"a":1.5,"b":{"c":3}}"#), vec!["a", "b", "d"]);
        assert_eq!(config_diff("[1]", "[2]"), vec!["(the whole config)"]);
    }

    #[test]
    fn save_and_read_round_trip_with_caller_metadata() {
        let dir = std::env::temp_dir().join(format!("cxf-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.safetensors");
        let mut st = TrainState::new(StateKind::Finetune, r#"{"a":1}"#.into(), 7, BTreeMap::from([("w".to_string(), Tensor::from_slice(&[1.0f32, 2.0]))]));
        st.counters.insert(SCHEDULED_STEPS.into(), 9);
        st.metadata.insert("cxformer_progress".into(), "{}".into());
        st.metadata.insert(STEP_KEY.into(), "not mine".into());
        st.save(&path).unwrap();
        let back = TrainState::read(&path, StateKind::Finetune).unwrap();
        assert_eq!((back.step, back.counters[SCHEDULED_STEPS], back.config.as_str()), (7, 9, r#"{"a":1}"#));
        assert_eq!(back.metadata, HashMap::from([("cxformer_progress".to_string(), "{}".to_string())]));
        assert!(back.tensors["w"].equal(&st.tensors["w"]));
        let e = TrainState::read(&path, StateKind::Seg).unwrap_err().to_string();
        assert!(e.contains("a fine-tuning training state, not a segmentation one"), "{e}");
        let expect = BTreeMap::from([("w".to_string(), Tensor::zeros([3], (Kind::Float, Device::Cpu)))]);
        let e = back.check(StateKind::Finetune, r#"{"a":1}"#, false, &expect, |_| false).unwrap_err().to_string();
        assert!(e.contains("nothing was loaded") && e.contains("shape mismatch"), "{e}");
        let e = back.check(StateKind::Finetune, r#"{"a":2}"#, false, &expect, |_| false).unwrap_err().to_string();
        assert!(e.contains("differing: a") && e.contains("force"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
