#![allow(dead_code)]
use cxformer_core::{Backbone, FfnKind, VitConfig, WeightFile};
use std::path::PathBuf;
use tch::{Device, Tensor};

/// ../shared/fixtures/golden next to the repository (override with CXF_GOLDEN_DIR).
pub fn golden_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CXF_GOLDEN_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/golden")
}

pub fn tiny_config() -> VitConfig {
    let json = std::fs::read_to_string(golden_dir().join("vit_tiny_hf/config.json")).expect("golden config.json");
    VitConfig::from_hf_config(&json).expect("valid golden config")
}

pub fn tiny_weights() -> PathBuf {
    golden_dir().join("vit_tiny_hf/model.safetensors")
}

/// Device of the device-aware tests: CXF_TEST_DEVICE (cpu, cuda, cuda:N), default cpu (scripts/gpu-check.sh sets cuda).
pub fn test_device() -> Device {
    let s = std::env::var("CXF_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    cxformer_core::runtime::parse_device(&s).expect("CXF_TEST_DEVICE")
}

pub fn load_tiny(device: Device) -> Backbone {
    Backbone::load(&tiny_config(), tiny_weights(), device).expect("golden model loads").0
}

pub fn golden(file: &str, name: &str) -> Tensor {
    WeightFile::open(golden_dir().join(file)).expect("golden file").tensor(name).expect("golden tensor")
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    (a - b).abs().max().double_value(&[])
}

pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cxf-test-{tag}-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000_007
}

/// A free TCP port on 127.0.0.1 for a test rendezvous.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Rank `rank` of a Gloo group of `world` CPU ranks on 127.0.0.1:`port` (60 s timeout); the ranks are threads of
/// one test.
pub fn gloo_group(rank: i64, world: i64, port: u16) -> cxformer_core::dist::ProcessGroup {
    use cxformer_core::dist::{BackendChoice, PgOptions, ProcessGroup};
    ProcessGroup::new(&PgOptions {
        rank,
        world,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        timeout: std::time::Duration::from_secs(60),
        backend: BackendChoice::Gloo,
        device: Device::Cpu,
    })
    .unwrap()
}

/// A small ViT/14 for fast tests: `dim` wide with 2 heads, `depth` blocks, `side` px inputs, `registers` register
/// tokens, no stochastic depth.
pub fn small_vit(dim: i64, depth: i64, side: i64, registers: i64) -> VitConfig {
    let mut v = VitConfig::vit_small();
    v.embed_dim = dim;
    v.num_heads = 2;
    v.depth = depth;
    v.img_size = side;
    v.num_register_tokens = registers;
    v.drop_path_rate = 0.0;
    v
}

/// Deterministic values in [-1, 1) without LibTorch's generator (a 64-bit LCG from `seed`).
pub fn lcg_values(n: i64, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// An SSL configuration for fast tests on `model` with `head` (DINO head; iBOT shares it): the reference's loss
/// weights, KoLeo 0.1, centering, 2 global + 2 local crops, clip 3, layer-wise decay 0.9, f32. Tests override
/// fields with struct update syntax.
pub fn small_ssl(model: VitConfig, head: cxformer_core::ssl::head::HeadConfig) -> cxformer_core::ssl::SslConfig {
    cxformer_core::ssl::SslConfig {
        model,
        dino_head: head,
        ibot_head: None,
        dino_loss_weight: 1.0,
        ibot_loss_weight: 1.0,
        koleo_loss_weight: 0.1,
        centering: cxformer_core::ssl::CenteringKind::Centering,
        center_momentum: 0.9,
        student_temp: 0.1,
        sinkhorn_iterations: 3,
        n_global_crops: 2,
        n_local_crops: 2,
        clip_grad: 3.0,
        layerwise_decay: 0.9,
        patch_embed_lr_mult: 0.2,
        adamw_betas: [0.9, 0.999],
        adamw_eps: 1e-8,
        precision: cxformer_core::Precision::F32,
    }
}

/// A small SwiGLU ViT/14 (48 wide, 2 heads, 2 blocks, 28 px, 3 registers) for model-level tests.
pub fn small_swiglu() -> VitConfig {
    let mut c = VitConfig::vit_small();
    c.embed_dim = 48;
    c.depth = 2;
    c.num_heads = 2;
    c.img_size = 28;
    c.num_register_tokens = 3;
    c.ffn = FfnKind::Swiglu;
    c
}

/// The largest absolute difference (in float64) between two tensor maps with the same keys, and the key where it
/// occurs: training states of two runs, two ranks, a resumed and an uninterrupted run.
pub fn state_max_diff(a: &std::collections::BTreeMap<String, Tensor>, b: &std::collections::BTreeMap<String, Tensor>) -> (f64, String) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .map(|(k, t)| ((t.to_kind(tch::Kind::Double) - b[k].to_kind(tch::Kind::Double)).abs().max().double_value(&[]), k.clone()))
        .fold((0.0, String::new()), |acc, x| if x.0 > acc.0 { x } else { acc })
}
