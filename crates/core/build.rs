//! Build script of cxformer-core.
//!
//! * Emits an rpath to the LibTorch lib folder published by torch-sys (`DEP_TCH_LIBTORCH_LIB`) so that
//!   this crate's test and bench binaries find LibTorch without LD_LIBRARY_PATH (rpath link args are not
//!   propagated to dependents: crates/node's build.rs emits its own).
//! * Compiles `csrc/shim.cc`, the project's only C++ (LibTorch APIs that tch does not bind), against the
//!   same LibTorch headers, with the C++ ABI read from that torch.
use std::{env, path::PathBuf, process::Command};

fn env_var_rerun(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    env::var(name).ok()
}

fn main() {
    let lib = env_var_rerun("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not publish DEP_TCH_LIBTORCH_LIB; run through scripts/setup.sh (it sets VIRTUAL_ENV and LIBTORCH_USE_PYTORCH=1)");
    let lib = PathBuf::from(lib);
    let torch_root = lib.parent().expect("libtorch lib dir has a parent").to_path_buf();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-env=CXF_LIBTORCH_LIB={}", lib.display());

    if env::var_os("CARGO_FEATURE_CUDA").is_some() && lib.join("libtorch_cuda.so").exists() {
        // libtorch_cuda registers its kernels from static initialisers: keep it in NEEDED.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-lc10_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }

    let abi = cxx11_abi();
    let inc = torch_root.join("include");
    println!("cargo:rerun-if-changed=csrc/shim.cc");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    cc::Build::new()
        .cpp(true)
        .file("csrc/shim.cc")
        .include(&inc)
        .include(inc.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag_if_supported("-Wno-unused-parameter")
        .debug(false)
        .opt_level(2)
        .warnings(false)
        .compile("cxf_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// The C++ ABI of the torch we build against: from the venv's python when torch-sys asked it
/// (LIBTORCH_USE_PYTORCH), otherwise LIBTORCH_CXX11_ABI (torch-sys's own default is 1).
fn cxx11_abi() -> String {
    if let Some(v) = env_var_rerun("LIBTORCH_CXX11_ABI") {
        return v;
    }
    let python = if env_var_rerun("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
    let out = Command::new(python)
        .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "1".to_string(),
    }
}
