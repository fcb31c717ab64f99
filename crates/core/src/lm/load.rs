//! The weights of a model folder: one `model.safetensors` or the shards named by
//! `model.safetensors.index.json` ([`Checkpoint`]), each file opened through the strict reader of
//! [`crate::weights::WeightFile`] (validated header, no repeated names), and the strict load of a VarStore from
//! them ([`load_strict`]): each variable set exactly once from a tensor of its shape, every tensor of the files
//! accounted for, nothing loaded unless all of it matches.
use crate::error::{Error, Result};
use crate::weights::WeightFile;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor, nn};

/// Weights of a single-file folder.
pub const MODEL_FILE: &str = "model.safetensors";
/// Index of a sharded folder (`weight_map`: tensor name → shard file name).
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Header entry of one tensor.
#[derive(Clone, Debug)]
struct Entry {
    file: usize,
    dtype: String,
    shape: Vec<i64>,
}

/// The tensors of a model folder across one or several safetensors files.
pub struct Checkpoint {
    /// The file named in errors: `model.safetensors`, or the index of a sharded folder.
    pub path: PathBuf,
    files: Vec<WeightFile>,
    entries: BTreeMap<String, Entry>,
}

/// Names and shapes from a safetensors header (the file is validated by [`WeightFile::open`] first).
fn read_header(path: &Path) -> Result<BTreeMap<String, (String, Vec<i64>)>> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
    let mut text = vec![0u8; u64::from_le_bytes(len) as usize];
    f.read_exact(&mut text).map_err(|e| Error::io(path, e))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&text).map_err(|e| Error::weights(path, format!("not a valid safetensors header: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = v.get("dtype").and_then(|d| d.as_str()).unwrap_or("?").to_string();
        let shape = v.get("shape").and_then(|s| s.as_array()).map(|a| a.iter().filter_map(|x| x.as_i64()).collect()).unwrap_or_default();
        out.insert(name, (dtype, shape));
    }
    Ok(out)
}

/// The first `max` items joined, with a count of the rest.
pub(crate) fn list(items: &[String], max: usize) -> String {
    let mut s = items.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > max {
        s.push_str(&format!(", … ({} more)", items.len() - max));
    }
    s
}

impl Checkpoint {
    /// `dir/model.safetensors` if it exists (transformers' preference), else `dir/model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join(MODEL_FILE);
        let index = dir.join(INDEX_FILE);
        if single.exists() {
            Self::open_file(&single)
        } else if index.exists() {
            Self::open_index(&index)
        } else {
            Err(Error::weights(dir, format!("no {MODEL_FILE} and no {INDEX_FILE} in this folder (only safetensors weights are read)")))
        }
    }

    /// One safetensors file.
    pub fn open_file(path: &Path) -> Result<Self> {
        let file = WeightFile::open(path)?;
        let entries = read_header(path)?.into_iter().map(|(n, (dtype, shape))| (n, Entry { file: 0, dtype, shape })).collect();
        Ok(Checkpoint { path: path.to_path_buf(), files: vec![file], entries })
    }

    /// A sharded checkpoint: every shard of `weight_map` (plain file names in the index's folder) opened and
    /// checked against the map: each mapped tensor must be in its shard, and each shard must hold only the
    /// tensors mapped to it.
    pub fn open_index(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::weights(path, format!("not valid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::weights(path, "expected an object \"weight_map\" (tensor name → shard file)"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut shard_names: Vec<String> = Vec::new();
        let mut wanted: BTreeMap<String, usize> = BTreeMap::new();
        for (name, f) in map {
            let f = f.as_str().ok_or_else(|| Error::weights(path, format!("weight_map[\"{name}\"] must be a file name, got {f}")))?;
            if f.is_empty() || f.contains('/') || f.contains('\\') || f == "." || f == ".." {
                return Err(Error::weights(path, format!("weight_map[\"{name}\"] = \"{f}\": expected a plain file name in the index's folder")));
            }
            let i = match shard_names.iter().position(|s| s == f) {
                Some(i) => i,
                None => {
                    shard_names.push(f.to_string());
                    shard_names.len() - 1
                }
            };
            wanted.insert(name.clone(), i);
        }
        if wanted.is_empty() {
            return Err(Error::weights(path, "weight_map is empty"));
        }
        let mut files = Vec::new();
        let mut entries = BTreeMap::new();
        let mut problems = Vec::new();
        for (i, shard) in shard_names.iter().enumerate() {
            let p = dir.join(shard);
            files.push(WeightFile::open(&p)?);
            for (name, (dtype, shape)) in read_header(&p)? {
                match wanted.get(&name) {
                    Some(&j) if j == i => {
                        entries.insert(name, Entry { file: i, dtype, shape });
                    }
                    Some(&j) => problems.push(format!("{name} (in {shard}, mapped to {})", shard_names[j])),
                    None => problems.push(format!("{name} (in {shard}, not in weight_map)")),
                }
            }
        }
        for (name, &i) in &wanted {
            if !entries.contains_key(name) && !problems.iter().any(|p| p.starts_with(&format!("{name} "))) {
                problems.push(format!("{name} (mapped to {}, which does not hold it)", shard_names[i]));
            }
        }
        if !problems.is_empty() {
            return Err(Error::weights(path, format!("the shards do not match weight_map ({}): {}", problems.len(), list(&problems, 10))));
        }
        Ok(Checkpoint { path: path.to_path_buf(), files, entries })
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// The shape of a tensor, from its header.
    pub fn shape(&self, name: &str) -> Option<&[i64]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// A copy of one tensor (CPU, its stored dtype).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| Error::weights(&self.path, format!("no tensor named '{name}'")))?;
        self.files[e.file].tensor(name)
    }

    /// The safetensors files read.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

/// What a checkpoint tensor is to the model being loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// The value of this variable.
    Var(String),
    /// A tensor the model does not use, skipped on purpose (e.g. GPT-2's causal-mask buffers).
    Ignore,
    /// A tensor that must equal the one loaded into this variable (a tied LM head stored anyway).
    Tied(String),
    /// Rows `index`·n..(`index`+1)·n of this variable, n = its first dimension / `parts` (a fused projection stored
    /// in parts, e.g. the query/key/value of an HF Dinov2 layer for cxformer's fused `qkv`). Every part of a
    /// variable must be stored exactly once.
    Part { var: String, index: i64, parts: i64 },
}

/// How [`load_strict`] converts and checks values.
#[derive(Clone, Copy, Debug)]
pub struct LmLoadOptions {
    /// Where the variables live.
    pub device: Device,
    /// The variables' kind: Float (default; any stored dtype is converted), BFloat16, Half or Double.
    pub kind: Kind,
    /// Accept NaN / ±Inf values (refused by default).
    pub allow_non_finite: bool,
}

impl Default for LmLoadOptions {
    fn default() -> Self {
        LmLoadOptions { device: Device::Cpu, kind: Kind::Float, allow_non_finite: false }
    }
}

/// What a strict load did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LmLoadReport {
    /// The safetensors files read.
    pub files: Vec<PathBuf>,
    /// Variables set.
    pub loaded: usize,
    /// Tensors skipped by design ([`KeyRole::Ignore`]).
    pub ignored: Vec<String>,
    /// Tensors checked equal to their tied variable ([`KeyRole::Tied`]).
    pub tied: Vec<String>,
    /// Stored dtypes found (e.g. ["BF16"]).
    pub source_dtypes: Vec<String>,
}

/// Loads every variable of `vs` from `ckpt`, `role` telling what each tensor name is (None = unknown). Fails,
/// naming the file and the keys (ten of each kind), unless each variable is set exactly once from a tensor of the
/// same shape and a floating dtype, every tensor has a role, every [`KeyRole::Tied`] tensor equals its variable's
/// value exactly and (unless allowed) every value is finite; nothing is loaded then. Values are converted to each
/// variable's kind.
pub fn load_strict(vs: &nn::VarStore, ckpt: &Checkpoint, role: impl Fn(&str) -> Option<KeyRole>, allow_non_finite: bool) -> Result<LmLoadReport> {
    load_strict_into(vs.variables(), ckpt, role, allow_non_finite)
}

/// [`load_strict`] into a set of variables (name → the variable itself, e.g. part of a VarStore's
/// `variables()`): every variable of `vars` must be set, and only those.
pub fn load_strict_into(
    mut vars: HashMap<String, Tensor>,
    ckpt: &Checkpoint,
    role: impl Fn(&str) -> Option<KeyRole>,
    allow_non_finite: bool,
) -> Result<LmLoadReport> {
    let (mut missing, mut unexpected, mut mismatched, mut twice) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ignored, mut tied) = (Vec::new(), Vec::new());
    let mut source: BTreeMap<String, String> = BTreeMap::new(); // variable → key
    let mut parts: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new(); // variable → key of each part
    let mut dtypes = BTreeSet::new();
    let float_dtype = |key: &str, e: &Entry| -> Result<()> {
        if !matches!(e.dtype.as_str(), "F32" | "BF16" | "F16" | "F64") {
            return Err(Error::weights(&ckpt.path, format!("tensor '{key}' has dtype {}; expected F32, BF16, F16 or F64", e.dtype)));
        }
        Ok(())
    };
    for (key, e) in &ckpt.entries {
        match role(key) {
            None => unexpected.push(key.clone()),
            Some(KeyRole::Ignore) => ignored.push(key.clone()),
            Some(KeyRole::Tied(var)) => tied.push((key.clone(), var)),
            Some(KeyRole::Part { var, index, parts: n }) => {
                let Some(t) = vars.get(&var) else {
                    unexpected.push(key.clone());
                    continue;
                };
                float_dtype(key, e)?;
                dtypes.insert(e.dtype.clone());
                let mut want = t.size();
                if n < 1 || index < 0 || index >= n || want.is_empty() || want[0] % n != 0 {
                    mismatched.push(format!("{key} (part {index} of {n} of {var} {:?})", t.size()));
                    continue;
                }
                want[0] /= n;
                if e.shape != want {
                    mismatched.push(format!("{key} (file {:?}, model {want:?}: part {index} of {n} of {var})", e.shape));
                }
                let slots = parts.entry(var.clone()).or_insert_with(|| vec![None; n as usize]);
                if slots.len() != n as usize {
                    twice.push(format!("{var} (split in {} and in {n} parts)", slots.len()));
                } else if let Some(prev) = slots[index as usize].replace(key.clone()) {
                    twice.push(format!("{var} part {index} (from {prev} and {key})"));
                }
            }
            Some(KeyRole::Var(var)) => {
                let Some(t) = vars.get(&var) else {
                    unexpected.push(key.clone());
                    continue;
                };
                float_dtype(key, e)?;
                dtypes.insert(e.dtype.clone());
                if let Some(prev) = source.insert(var.clone(), key.clone()) {
                    twice.push(format!("{var} (from {prev} and {key})"));
                }
                if t.size() != e.shape {
                    mismatched.push(format!("{key} (file {:?}, model {:?})", e.shape, t.size()));
                }
            }
        }
    }
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for v in names {
        match (source.get(v), parts.get(v)) {
            (None, None) => missing.push(v.clone()),
            (Some(k), Some(_)) => twice.push(format!("{v} (from {k} and from parts)")),
            (None, Some(slots)) => {
                let absent: Vec<String> = slots.iter().enumerate().filter(|(_, k)| k.is_none()).map(|(i, _)| i.to_string()).collect();
                if !absent.is_empty() {
                    missing.push(format!("{v} (part(s) {} of {})", absent.join(", "), slots.len()));
                }
            }
            (Some(_), None) => {}
        }
    }
    for (key, var) in &tied {
        let ok = source.get(var).is_some_and(|k| ckpt.entries[k].shape == ckpt.entries[key].shape);
        if !ok {
            mismatched.push(format!("{key} (stored although tied to {var}, with another shape or without it)"));
        }
    }
    if !(missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() && twice.is_empty()) {
        let mut msg = String::from("weights do not match the model of config.json; nothing was loaded.");
        for (what, v) in [("missing", &missing), ("unexpected", &unexpected), ("shape mismatch", &mismatched), ("set twice", &twice)] {
            if !v.is_empty() {
                msg.push_str(&format!("\n  {what} ({}): {}", v.len(), list(v, 10)));
            }
        }
        return Err(Error::weights(&ckpt.path, msg));
    }
    // Pass 1: values (finite, tied copies equal) before any variable changes.
    let mut bad = Vec::new();
    let part_keys = parts.values().flatten().flatten();
    for key in source.values().chain(part_keys) {
        if !allow_non_finite {
            let t = ckpt.tensor(key)?;
            let n = t.f_isfinite()?.f_logical_not()?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
            if n > 0 {
                bad.push(format!("{key} ({n} of {})", t.numel()));
            }
        }
    }
    if !bad.is_empty() {
        return Err(Error::weights(
            &ckpt.path,
            format!("{} tensor(s) hold NaN or infinite values; nothing was loaded: {}", bad.len(), list(&bad, 10)),
        ));
    }
    for (key, var) in &tied {
        let a = ckpt.tensor(key)?;
        let b = ckpt.tensor(&source[var])?;
        if !a.f_to_kind(Kind::Float)?.equal(&b.f_to_kind(Kind::Float)?) {
            return Err(Error::weights(
                &ckpt.path,
                format!(
                    "{key} differs from {} although tie_word_embeddings is true (the head is the embedding); nothing was \
                     loaded. Set tie_word_embeddings to false in config.json to use the stored head.",
                    source[var]
                ),
            ));
        }
    }
    // Pass 2: copy.
    tch::no_grad(|| -> Result<()> {
        for (var, key) in &source {
            let dst = vars.get_mut(var).expect("checked above");
            let t = ckpt.tensor(key)?;
            dst.f_copy_(&t.f_to_kind(dst.kind())?.f_to_device(dst.device())?)?;
        }
        for (var, keys) in &parts {
            let dst = vars.get_mut(var).expect("checked above");
            let rows = dst.size()[0] / keys.len() as i64;
            for (i, key) in keys.iter().enumerate() {
                let t = ckpt.tensor(key.as_deref().expect("every part checked above"))?;
                dst.f_narrow(0, i as i64 * rows, rows)?.f_copy_(&t.f_to_kind(dst.kind())?.f_to_device(dst.device())?)?;
            }
        }
        Ok(())
    })?;
    Ok(LmLoadReport {
        files: ckpt.files(),
        loaded: source.len() + parts.len(),
        ignored,
        tied: tied.into_iter().map(|(k, _)| k).collect(),
        source_dtypes: dtypes.into_iter().collect(),
    })
}
