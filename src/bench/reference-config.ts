/** The side-by-side reference configuration (BENCHMARKS.md, "Side by side with the official DINOv2 step"). */

/**
 * The overrides that make `train()` run the side-by-side reference configuration (the official timer's
 * ssl_default_config.yaml values where configs/pretrain/default.yaml, CXformer's recipe, differs). Schedules are
 * constant over the run, as the official timer holds them.
 */
export function referenceConfiguration(B: number): string[] {
  const lr = 0.004 * Math.sqrt(B / 1024);
  return [
    'model.arch=vit_small', 'model.patch_size=14', 'model.num_register_tokens=4', 'model.layerscale_init=1.0e-5',
    'model.drop_path_rate=0.0', 'model.drop_path_uniform=true', 'model.qkv_bias=true', 'model.proj_bias=true',
    'model.ffn_bias=true', 'model.img_size=null', 'model.interpolation.offset=0.1', 'model.interpolation.antialias=false',
    'dino.loss_weight=1.0', 'dino.head_hidden_dim=2048', 'dino.head_nlayers=3', 'dino.koleo_loss_weight=0.1',
    'ibot.loss_weight=1.0', 'ibot.mask_sample_probability=0.5', 'ibot.mask_ratio_min_max=[0.1,0.5]',
    'ibot.max_mask_patches=null', 'train.centering=centering', 'train.center_momentum=0.9', 'train.student_temp=0.1',
    'optim.base_lr=0.004', 'optim.scaling_rule=sqrt_wrt_1024', `optim.min_lr=${lr}`,
    'optim.weight_decay=0.04', 'optim.weight_decay_end=0.04', 'optim.layerwise_decay=0.9',
    'optim.patch_embed_lr_mult=0.2', 'optim.clip_grad=3.0', 'optim.freeze_last_layer_epochs=0',
    'optim.adamw_betas=[0.9,0.999]', 'optim.adamw_eps=1.0e-8', 'optim.accumulate_grad_batches=1',
    'teacher.momentum_teacher=0.992', 'teacher.final_momentum_teacher=0.992',
    'teacher.warmup_teacher_temp=0.04', 'teacher.teacher_temp=0.04', 'teacher.warmup_teacher_temp_epochs=0',
    'crops.global_affine=false', 'data.equalize=false',
    'crops.global_crops_scale=[0.32,1.0]', 'crops.local_crops_scale=[0.05,0.32]',
  ];
}
