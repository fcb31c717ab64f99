#!/usr/bin/env python3
# Used by src/bench/text.ts (TEXT_REF_PY): times pycocoevalcap 1.2, sacrebleu 2.6.0 and rouge-score 0.1.2 on the same pairs.
"""Times the Python reference packages on the pairs written by `BENCH_TEXT_DUMP=... node dist/bench/text.js`."""
import json, sys, time, statistics, io, contextlib, platform
import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.cider.cider import Cider
import sacrebleu
from rouge_score import rouge_scorer

pairs = json.load(open(sys.argv[1]))
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
hyps = [p['hyp'] for p in pairs]
refs = [p['refs'] for p in pairs]
gts = {i: r for i, r in enumerate(refs)}
res = {i: [h] for i, h in enumerate(hyps)}
scorer = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True)

def bleu():
    with contextlib.redirect_stdout(io.StringIO()):
        return Bleu(4).compute_score(gts, res, verbose=0)[0][3]
def sacre():
    return sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs]]).score
def rouge():
    return Rouge().compute_score(gts, res)[0]
def rscore():
    s = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True)  # fresh scorer per run, as per evaluation
    return float(np.mean([s.score_multi(r, h)['rougeL'].fmeasure for h, r in zip(hyps, refs)]))
def cider():
    return Cider().compute_score(gts, res)[0]

tasks = [('BLEU pycocoevalcap Bleu(4)', bleu), ('BLEU sacrebleu corpus_bleu (13a)', sacre), ('ROUGE-L pycocoevalcap Rouge', rouge),
         ('ROUGE-L rouge-score (stemmer)', rscore), ('CIDEr-D pycocoevalcap Cider', cider)]
print(platform.python_version(), len(pairs), 'pairs, median of', runs)
total = 0; scores = {}
for name, f in tasks:
    times = []
    for _ in range(runs):
        t = time.perf_counter(); v = f(); times.append(time.perf_counter() - t)
    m = statistics.median(times); total += m; scores[name] = v
    print(f'| {name} | {m:.4f} |', flush=True)
print(f'| all five | {total:.4f} |')
print(json.dumps(scores))
