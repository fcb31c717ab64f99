/**
 * Text-generation metrics for radiology report generation, reproducing the reference Python packages to the last
 * bit or nearly: pycocoevalcap 1.2 BLEU / ROUGE-L / CIDEr-D, sacrebleu 2.6.0 BLEU (13a, none, intl tokenizers),
 * rouge-score 0.1.2 ROUGE-L (with nltk's Porter stemmer), and R2Gen's report cleaners. Dependency-free; no native
 * code.
 */
export { pycocoBleu, pycocoBleuStats, pycocoBleuFromStats, sacreBleu, sacreSentenceBleu, sacreBleuStats, sacreBleuSignature, computeBleu } from './bleu.js';
export type { PycocoBleuResult, SacreBleuOptions, BleuScore, SmoothMethod } from './bleu.js';
export { ciderD } from './cider.js';
export { r2genClean, r2genCleanIuXray } from './clean.js';
export { porterStem } from './porter.js';
export { rougeScoreL, rougeScoreLMulti, rougeScoreLCorpus, rougeScoreTokens, pycocoRougeL, pycocoRougeLCorpus, lcsLength } from './rouge.js';
export type { PrfScore } from './rouge.js';
export { tokenize13a, tokenizeIntl, tokenizeRegexp, sacreTokenizer, SACRE_TOKENIZERS } from './tok13a.js';
export type { SacreTokenizer } from './tok13a.js';
export { NgramTable } from './ngram.js';
export { isPySpace, pySplit, pyRstrip, pyStrip, pyNormalizeSpace } from './pystr.js';
