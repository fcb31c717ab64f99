//! Weight files (safetensors only): memory-mapped, validated reading, the three key layouts of docs/recipe.md §2.7
//! (HF Dinov2Model, HF Dinov2WithRegistersModel, original DINOv2 names with fused qkv; plus the
//! `*ForImageClassification` and `backbone.` prefixes), strict loading into a VarStore (no silent partial
//! loads) and atomic writing in either layout.
use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor, nn};

/// Key layout of a weight file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Layout {
    /// Hugging Face Dinov2Model / Dinov2WithRegistersModel names (`embeddings.*`, `encoder.layer.N.*`,
    /// `layernorm.*`), after stripping `prefix` (`dinov2.` / `dinov2_with_registers.` for the
    /// `*ForImageClassification` variants, whose `classifier.*` keys are ignored).
    Hf { prefix: String },
    /// Original DINOv2 names (`blocks.N.attn.qkv.*`, `pos_embed`, `norm.*`), after stripping `prefix`
    /// (`backbone.` in SSL checkpoints, whose `dino_head.*` / `ibot_head.*` keys are ignored).
    Original { prefix: String },
}

impl Layout {
    /// Detects the layout from the tensor names.
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str> + Clone) -> Option<Layout> {
        let has = |p: &str| names.clone().into_iter().any(|n| n.starts_with(p));
        for prefix in ["", "dinov2.", "dinov2_with_registers."] {
            if has(&format!("{prefix}embeddings.")) && has(&format!("{prefix}encoder.layer.")) {
                return Some(Layout::Hf { prefix: prefix.into() });
            }
        }
        for prefix in ["", "backbone.", "teacher.backbone.", "student.backbone."] {
            if has(&format!("{prefix}blocks.")) && has(&format!("{prefix}patch_embed.")) {
                return Some(Layout::Original { prefix: prefix.into() });
            }
        }
        None
    }

    fn prefix(&self) -> &str {
        match self {
            Layout::Hf { prefix } | Layout::Original { prefix } => prefix,
        }
    }

    /// Keys outside the backbone that a file of this layout may carry and that are skipped on purpose.
    fn is_ignorable(&self, name: &str) -> bool {
        match self {
            Layout::Hf { prefix } => !prefix.is_empty() && name.starts_with("classifier."),
            // A cxformer training checkpoint: everything but the chosen backbone (other branch, heads,
            // optimizer moments, centres) is training state.
            Layout::Original { prefix } if prefix == "teacher.backbone." || prefix == "student.backbone." => true,
            Layout::Original { prefix } => {
                let root = prefix.strip_suffix("backbone.").unwrap_or("");
                !prefix.is_empty()
                    && (name.starts_with(&format!("{root}dino_head.")) || name.starts_with(&format!("{root}ibot_head.")))
            }
        }
    }
}

/// Where an HF tensor goes in the original layout.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Name(String),
    /// Part 0/1/2 (query/key/value) of `blocks.{block}.attn.qkv.{param}`.
    Qkv { block: usize, part: usize, param: String },
}

/// Maps one HF key (prefix already stripped) to its original-layout destination (docs/recipe.md §2.7 table).
fn hf_to_original(name: &str) -> Option<Target> {
    let direct = |s: &str| Some(Target::Name(s.to_string()));
    match name {
        "embeddings.cls_token" => return direct("cls_token"),
        "embeddings.mask_token" => return direct("mask_token"),
        "embeddings.position_embeddings" => return direct("pos_embed"),
        "embeddings.register_tokens" => return direct("register_tokens"),
        _ => {}
    }
    if let Some(p) = name.strip_prefix("embeddings.patch_embeddings.projection.") {
        return Some(Target::Name(format!("patch_embed.proj.{p}")));
    }
    if let Some(p) = name.strip_prefix("layernorm.") {
        return Some(Target::Name(format!("norm.{p}")));
    }
    let rest = name.strip_prefix("encoder.layer.")?;
    let (idx, rest) = rest.split_once('.')?;
    let i: usize = idx.parse().ok()?;
    let b = |s: String| Some(Target::Name(format!("blocks.{i}.{s}")));
    if let Some(p) = rest.strip_prefix("attention.attention.") {
        let (which, param) = p.split_once('.')?;
        let part = ["query", "key", "value"].iter().position(|w| *w == which)?;
        return Some(Target::Qkv { block: i, part, param: param.to_string() });
    }
    if let Some(p) = rest.strip_prefix("attention.output.dense.") {
        return b(format!("attn.proj.{p}"));
    }
    match rest {
        "layer_scale1.lambda1" => return b("ls1.gamma".into()),
        "layer_scale2.lambda1" => return b("ls2.gamma".into()),
        _ => {}
    }
    for (hf, orig) in [("norm1.", "norm1."), ("norm2.", "norm2."), ("mlp.fc1.", "mlp.fc1."), ("mlp.fc2.", "mlp.fc2."),
        ("mlp.weights_in.", "mlp.w12."), ("mlp.weights_out.", "mlp.w3.")]
    {
        if let Some(p) = rest.strip_prefix(hf) {
            return b(format!("{orig}{p}"));
        }
    }
    None
}

/// The Hugging Face key(s) of a backbone variable (original DINOv2 name; without a prefix such as LLaVA's
/// `vision_tower.`): three for the fused q/k/v (rows [0:D], [D:2D], [2D:3D] = query, key, value), one otherwise; None for a name that is
/// not a tower variable.
pub fn hf_keys(name: &str) -> Option<Vec<String>> {
    let one = |s: String| Some(vec![s]);
    match name {
        "cls_token" => return one("embeddings.cls_token".into()),
        "mask_token" => return one("embeddings.mask_token".into()),
        "pos_embed" => return one("embeddings.position_embeddings".into()),
        "register_tokens" => return one("embeddings.register_tokens".into()),
        _ => {}
    }
    if let Some(p) = name.strip_prefix("patch_embed.proj.") {
        return one(format!("embeddings.patch_embeddings.projection.{p}"));
    }
    if let Some(p) = name.strip_prefix("norm.") {
        return one(format!("layernorm.{p}"));
    }
    let (i, rest) = name.strip_prefix("blocks.")?.split_once('.')?;
    let l = |s: &str| format!("encoder.layer.{i}.{s}");
    if let Some(p) = rest.strip_prefix("attn.qkv.") {
        return Some(["query", "key", "value"].iter().map(|w| l(&format!("attention.attention.{w}.{p}"))).collect());
    }
    if let Some(p) = rest.strip_prefix("attn.proj.") {
        return one(l(&format!("attention.output.dense.{p}")));
    }
    let mapped = match rest {
        "ls1.gamma" => "layer_scale1.lambda1".to_string(),
        "ls2.gamma" => "layer_scale2.lambda1".to_string(),
        r if r.starts_with("norm1.") || r.starts_with("norm2.") || r.starts_with("mlp.fc1.") || r.starts_with("mlp.fc2.") => r.to_string(),
        r if r.starts_with("mlp.w12.") => r.replacen("mlp.w12.", "mlp.weights_in.", 1),
        r if r.starts_with("mlp.w3.") => r.replacen("mlp.w3.", "mlp.weights_out.", 1),
        _ => return None,
    };
    one(l(&mapped))
}

/// [`hf_keys`] of a variable of a cxformer ViT (always mapped).
fn original_to_hf(name: &str) -> Vec<String> {
    hf_keys(name).expect("every backbone variable is covered by the mapping")
}

/// Any JSON value whose objects repeat no key (serde_json bounds the nesting depth at 128).
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<UniqueKeys, A::Error> {
                let mut seen = BTreeSet::new();
                while let Some(k) = m.next_key::<String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(serde::de::Error::custom(format!("expected each key once, found \"{k}\" more than once")));
                    }
                    m.next_value::<UniqueKeys>()?;
                }
                Ok(UniqueKeys)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> std::result::Result<UniqueKeys, A::Error> {
                while s.next_element::<UniqueKeys>()?.is_some() {}
                Ok(UniqueKeys)
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_unit<E>(self) -> std::result::Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
        }
        d.deserialize_any(V)
    }
}

/// A memory-mapped, validated safetensors file.
pub struct WeightFile {
    pub path: PathBuf,
    mmap: memmap2::Mmap,
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

impl WeightFile {
    /// Maps the file and validates its header (length, JSON, dtypes, shapes, contiguous in-range offsets,
    /// data section ending exactly at the end of the file).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only; a file truncated while mapped is the caller's problem, as for any mmap.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        SafeTensors::deserialize(&mmap)
            .map_err(|e| Error::weights(&path, format!("not a valid safetensors file: {e}")))?;
        // The safetensors crate keeps the last of repeated tensor names silently; refuse them (src/io/safetensors.ts
        // applies the same rule, so `info` and every loader agree).
        let n = u64::from_le_bytes(mmap[..8].try_into().expect("8 bytes, checked by deserialize")) as usize;
        serde_json::from_slice::<UniqueKeys>(&mmap[8..8 + n])
            .map_err(|e| Error::weights(&path, format!("not a valid safetensors header: {e}")))?;
        Ok(WeightFile { path, mmap })
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.mmap).expect("validated in open()")
    }

    /// `__metadata__` of the header, if any.
    pub fn metadata(&self) -> HashMap<String, String> {
        SafeTensors::read_metadata(&self.mmap)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default()
    }

    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.st().names().into_iter().map(str::to_string).collect();
        n.sort();
        n
    }

    /// Copies one tensor out of the map (any dtype, on the CPU).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let st = self.st();
        let view = st.tensor(name).map_err(|_| Error::weights(&self.path, format!("no tensor named '{name}'")))?;
        self.to_tensor(name, &view)
    }

    fn to_tensor(&self, name: &str, view: &TensorView<'_>) -> Result<Tensor> {
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            Error::weights(&self.path, format!("tensor '{name}' has unsupported dtype {:?}", view.dtype()))
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&s| s as i64).collect();
        Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| Error::weights(&self.path, format!("tensor '{name}': {e}")))
    }

    /// All tensors as a name → tensor map (CPU, original dtypes).
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let st = self.st();
        st.tensors().iter().map(|(n, v)| Ok((n.clone(), self.to_tensor(n, v)?))).collect()
    }
}

/// What a strict load did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub layout: Layout,
    pub loaded: usize,
    /// Keys present in the file but outside the backbone (classifier, DINO/iBOT heads), skipped by design.
    pub ignored: Vec<String>,
    /// Source dtypes found (e.g. ["BF16"]), converted to the model's dtype.
    pub source_dtypes: Vec<String>,
}

fn list(items: &[String], max: usize) -> String {
    let mut s = items.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > max {
        s.push_str(&format!(", … ({} more)", items.len() - max));
    }
    s
}

/// How [`load_backbone_with`] treats the values it loads.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Accept NaN / ±Inf values (refused by default: they only ever produce NaN features).
    pub allow_non_finite: bool,
}

/// What the header of a weight file maps to, before any tensor data is read.
struct HeaderPlan {
    layout: Layout,
    /// Original-layout variable name → the file's tensor name(s) (three for a split q/k/v).
    sources: BTreeMap<String, Vec<String>>,
    ignored: Vec<String>,
    dtypes: BTreeSet<String>,
}

/// Checks the header of `file` against `expect` (original-DINOv2 variable names → shapes) without reading tensor
/// data or allocating a model: the layout, every name (missing, unexpected), every shape (q/k/v parts against their
/// third of the fused tensor) and every dtype. Fails naming each problem; a file that passes loads completely.
fn plan_load(file: &WeightFile, expect: &BTreeMap<String, Vec<i64>>) -> Result<HeaderPlan> {
    let names = file.names();
    let layout = Layout::detect(names.iter().map(String::as_str)).ok_or_else(|| {
        Error::weights(
            &file.path,
            format!(
                "unrecognised key layout: expected Hugging Face Dinov2 names (embeddings.*, encoder.layer.N.*) or original \
                 DINOv2 names (blocks.N.*, patch_embed.*); found keys such as {}",
                list(&names, 5)
            ),
        )
    })?;
    let prefix = layout.prefix().to_string();
    let st = file.st();
    let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut qkv_parts: BTreeMap<String, [Option<String>; 3]> = BTreeMap::new();
    let (mut unexpected, mut ignored, mut mismatched, mut missing) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut dtypes = BTreeSet::new();
    let shape_of = |name: &str| -> Vec<i64> { st.tensor(name).expect("listed name").shape().iter().map(|&x| x as i64).collect() };
    for name in &names {
        let Some(stripped) = name.strip_prefix(&prefix) else {
            if layout.is_ignorable(name) {
                ignored.push(name.clone());
            } else {
                unexpected.push(name.clone());
            }
            continue;
        };
        let view = st.tensor(name).expect("listed name");
        dtypes.insert(format!("{:?}", view.dtype()));
        if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
            return Err(Error::weights(
                &file.path,
                format!("tensor '{name}' has dtype {:?}; expected a floating-point dtype (F32, BF16, F16, F64)", view.dtype()),
            ));
        }
        let target = match &layout {
            Layout::Original { .. } => Some(Target::Name(stripped.to_string())),
            Layout::Hf { .. } => hf_to_original(stripped),
        };
        match target {
            Some(Target::Name(n)) => {
                sources.insert(n, vec![name.clone()]);
            }
            Some(Target::Qkv { block, part, param }) => {
                qkv_parts.entry(format!("blocks.{block}.attn.qkv.{param}")).or_default()[part] = Some(name.clone());
            }
            None => unexpected.push(name.clone()),
        }
    }
    let mut partial_qkv = BTreeSet::new();
    for (fused, parts) in qkv_parts {
        if parts.iter().all(Option::is_some) {
            sources.insert(fused, parts.into_iter().map(Option::unwrap).collect());
        } else {
            let stem = fused.strip_prefix("blocks.").expect("fused qkv name");
            let (block, param) = stem.split_once(".attn.qkv.").expect("fused qkv name");
            for (i, w) in ["query", "key", "value"].iter().enumerate() {
                if parts[i].is_none() {
                    missing.push(format!("{prefix}encoder.layer.{block}.attention.attention.{w}.{param}"));
                }
            }
            partial_qkv.insert(fused);
        }
    }
    for (name, want) in expect {
        match sources.get(name) {
            None if partial_qkv.contains(name) => {} // its missing q/k/v parts are already listed
            None => missing.push(display_name(&layout, name)),
            Some(files) if files.len() == 3 => {
                // Each of query/key/value must be one third (along rows) of the fused tensor.
                let mut part = want.clone();
                part[0] /= 3;
                for f in files {
                    let got = shape_of(f);
                    if got != part {
                        mismatched.push(format!("{f} (file {got:?}, model {part:?})"));
                    }
                }
            }
            Some(files) => {
                let got = shape_of(&files[0]);
                if &got != want {
                    mismatched.push(format!("{} (file {got:?}, model {want:?})", display_name(&layout, name)));
                }
            }
        }
    }
    for name in sources.keys() {
        if !expect.contains_key(name) {
            unexpected.push(display_name(&layout, name));
        }
    }
    if !(missing.is_empty() && unexpected.is_empty() && mismatched.is_empty()) {
        // Block order (layer 2 before layer 10), so that the first names listed are the first that differ.
        for v in [&mut missing, &mut unexpected, &mut mismatched] {
            v.sort_by_cached_key(|n| natural_key(n));
        }
        let mut msg = String::from("weights do not match the model architecture; nothing was loaded.");
        if !missing.is_empty() {
            msg.push_str(&format!("\n  missing ({}): {}", missing.len(), list(&missing, 12)));
        }
        if !unexpected.is_empty() {
            msg.push_str(&format!("\n  unexpected ({}): {}", unexpected.len(), list(&unexpected, 12)));
        }
        if !mismatched.is_empty() {
            msg.push_str(&format!("\n  shape mismatch ({}): {}", mismatched.len(), list(&mismatched, 12)));
        }
        msg.push_str("\n  Check the architecture (config.json, --arch or model.* overrides) against the file.");
        return Err(Error::weights(&file.path, msg));
    }
    Ok(HeaderPlan { layout, sources, ignored, dtypes })
}

/// Sort key comparing digit runs as numbers: `blocks.2.x` before `blocks.10.x`.
fn natural_key(name: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits > 0 {
            key.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            key.push((0, rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    key
}

/// Checks a weight file against an architecture before anything is allocated (see `plan_load`); returns its layout.
pub fn check_weights(file: &WeightFile, cfg: &crate::config::VitConfig) -> Result<Layout> {
    cfg.validate()?;
    Ok(plan_load(file, &cfg.expected_shapes())?.layout)
}

/// [`load_backbone_with`] with the default options (non-finite values refused).
pub fn load_backbone(vs: &nn::VarStore, file: &WeightFile) -> Result<LoadReport> {
    load_backbone_with(vs, file, LoadOptions::default())
}

/// Loads a backbone from `file` into the variables of `vs` (original-DINOv2 names). Fails, naming every
/// problem, unless each model variable is set exactly once from a tensor of the same shape, every tensor of the
/// file is either used or an expected non-backbone key and (unless allowed) every value is finite.
pub fn load_backbone_with(vs: &nn::VarStore, file: &WeightFile, opts: LoadOptions) -> Result<LoadReport> {
    let mut vars = vs.variables();
    let expect: BTreeMap<String, Vec<i64>> = vars.iter().map(|(k, v)| (k.clone(), v.size())).collect();
    let HeaderPlan { layout, sources, ignored, dtypes } = plan_load(file, &expect)?;
    let st = file.st();
    let mut source: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut non_finite = Vec::new();
    for (name, files) in &sources {
        let parts = files
            .iter()
            .map(|f| Ok(file.to_tensor(f, &st.tensor(f).expect("listed name"))?.to_kind(Kind::Float)))
            .collect::<Result<Vec<_>>>()?;
        let t = if parts.len() == 3 { Tensor::cat(&parts, 0) } else { parts.into_iter().next().expect("one tensor") };
        if !opts.allow_non_finite {
            let bad = t.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]);
            if bad > 0 {
                non_finite.push(format!("{} ({bad} of {})", files.join("|"), t.numel()));
            }
        }
        source.insert(name.clone(), t);
    }
    if !non_finite.is_empty() {
        return Err(Error::weights(
            &file.path,
            format!(
                "{} tensor(s) hold NaN or infinite values; nothing was loaded: {}\n  Such weights only produce NaN \
                 features. Pass --allow-nonfinite (library: allowNonFinite) to load them anyway.",
                non_finite.len(),
                list(&non_finite, 12)
            ),
        ));
    }
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars.iter_mut() {
            let src = &source[name];
            var.f_copy_(&src.to_device(var.device()).to_kind(var.kind()))?;
        }
        Ok(())
    })?;
    Ok(LoadReport { layout, loaded: source.len(), ignored, source_dtypes: dtypes.into_iter().collect() })
}

fn display_name(layout: &Layout, original: &str) -> String {
    match layout {
        Layout::Original { prefix } => format!("{prefix}{original}"),
        Layout::Hf { prefix } => original_to_hf(original).into_iter().map(|k| format!("{prefix}{k}")).collect::<Vec<_>>().join("|"),
    }
}

/// Output layout and dtype for [`save_backbone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveLayout {
    Hf,
    Original,
}

/// Writes the variables of `vs` (original names) as safetensors in the chosen layout and dtype (Float,
/// BFloat16 or Half), with `metadata` in the header, atomically (temp file in the same folder, fsync, rename).
pub fn save_backbone(
    vs: &nn::VarStore,
    path: impl AsRef<Path>,
    layout: SaveLayout,
    kind: Kind,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let mut out: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, t) in vs.variables() {
        let t = t.detach().to_device(Device::Cpu).to_kind(kind).contiguous();
        match layout {
            SaveLayout::Original => {
                out.insert(name, t);
            }
            SaveLayout::Hf => {
                let keys = original_to_hf(&name);
                let chunks = if keys.len() == 3 { t.chunk(3, 0) } else { vec![t] };
                for (k, c) in keys.into_iter().zip(chunks) {
                    out.insert(k, c.contiguous());
                }
            }
        }
    }
    write_safetensors(path, &out, metadata)
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int => Dtype::I32,
        k => return Err(Error::Config(format!("cannot write tensors of kind {k:?} to safetensors"))),
    })
}

/// Compares a state read from a file with the state a model expects (names and shapes, ignoring the names `skip`
/// accepts). `Err` holds the listing of missing, unexpected and mismatched entries (first ten of each) for the
/// caller's error: a state that does not match exactly is never loaded in part.
pub fn state_mismatch(
    expect: &BTreeMap<String, Tensor>,
    found: &BTreeMap<String, Tensor>,
    skip: impl Fn(&str) -> bool,
) -> std::result::Result<(), String> {
    let missing: Vec<&String> = expect.keys().filter(|k| !found.contains_key(*k) && !skip(k)).collect();
    let unexpected: Vec<&String> = found.keys().filter(|k| !expect.contains_key(*k) && !skip(k)).collect();
    let mismatched: Vec<String> = expect
        .iter()
        .filter_map(|(k, v)| found.get(k).filter(|t| t.size() != v.size()).map(|t| format!("{k} (file {:?}, model {:?})", t.size(), v.size())))
        .collect();
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
        return Ok(());
    }
    Err(format!(
        "missing: {:?}\n  unexpected: {:?}\n  shape mismatch: {:?}",
        missing.iter().take(10).collect::<Vec<_>>(),
        unexpected.iter().take(10).collect::<Vec<_>>(),
        mismatched.iter().take(10).collect::<Vec<_>>()
    ))
}

/// Writes CPU tensors to a safetensors file atomically.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>, metadata: HashMap<String, String>) -> Result<()> {
    let mut bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(Device::Cpu).contiguous();
        let n = t.numel();
        let size = t.kind().elt_size_in_bytes();
        let mut buf = vec![0u8; n * size];
        t.f_copy_data_u8(&mut buf, n)?;
        bytes.push((name.clone(), dtype_of(t.kind())?, t.size().iter().map(|&s| s as usize).collect(), buf));
    }
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b).map_err(|e| Error::Config(e.to_string()))?)))
        .collect::<Result<_>>()?;
    let data = safetensors::serialize(views, None).map_err(|e| Error::weights(path, e.to_string()))?;
    write_atomic(path, &with_sorted_metadata(data, &metadata).map_err(|e| Error::weights(path, e))?)
}

/// `data` (a safetensors file without metadata) with `metadata` as its `__metadata__`, keys in sorted order: the
/// safetensors crate writes a HashMap in its random iteration order, and a file written twice from the same state
/// must be the same bytes. The header stays padded with spaces to a multiple of 8 bytes.
fn with_sorted_metadata(data: Vec<u8>, metadata: &HashMap<String, String>) -> std::result::Result<Vec<u8>, String> {
    if metadata.is_empty() {
        return Ok(data);
    }
    let n = u64::from_le_bytes(data[..8].try_into().expect("8-byte length prefix")) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&data[8..8 + n]).map_err(|e| e.to_string())?;
    let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
    header.insert("__metadata__".into(), serde_json::to_value(sorted).map_err(|e| e.to_string())?);
    let mut text = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + text.len() + data.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&data[8 + n..]);
    Ok(out)
}

/// Writes `data` to `path` through a temp file in the same folder + fsync + rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| Error::weights(path, "not a file path"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_written_in_sorted_order_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("cxf-weights-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tensors = BTreeMap::from([
            ("b".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0])),
            ("a".to_string(), Tensor::from_slice(&[7i64]).reshape([1, 1])),
        ]);
        let md: HashMap<String, String> = (0..40).map(|i| (format!("key{i}"), format!("value {i}"))).collect();
        let (p1, p2) = (dir.join("one.safetensors"), dir.join("two.safetensors"));
        write_safetensors(&p1, &tensors, md.clone()).unwrap();
        // Another HashMap of the same entries (another insertion order, another hasher state).
        let md2: HashMap<String, String> = (0..40).rev().map(|i| (format!("key{i}"), format!("value {i}"))).collect();
        write_safetensors(&p2, &tensors, md2).unwrap();
        let (b1, b2) = (std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
        assert_eq!(b1, b2);
        let n = u64::from_le_bytes(b1[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let f = WeightFile::open(&p1).unwrap();
        assert_eq!(f.metadata(), md);
        assert_eq!(f.tensor("b").unwrap(), Tensor::from_slice(&[1.0f32, 2.0, 3.0]));
        assert_eq!(f.tensor("a").unwrap(), Tensor::from_slice(&[7i64]).reshape([1, 1]));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn key_mapping_round_trip() {
        for name in ["cls_token", "pos_embed", "register_tokens", "mask_token", "patch_embed.proj.weight", "norm.bias",
            "blocks.3.norm1.weight", "blocks.3.attn.proj.bias", "blocks.3.ls1.gamma", "blocks.3.ls2.gamma",
            "blocks.3.mlp.fc1.weight", "blocks.3.mlp.w12.bias", "blocks.3.mlp.w3.weight"]
        {
            let hf = original_to_hf(name);
            assert_eq!(hf.len(), 1, "{name}");
            assert_eq!(hf_to_original(&hf[0]), Some(Target::Name(name.to_string())), "{name} -> {hf:?}");
        }
        let q = original_to_hf("blocks.2.attn.qkv.weight");
        assert_eq!(q[1], "encoder.layer.2.attention.attention.key.weight");
        assert_eq!(hf_to_original(&q[2]), Some(Target::Qkv { block: 2, part: 2, param: "weight".into() }));
        assert_eq!(hf_to_original("encoder.layer.x.norm1.weight"), None);
        assert_eq!(hf_to_original("pooler.dense.weight"), None);
    }

    #[test]
    fn layout_detection() {
        let hf = ["embeddings.cls_token", "encoder.layer.0.norm1.weight"];
        assert_eq!(Layout::detect(hf), Some(Layout::Hf { prefix: "".into() }));
        let cls = ["dinov2_with_registers.embeddings.cls_token", "dinov2_with_registers.encoder.layer.0.norm1.weight", "classifier.weight"];
        assert_eq!(Layout::detect(cls), Some(Layout::Hf { prefix: "dinov2_with_registers.".into() }));
        let ssl = ["backbone.blocks.0.norm1.weight", "backbone.patch_embed.proj.weight", "dino_head.mlp.0.weight"];
        let l = Layout::detect(ssl).unwrap();
        assert_eq!(l, Layout::Original { prefix: "backbone.".into() });
        assert!(l.is_ignorable("dino_head.mlp.0.weight"));
        assert!(!l.is_ignorable("something.else"));
        assert_eq!(Layout::detect(["foo", "bar"]), None);
    }
}
