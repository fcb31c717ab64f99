//! Build script of cxformer-core.
//!
//! * Emits an rpath to the LibTorch lib folder published by torch-sys (`DEP_TCH_LIBTORCH_LIB`) so that
//!   this crate's test and bench binaries find LibTorch without LD_LIBRARY_PATH (rpath link args are not
//!   propagated to dependents: crates/node's build.rs emits its own).
//! * Compiles `csrc/shim.cc`, the project's only C++ (LibTorch APIs that tch does not bind), against the
//!   same LibTorch headers, with the C++ ABI read from that torch.
//! * c10d: Gloo needs `-DUSE_C10D_GLOO` and gloo's headers, which the PyPI wheel lacks; they come from Debian's
//!   `libgloo-dev` (scripts/setup.sh) or `CXF_GLOO_INCLUDE`. Without them Gloo is compiled out (`CXF_WITH_GLOO`
//!   undefined: creating a process group reports how to fix it). NCCL (`CXF_WITH_NCCL`) is compiled in only with
//!   the `cuda` feature, a `libtorch_cuda.so`, `nccl.h` and the CUDA runtime headers (the wheel's nvidia-* packages).
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
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("csrc/shim.cc")
        .include(&inc)
        .include(inc.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"));
    // Gloo (CPU collectives).
    let gloo_dirs: Vec<PathBuf> = env_var_rerun("CXF_GLOO_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .chain([inc.clone(), PathBuf::from("/usr/include"), PathBuf::from("/usr/local/include")])
        .collect();
    match gloo_dirs.iter().find(|d| d.join("gloo/context.h").exists()) {
        Some(d) => {
            println!("cargo:rerun-if-changed={}", d.join("gloo/context.h").display());
            build.include(d).define("USE_C10D_GLOO", None).define("CXF_WITH_GLOO", None);
        }
        None => println!(
            "cargo:warning=gloo headers not found (apt-get install libgloo-dev, or set CXF_GLOO_INCLUDE): multi-process training is compiled out"
        ),
    }
    // NCCL (CUDA collectives): only in CUDA builds, with nccl.h and the CUDA headers at hand. The wheel's
    // nvidia/cu13/include lacks crt/host_config.h and nv/target (the toolkit's nvcc and CCCL parts): a CUDA toolkit
    // (/usr/local/cuda/include) or CXF_CUDA_INCLUDE (a PATH-style list of folders) must supply them.
    if env::var_os("CARGO_FEATURE_CUDA").is_some() && lib.join("libtorch_cuda.so").exists() {
        let site = torch_root.parent().map(|p| p.join("nvidia")).unwrap_or_default();
        let mut nccl = vec![site.join("nccl/include"), PathBuf::from("/usr/include")];
        if let Some(d) = env_var_rerun("CXF_NCCL_INCLUDE") {
            nccl.insert(0, PathBuf::from(d));
        }
        let mut cuda: Vec<PathBuf> = env_var_rerun("CXF_CUDA_INCLUDE").map(|v| env::split_paths(&v).collect()).unwrap_or_default();
        cuda.extend([PathBuf::from("/usr/local/cuda/include"), site.join("cu13/include")]);
        let cuda: Vec<PathBuf> = cuda.into_iter().filter(|d| d.is_dir()).collect();
        let has = |f: &str| cuda.iter().any(|d| d.join(f).exists());
        let nccl = nccl.into_iter().find(|d| d.join("nccl.h").exists());
        match nccl {
            Some(n) if has("cuda_runtime_api.h") && has("crt/host_config.h") && has("nv/target") => {
                build.include(n);
                for d in &cuda {
                    build.include(d);
                }
                build.define("USE_C10D_NCCL", None).define("CXF_WITH_NCCL", None);
            }
            _ => println!(
                "cargo:warning=nccl.h or the CUDA toolkit headers (cuda_runtime_api.h, crt/host_config.h, nv/target) not found: the NCCL backend is compiled out"
            ),
        }
    }
    build
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
