/**
 * cxformer: Vision Transformer foundation models for chest X-rays (CXformer / DINOv2 with registers) on a
 * Rust + LibTorch core. Importing this module does not load LibTorch; the first call that computes does.
 */
export { Backbone, loadBackbone, threadCount, toHfPreprocessorConfig, type EmbedOptions, type EmbedResult, type LoadBackboneOptions, type Tensor } from './backbone.js';
export {
  applyOverrides,
  ConfigError,
  fromHfConfig,
  numParams,
  presetConfig,
  PRESETS,
  toHfConfig,
  type PosInterp,
  type VitConfig,
} from './model/config.js';
export { detectLayout, inferConfig, locateWeights, resolveModel, type Layout, type ResolvedModel } from './model/weights.js';
export { CxformerError } from './native/load.js';
export { train, type TrainEvent, type TrainOptions, type TrainResult, type StepRecord } from './train/run.js';
export { Trainer, type TrainerBatch, type Crops } from './train/trainer.js';
export { exportRun } from './train/export.js';
export { resolveDistEnv, expandNodelist, parseTasksPerNode, rankDevice, type DistEnv } from './distributed/env.js';
export { joinProcessGroup, type ProcessGroup, type ProcessGroupOptions } from './distributed/group.js';
export { launch, type LaunchOptions, type LaunchResult } from './distributed/launch.js';
export * from './config/pretrain.js';
export { renderPhantom, writePhantoms } from './data/phantom.js';
export { synthDataset, FINDINGS, type SynthOptions, type SynthResult } from './data/synth.js';
export { loadImageDataset, shardIndices, type ImageDataset, type DatasetItem } from './data/manifest.js';
export { rleEncode, rleDecode } from './data/rle.js';
export { parseCsv } from './data/csv.js';
export { DataError } from './data/errors.js';
export * from './cache/index.js';
export * from './datasets/index.js';
export * from './eval/index.js';
export {
  labelReports,
  labelerFromSpec,
  phantomLabeler,
  rulesLabeler,
  importLabeler,
  parsePhantomReport,
  phantomFacts,
  phantomFactF1,
  CHEXBERT_14,
  CHEXBERT_5,
  PHANTOM_CLASSES,
  type Labeler,
  type LabelCell,
  type LabelRun,
} from './eval/labelers/index.js';
export { labelF1, type LabelF1Options, type LabelF1Result } from './eval/text/label-f1.js';
export { radgraphReward, radgraphPairReward, readRadGraphFile, parseRadGraphAnnotations, pairRadGraph, type RadGraphAnnotation, type RadGraphReward } from './eval/text/radgraph.js';
export {
  pycocoBleu,
  sacreBleu,
  sacreSentenceBleu,
  sacreBleuSignature,
  rougeScoreL,
  rougeScoreLCorpus,
  pycocoRougeL,
  pycocoRougeLCorpus,
  ciderD,
  r2genClean,
  r2genCleanIuXray,
  type SacreBleuOptions,
  type BleuScore,
} from './eval/text/index.js';
export { evaluateReports, type EvaluateReportsOptions, type ReportEvaluation, type ReportMetricResult } from './rrg/evaluate.js';
export { readReportPairs, type ReportPair } from './rrg/pairs.js';
export { PROTOCOLS, protocolMetrics, metricCard, type ProtocolName, type MetricSpec, type MetricCard } from './rrg/protocol.js';
export { writeReportEvaluation } from './rrg/write.js';
export { extractMemory, type Memory, type MemoryOptions } from './rrg/memory.js';
export { loadPhantomReports, loadReportRecords, reportSplitSummary, type ReportRecord } from './rrg/data.js';
export { finetuneReport, DECODER_PRESETS, type ReportTrainOptions, type ReportTrainResult } from './rrg/train.js';
export { loadReportGenerator, type ReportGenerator, type ReportStreamEvent } from './rrg/generate.js';
export { ReportModel, ReportTokenizer, ReportTrainer, type GenerateOptions, type RrgConfig, type RrgTrainConfig, type TokenizerSpec } from './rrg/native.js';
export { finetuneLlava, type LlavaRunOptions, type LlavaRunResult, type LlavaStage } from './llava/train.js';
export { decodeReports, isLlavaFolder, loadLlavaGenerator, LLAVA_MODEL_FILE, type LlavaModelJson } from './llava/generate.js';
export { exportLlavaRun } from './llava/export.js';
export { LlavaModel, LlavaTrainer, LmTokenizer, IGNORE_INDEX, type LlavaBase, type LlavaBatch, type LlavaPrompt, type LlavaTrainConfig, type LlavaStepRecord, type GenerationIds } from './llava/native.js';
export { DEFAULT_INSTRUCTION, IMAGE_TOKEN, encodeExamples, renderChat, readChatTemplate, type PromptSpec } from './llava/prompt.js';
export { fitLinearProbe, predictProbe } from './finetune/probe.js';
export { linearProbe, evaluateHead, loadHead, type LinearProbeOptions, type LinearProbeResult } from './finetune/classify.js';
export { fullFinetune, type FullFinetuneOptions, type FullFinetuneResult, type FullTrainConfig, type EpochRecord as FinetuneEpochRecord } from './finetune/full.js';
export { LABEL_TYPES, type LabelType } from './finetune/labels.js';
export { trainSegmentation, loadSegmenter, segLr, type SegTrainOptions, type SegTrainResult, type SegEpochRecord } from './segment/train.js';
export { Segmenter, type SegConfig, type SegStepRecord, type SegmenterOptions } from './segment/native.js';
export { evaluateSamples, predictSamples, diceReport, bootstrapDice, type SegEvaluation, type SegEvalOptions } from './segment/evaluate.js';
export { loadSegRecords, loadSample, loadSamples, classMap, classMapToRle, toOriginal, SEG_STRUCTURES, type SegSample, type MaskSource } from './segment/data.js';
export { augmentPair, normalizeBatch, type SegAugmentOptions } from './segment/augment.js';
export { overlayRgb, writeOverlayPng, writeMaskPng } from './segment/overlay.js';
export * from './image/index.js';
export * from './io/index.js';
export { autoRunReport, lineChartSvg, readRunFolder, renderRunReport, runReportEnabled, writeRunReport, type RunFolder, type RunKind, type RunReport, type RunReportOptions } from './report/index.js';
