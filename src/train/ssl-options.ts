/**
 * What the native SSL trainer receives, from the resolved pretraining config: the model and loss configuration
 * (docs/recipe.md §3), the per-iteration schedules (§3.9) and the backbone to continue from (§1). Shared by the
 * pretraining loop (src/train/run.ts) and the library's Trainer (src/train/trainer.ts).
 */
import { buildSchedules, type Schedules } from '../augment/schedule.js';
import type { PretrainConfig, PretrainDerived } from '../config/pretrain.js';
import type { VitConfig } from '../model/config.js';
import { resolveModel } from '../model/weights.js';

/** The native SSL configuration from the resolved YAML config. */
export function sslConfig(c: PretrainConfig, d: PretrainDerived, vit: VitConfig): Record<string, unknown> {
  const head = (k: 'dino' | 'ibot') => ({
    in_dim: vit.embed_dim,
    out_dim: c[k].head_n_prototypes,
    hidden_dim: c[k].head_hidden_dim,
    bottleneck_dim: c[k].head_bottleneck_dim,
    nlayers: c[k].head_nlayers,
  });
  return {
    model: vit,
    dino_head: head('dino'),
    ibot_head: c.ibot.separate_head ? head('ibot') : null,
    dino_loss_weight: c.dino.loss_weight,
    ibot_loss_weight: c.ibot.loss_weight,
    koleo_loss_weight: c.dino.koleo_loss_weight,
    centering: c.train.centering,
    center_momentum: c.train.center_momentum,
    student_temp: c.train.student_temp,
    // DINOv2's fixed count (dinov2/loss/dino_clstoken_loss.py, sinkhorn_knopp_teacher n_iterations=3).
    sinkhorn_iterations: 3,
    n_global_crops: d.n_global_crops,
    n_local_crops: c.crops.local_crops_number,
    clip_grad: c.optim.clip_grad,
    layerwise_decay: c.optim.layerwise_decay,
    patch_embed_lr_mult: c.optim.patch_embed_lr_mult,
    adamw_betas: c.optim.adamw_betas,
    adamw_eps: c.optim.adamw_eps,
    precision: c.compute.precision === 'bf16' ? 'bf16' : 'f32',
  };
}

/** The per-iteration schedules of a run (lr and min lr after the scaling rule and accumulation). */
export function runSchedules(c: PretrainConfig, d: PretrainDerived): Schedules {
  return buildSchedules({
    epochs: c.optim.epochs,
    epochLength: c.train.OFFICIAL_EPOCH_LENGTH,
    baseLr: d.lr,
    minLr: d.min_lr,
    warmupEpochs: c.optim.warmup_epochs,
    weightDecay: c.optim.weight_decay,
    weightDecayEnd: c.optim.weight_decay_end,
    momentumTeacher: c.teacher.momentum_teacher,
    finalMomentumTeacher: c.teacher.final_momentum_teacher,
    warmupTeacherTemp: c.teacher.warmup_teacher_temp,
    teacherTemp: c.teacher.teacher_temp,
    warmupTeacherTempEpochs: c.teacher.warmup_teacher_temp_epochs,
    freezeLastLayerEpochs: c.optim.freeze_last_layer_epochs,
  });
}

/** Backbone architecture: from init.weights when continuing (their config wins), else from the config. */
export async function backboneConfig(c: PretrainConfig, d: PretrainDerived): Promise<{ vit: VitConfig; initFile: string | null }> {
  if (!c.init.weights) return { vit: d.vit, initFile: null };
  const r = await resolveModel({ weights: c.init.weights });
  // Training behaviour comes from the run's config; the structure from the weights.
  const vit: VitConfig = {
    ...r.config,
    drop_path_rate: c.model.drop_path_rate,
    drop_path_uniform: c.model.drop_path_uniform,
    interpolation: { ...c.model.interpolation },
  };
  return { vit, initFile: r.weights?.file ?? null };
}

