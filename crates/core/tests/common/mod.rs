#![allow(dead_code)]
use cxformer_core::{Backbone, VitConfig, WeightFile};
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
