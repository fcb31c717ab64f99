//! Vit::forward_rows (the SSL step's backbone call: the last block and the final norm on the rows the heads read)
//! against the full forward. Its own test binary: the stochastic-depth draws come from LibTorch's process-global
//! generator, which no other test may draw from between the two seeded forwards.
mod common;
use common::*;
use cxformer_core::{Backbone, ForwardOptions};
use tch::{Device, Kind, Tensor};

#[test]
fn forward_rows_equals_the_full_forward_at_those_rows() {
    // Registers, masks, stochastic depth in training (the same draws), and gradients: the rows the SSL heads read
    // (CLS tokens, masked patches) computed with the last block on those rows only equal the full forward's.
    let mut cfg = small_swiglu();
    cfg.drop_path_rate = 0.3;
    let model = Backbone::random(&cfg, Device::Cpu, 5).unwrap();
    let x = Tensor::randn([6, 3, 28, 28], (Kind::Float, Device::Cpu));
    let masks = Tensor::rand([6, 4], (Kind::Float, Device::Cpu)).lt(0.5);
    let t = 1 + cfg.num_register_tokens + 4;
    let rows = Tensor::from_slice(&[0i64, t, 5 * t, t + 1 + cfg.num_register_tokens, 4 * t + t - 1]);
    for train in [false, true] {
        let opts = ForwardOptions { masks: Some(masks.shallow_clone()), train, ..Default::default() };
        tch::manual_seed(11);
        let full = model.vit.forward(&x, &opts).unwrap().last_hidden_state;
        let full = full.reshape([6 * t, cfg.embed_dim]).index_select(0, &rows);
        tch::manual_seed(11);
        let part = model.vit.forward_rows(&x, Some(&masks), train, &rows).unwrap();
        assert_eq!(part.size(), [5, cfg.embed_dim]);
        assert!(max_abs_diff(&full, &part) < 1e-5, "train={train}: {}", max_abs_diff(&full, &part));
        // The same gradients reach the parameters.
        let w = Tensor::randn([5, cfg.embed_dim], (Kind::Float, Device::Cpu));
        let grads = |y: &Tensor| {
            let ps: Vec<Tensor> = model.vs.trainable_variables();
            Tensor::run_backward(&[(y * &w).sum(Kind::Float)], &ps, false, false)
        };
        for (a, b) in grads(&full).iter().zip(grads(&part).iter()) {
            assert!(max_abs_diff(a, b) < 1e-5 * (1.0 + a.abs().max().double_value(&[])));
        }
    }
}

