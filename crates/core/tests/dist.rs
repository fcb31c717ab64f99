//! c10d process groups with two ranks as two threads on 127.0.0.1: collective values against hand-computed
//! results, the DDP helpers, and the failure modes (port in use, unreachable master, world-size mismatch,
//! duplicate rank, a peer that never joins, a peer that leaves or stalls mid-collective), each of which must
//! end in a clear error, not a hang.
use cxformer_core::Error;
use cxformer_core::dist::{BackendChoice, PgOptions, ProcessGroup, ReduceOp, has_gloo, has_nccl};
use cxformer_core::train::collective::{Collective, SingleProcess, all_reduce_mean_grads, broadcast_parameters};
use std::net::TcpListener;
use std::sync::Barrier;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn opts(rank: i64, world: i64, port: u16, timeout_ms: u64) -> PgOptions {
    PgOptions {
        rank,
        world,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        timeout: Duration::from_millis(timeout_ms),
        backend: BackendChoice::Auto,
        device: Device::Cpu,
    }
}

/// Runs `f(rank, group)` on `world` threads joined into one group; returns each rank's result.
fn with_ranks<T: Send>(world: i64, timeout_ms: u64, f: impl Fn(i64, &ProcessGroup) -> T + Sync) -> Vec<T> {
    let port = free_port();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..world)
            .map(|r| {
                let f = &f;
                s.spawn(move || {
                    let pg = ProcessGroup::new(&opts(r, world, port, timeout_ms)).unwrap_or_else(|e| panic!("rank {r}: {e}"));
                    f(r, &pg)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("rank thread panicked")).collect()
    })
}

fn values(t: &Tensor) -> Vec<f64> {
    t.reshape([-1]).to_kind(Kind::Double).iter::<f64>().unwrap().collect()
}

fn dist_msg(r: Result<impl Sized, Error>) -> String {
    match r {
        Ok(_) => panic!("expected a CXF_DIST error"),
        Err(e) => {
            assert_eq!(e.code(), "CXF_DIST", "{e}");
            e.to_string()
        }
    }
}

#[test]
fn gloo_is_compiled_in() {
    assert!(has_gloo(), "gloo headers were missing at build time (scripts/setup.sh installs libgloo-dev)");
}

#[test]
fn collectives_on_two_ranks() {
    let out = with_ranks(2, 20_000, |r, pg| {
        assert_eq!((pg.rank(), pg.world(), pg.backend()), (r, 2, "gloo"));
        let base = (r + 1) as f64; // rank 0 holds 1, rank 1 holds 2
        // sum and average
        let t = Tensor::from_slice(&[base, 10.0 * base]).to_kind(Kind::Float);
        pg.all_reduce(&t, ReduceOp::Sum).unwrap();
        let sum = values(&t);
        let t = Tensor::from_slice(&[base, 10.0 * base]).to_kind(Kind::Float);
        pg.all_reduce(&t, ReduceOp::Avg).unwrap();
        let avg = values(&t);
        // two async reductions in flight, waited in reverse order; int64 and float64 too
        let a = Tensor::from_slice(&[r + 1, 100 * (r + 1)]);
        let b = Tensor::from_slice(&[base * 0.5]);
        let wa = pg.all_reduce_async(&a, ReduceOp::Sum).unwrap();
        let wb = pg.all_reduce_async(&b, ReduceOp::Avg).unwrap();
        wb.wait().unwrap();
        wa.wait().unwrap();
        // a non-contiguous tensor goes through a staging copy and is written back
        let nc = Tensor::from_slice(&[base, 2.0 * base, 3.0 * base, 4.0 * base]).to_kind(Kind::Float).reshape([2, 2]).tr();
        assert!(!nc.is_contiguous());
        pg.all_reduce(&nc, ReduceOp::Sum).unwrap();
        // broadcast from rank 1
        let bc = Tensor::from_slice(&[base, -base, 7.0 * base]).to_kind(Kind::Float);
        pg.broadcast(&bc, 1).unwrap();
        // all_gather: rank order
        let g = pg.all_gather(&(Tensor::ones([2, 3], (Kind::Float, Device::Cpu)) * base)).unwrap();
        pg.barrier().unwrap();
        (sum, avg, values(&a), values(&b), values(&nc), values(&bc), g.iter().map(values).collect::<Vec<_>>())
    });
    for (sum, avg, a, b, nc, bc, g) in out {
        assert_eq!(sum, vec![3.0, 30.0]);
        assert_eq!(avg, vec![1.5, 15.0]);
        assert_eq!(a, vec![3.0, 300.0]);
        assert_eq!(b, vec![0.75]);
        // nc = [[1,3],[2,4]]·base summed over bases 1 and 2
        assert_eq!(nc, vec![3.0, 9.0, 6.0, 12.0]);
        assert_eq!(bc, vec![2.0, -2.0, 14.0]);
        assert_eq!(g, vec![vec![1.0; 6], vec![2.0; 6]]);
    }
}

/// One rank on the test device (CXF_TEST_DEVICE; scripts/gpu-check.sh sets cuda): NCCL there when compiled in,
/// else Gloo (staging CUDA tensors through host memory).
#[test]
fn single_rank_group_on_the_test_device() {
    let device = match std::env::var("CXF_TEST_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        Ok(d) if d.starts_with("cuda:") => Device::Cuda(d[5..].parse().unwrap()),
        _ => Device::Cpu,
    };
    let pg = ProcessGroup::new(&PgOptions { device, ..opts(0, 1, free_port(), 10_000) }).unwrap();
    let want = if device.is_cuda() && has_nccl() { "nccl" } else { "gloo" };
    assert_eq!(pg.backend(), want);
    let t = Tensor::from_slice(&[1.0f32, -2.0, 3.5]).to_device(device);
    pg.all_reduce(&t, ReduceOp::Sum).unwrap();
    pg.all_reduce(&t, ReduceOp::Avg).unwrap();
    pg.broadcast(&t, 0).unwrap();
    let g = pg.all_gather(&t).unwrap();
    pg.barrier().unwrap();
    assert_eq!(t.device(), device);
    assert_eq!(values(&t.to_device(Device::Cpu)), vec![1.0, -2.0, 3.5]);
    assert_eq!(g.len(), 1);
    assert_eq!(values(&g[0].to_device(Device::Cpu)), vec![1.0, -2.0, 3.5]);
}

#[test]
fn ddp_helpers_average_gradients_and_broadcast_parameters() {
    let out = with_ranks(2, 20_000, |r, pg| {
        let base = (r + 1) as f32;
        // Parameters differ per rank; after broadcast_parameters everyone holds rank 0's.
        let p1 = (Tensor::ones([3, 2], (Kind::Float, Device::Cpu)) * base as f64).set_requires_grad(true);
        let p2 = (Tensor::ones([5], (Kind::Float, Device::Cpu)) * (10.0 * base) as f64).set_requires_grad(true);
        let p3 = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true); // never gets a gradient
        let p4 = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true); // gets one on rank 0 only
        let all = [p1.shallow_clone(), p2.shallow_clone(), p3.shallow_clone(), p4.shallow_clone()];
        broadcast_parameters(pg, &all).unwrap();
        // Gradients: d/dp1 of sum(p1·c) = c with c = base, d/dp2 of sum(p2²) = 2·p2 = 20, d/dp4 of sum(4·p4) = 4.
        let mut loss = (&p1 * base as f64).sum(Kind::Float) + (&p2 * &p2).sum(Kind::Float);
        if r == 0 {
            loss = loss + (&p4 * 4.0).sum(Kind::Float);
        }
        loss.backward();
        all_reduce_mean_grads(pg, &all).unwrap();
        (values(&p1), values(&p2), values(&p1.grad()), values(&p2.grad()), p3.grad().defined(), values(&p4.grad()))
    });
    for (p1, p2, g1, g2, g3, g4) in out {
        assert_eq!(p1, vec![1.0; 6]);
        assert_eq!(p2, vec![10.0; 5]);
        assert_eq!(g1, vec![1.5; 6], "mean of 1 and 2");
        assert_eq!(g2, vec![20.0; 5]);
        assert!(!g3);
        assert_eq!(g4, vec![2.0; 3], "mean of 4 (rank 0) and a zero gradient (rank 1)");
    }
}

#[test]
fn single_process_collective_is_identity() {
    let sp = SingleProcess;
    let mut t = Tensor::from_slice(&[1.0f32, 2.0]);
    sp.all_reduce_sum(&mut t).unwrap();
    sp.all_reduce_mean(&mut t).unwrap();
    sp.broadcast(&mut t, 0).unwrap();
    assert_eq!(values(&t), vec![1.0, 2.0]);
    assert_eq!(sp.all_gather(&t).unwrap().len(), 1);
    assert!(sp.broadcast(&mut t, 1).is_err());
}

#[test]
fn port_in_use_is_named() {
    let holder = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let msg = dist_msg(ProcessGroup::new(&opts(0, 2, port, 2_000)));
    assert!(msg.contains(&format!("port {port} on 127.0.0.1 is already in use")), "{msg}");
}

#[test]
fn unreachable_master_times_out_with_its_address() {
    let port = free_port(); // nobody listens there
    let msg = dist_msg(ProcessGroup::new(&opts(1, 2, port, 1_000)));
    assert!(msg.contains(&format!("could not reach the master 127.0.0.1:{port} within 1 s")), "{msg}");
}

#[test]
fn workers_wait_for_a_master_that_starts_late() {
    let port = free_port();
    let sums = std::thread::scope(|s| {
        let late_master = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(1500));
            let pg = ProcessGroup::new(&opts(0, 2, port, 10_000)).unwrap();
            let t = Tensor::from_slice(&[1.0f32]);
            pg.all_reduce(&t, ReduceOp::Sum).unwrap();
            values(&t)
        });
        let worker = s.spawn(|| {
            let pg = ProcessGroup::new(&opts(1, 2, port, 10_000)).unwrap();
            let t = Tensor::from_slice(&[2.0f32]);
            pg.all_reduce(&t, ReduceOp::Sum).unwrap();
            values(&t)
        });
        [late_master.join().unwrap(), worker.join().unwrap()]
    });
    assert_eq!(sums, [vec![3.0], vec![3.0]]);
}

#[test]
fn invalid_ranks_are_refused() {
    let msg = dist_msg(ProcessGroup::new(&opts(2, 2, free_port(), 1_000)));
    assert!(msg.contains("rank 2 is outside [0, worldSize 2)"), "{msg}");
    let msg = dist_msg(ProcessGroup::new(&PgOptions { backend: BackendChoice::Nccl, ..opts(0, 1, free_port(), 1_000) }));
    assert!(msg.contains("NCCL backend needs a CUDA device"), "{msg}");
    // On a machine without CUDA (or a build without NCCL) asking for NCCL on a CUDA device is a clear error.
    if !(has_nccl() && tch::Cuda::is_available()) {
        let o = PgOptions { backend: BackendChoice::Nccl, device: Device::Cuda(0), ..opts(0, 1, free_port(), 1_000) };
        let msg = dist_msg(ProcessGroup::new(&o));
        assert!(msg.contains("not compiled into this build") || msg.contains("no CUDA device is available"), "{msg}");
    }
}

#[test]
fn world_size_mismatch_is_reported_by_both_ranks() {
    let port = free_port();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ProcessGroup::new(&opts(0, 2, port, 5_000)).map(|_| ()));
        let b = s.spawn(|| ProcessGroup::new(&opts(1, 3, port, 5_000)).map(|_| ()));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (a, b) = (dist_msg(a), dist_msg(b));
    assert!(a.contains("world-size mismatch: rank 0 has worldSize 2 but rank 1 has worldSize 3 (this is rank 0)"), "{a}");
    assert!(b.contains("world-size mismatch: rank 1 has worldSize 3 but rank 0 has worldSize 2 (this is rank 1)"), "{b}");
}

#[test]
fn duplicate_rank_is_refused() {
    let port = free_port();
    // Rank 0 and a first rank 1 wait for rank 2 (world 3) while a second rank 1 claims the same rank.
    let results = std::thread::scope(|s| {
        let h: Vec<_> = [(0, 3), (1, 3), (1, 3)]
            .into_iter()
            .enumerate()
            .map(|(i, (r, w))| {
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(300 * i as u64));
                    ProcessGroup::new(&opts(r, w, port, 3_000)).map(|_| ())
                })
            })
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    let msgs: Vec<String> = results.into_iter().map(dist_msg).collect();
    assert!(msgs[2].contains("rank 1 joined 127.0.0.1:") && msgs[2].contains("twice"), "{}", msgs[2]);
    // The others time out naming the rank that never came (rank 1 learns it from rank 0).
    assert!(msgs[0].contains("waiting for rank(s) 2 of worldSize 3"), "{}", msgs[0]);
    assert!(msgs[1].contains("waiting for rank(s) 2 of worldSize 3") && msgs[1].contains("reported by rank 0"), "{}", msgs[1]);
}

#[test]
fn rank_beyond_rank_0s_world_is_refused() {
    // Rank 0 and rank 1 agree on worldSize 2; a third process believes in worldSize 3.
    let port = free_port();
    let r = std::thread::scope(|s| {
        let h: Vec<_> = [(0, 2), (1, 2), (2, 3)]
            .into_iter()
            .map(|(r, w)| s.spawn(move || ProcessGroup::new(&opts(r, w, port, 5_000)).map(|pg| pg.world())))
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    assert_eq!(r[0].as_ref().ok(), Some(&2));
    assert_eq!(r[1].as_ref().ok(), Some(&2));
    let m = dist_msg(r.into_iter().nth(2).unwrap());
    assert!(m.contains("world-size mismatch: rank 2 has worldSize 3 but rank 0 has worldSize 2"), "{m}");
}

#[test]
fn peer_that_never_joins_times_out() {
    let msg = dist_msg(ProcessGroup::new(&opts(0, 2, free_port(), 1_500)));
    assert!(msg.contains("timed out after 1.5 s waiting for rank(s) 1 of worldSize 2"), "{msg}");
}

#[test]
fn peer_leaving_mid_training_fails_the_collective_instead_of_hanging() {
    let port = free_port();
    let joined = Barrier::new(2);
    let (r0, _) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            let pg = ProcessGroup::new(&opts(0, 2, port, 3_000)).unwrap();
            joined.wait();
            // rank 1 records an error and exits without taking part
            std::thread::sleep(Duration::from_millis(500));
            let t = Tensor::ones([4], (Kind::Float, Device::Cpu));
            pg.all_reduce(&t, ReduceOp::Sum)
        });
        let b = s.spawn(|| {
            let pg = ProcessGroup::new(&opts(1, 2, port, 3_000)).unwrap();
            pg.report_error("step 7: out of memory");
            joined.wait();
            pg.destroy();
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let msg = dist_msg(r0);
    assert!(msg.starts_with("rank 0: all_reduce(sum, 4 values) failed (timeout 3 s)"), "{msg}");
    assert!(msg.contains("rank 1 reported: step 7: out of memory"), "{msg}");
}

#[test]
fn stalled_peer_times_out_the_collective() {
    let port = free_port();
    let done = Barrier::new(2);
    let (r0, r1) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            let pg = ProcessGroup::new(&opts(0, 2, port, 1_000)).unwrap();
            let r = pg.barrier().and_then(|_| pg.all_reduce(&Tensor::ones([3], (Kind::Float, Device::Cpu)), ReduceOp::Avg));
            done.wait();
            r
        });
        let b = s.spawn(|| {
            let pg = ProcessGroup::new(&opts(1, 2, port, 1_000)).unwrap();
            let r = pg.barrier();
            // never enters the all_reduce; stays alive until rank 0 has given up
            done.wait();
            r
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    r1.unwrap();
    let msg = dist_msg(r0);
    assert!(msg.contains("all_reduce(avg, 3 values) failed (timeout 1 s)"), "{msg}");
    assert!(msg.to_lowercase().contains("timed out") || msg.contains("no completion within the timeout"), "{msg}");
}

#[test]
fn destroyed_group_refuses_work() {
    let out = with_ranks(2, 5_000, |_, pg| {
        pg.barrier().unwrap();
        pg.destroy();
        pg.destroy(); // idempotent
        dist_msg(pg.barrier())
    });
    for m in out {
        assert!(m.contains("barrier: the process group was destroyed"), "{m}");
    }
}
