/** Evaluation: classification metrics (scikit-learn conventions), bootstrap CIs, Dice, plots and reports. */
export * from './bootstrap.js';
export * from './dice.js';
export * from './metrics.js';
export * from './plots.js';
export * from './report.js';
export { pairwiseSum, percentile, percentileSorted } from './stats.js';
export { knnScores, type KnnOptions } from './knn.js';
