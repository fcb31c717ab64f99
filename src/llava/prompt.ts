/**
 * Prompts of the LLaVA recipe (docs/report-generation.md, "LLaVA mode"): how a report becomes a training example
 * (prompt ids without a loss, then report ids with one) and a prompt for decoding.
 *
 * - `plain` (stage 1, LLaVA's `conv_templates['plain']`): the image token, then the report, then EOS:
 *   `[BOS?]<image>` | `report [EOS]`. The prompt is encoded with the tokenizer's special tokens (a Llama tokenizer
 *   adds its BOS, Qwen and GPT-2 add none), the report without.
 * - `chat` (stage 2): the LM's own chat template (Jinja, rendered with @huggingface/jinja as transformers'
 *   `apply_chat_template` renders it) on one user turn `<image>\n{instruction}` (then `\nIndication: …` when the
 *   spec's `fields` ask for the record's indication and it has one); the prompt is the rendering with
 *   `add_generation_prompt`, the target is what the rendering of the whole conversation (the report as the assistant
 *   turn) adds after it — the report and the template's end of turn (e.g. `<|im_end|>\n`). Both are encoded without
 *   special tokens (the template writes them). Decoding stops at the LM's EOS ids and at the end-of-turn token.
 *
 * The loss is on the target ids only (labels −100 elsewhere). Reports longer than `maxReportTokens` are cut (the
 * end-of-report ids are kept).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { Template } from '@huggingface/jinja';

import { LLAVA_INSTRUCTION } from '../config/downstream.js';
import { CxformerError } from '../native/load.js';
import { readJsonObject } from './folder.js';
import { IGNORE_INDEX, type LmTokenizer } from './native.js';

/** The image placeholder (transformers' LLaVA convention). */
export const IMAGE_TOKEN = '<image>';
/** The instruction of the chat template's user turn (LLaVA-Rad's wording). */
export const DEFAULT_INSTRUCTION = LLAVA_INSTRUCTION;

export type PromptKind = 'plain' | 'chat';

/** What a run's prompts are made of; written to the model folder so that `generate` prompts the same way. */
export interface PromptSpec {
  kind: PromptKind;
  /** chat: the user turn after the image token. */
  instruction: string;
  /** chat: the Jinja template. */
  chatTemplate?: string;
  /** Special-token strings the template reads (`bos_token`, `eos_token`, …), from tokenizer_config.json. */
  specialTokens?: Record<string, string>;
  /** The most report tokens a training example keeps, end of report included. */
  maxReportTokens: number;
  /** chat: record fields added to the user turn when a record has them (RaDialog-style conditioning). @default [] */
  fields?: PromptField[];
}

/**
 * Record fields a chat prompt can carry: `indication` (MIMIC-CXR's INDICATION section) as "Indication: …", and
 * `classifier` (the findings a classification head predicts for the image, src/llava/classifier.ts) as "Predicted
 * findings: A, B." or "Predicted findings: none.".
 */
export type PromptField = 'indication' | 'classifier';
export const PROMPT_FIELDS: readonly PromptField[] = ['indication', 'classifier'];

/** What one image's prompt is made of besides the spec: its record's fields. */
export interface PromptContext {
  indication?: string;
  /** The classes the classifier predicts for the image (empty: none). */
  classifier?: readonly string[];
}

/** The chat prompt's user turn: the image token, the instruction, then the fields the spec asks for and the record has. */
export function userTurn(p: PromptSpec, ctx: PromptContext = {}): string {
  const lines = [IMAGE_TOKEN, p.instruction];
  if (p.fields?.includes('indication') && ctx.indication) lines.push(`Indication: ${ctx.indication}`);
  if (p.fields?.includes('classifier') && ctx.classifier) lines.push(`Predicted findings: ${ctx.classifier.length ? ctx.classifier.join(', ') : 'none'}.`);
  return lines.join('\n');
}

/** A report as training ids: the prompt (no loss) then the target. */
export interface EncodedExample {
  ids: number[];
  labels: number[];
}

/**
 * The chat template and special tokens of an LM folder (tokenizer_config.json, chat_template.jinja or .json), and the
 * file the template came from (for errors).
 */
export async function readChatTemplate(dir: string): Promise<{ template: string | null; source: string | null; specialTokens: Record<string, string> }> {
  const specialTokens: Record<string, string> = {};
  let template: string | null = null;
  let source: string | null = null;
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  if (existsSync(cfgFile)) {
    const cfg = await readJsonObject(cfgFile);
    for (const k of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
      const v = cfg[k];
      if (typeof v === 'string') specialTokens[k] = v;
      else if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') specialTokens[k] = (v as { content: string }).content;
    }
    const t = cfg.chat_template;
    if (typeof t === 'string') template = t;
    else if (Array.isArray(t)) {
      const named = (t as { name?: string; template?: string }[]).find((x) => x.name === 'default') ?? (t[0] as { template?: string } | undefined);
      if (typeof named?.template === 'string') template = named.template;
    }
    if (template !== null) source = cfgFile;
  }
  const jinja = path.join(dir, 'chat_template.jinja');
  if (template === null && existsSync(jinja)) [template, source] = [await readFile(jinja, 'utf8'), jinja];
  const json = path.join(dir, 'chat_template.json');
  if (template === null && existsSync(json)) {
    const v = await readJsonObject(json);
    if (typeof v.chat_template === 'string') [template, source] = [v.chat_template, json];
  }
  return { template, source, specialTokens };
}

/** Renders a chat template as transformers does (messages, add_generation_prompt, the special-token strings). */
export function renderChat(template: string, messages: readonly { role: string; content: string }[], addGenerationPrompt: boolean, specialTokens: Record<string, string> = {}): string {
  let t: Template;
  try {
    t = new Template(template);
  } catch (e) {
    throw new CxformerError('CXF_INPUT', `the chat template does not parse: ${(e as Error).message}`);
  }
  try {
    // @huggingface/jinja provides raise_exception (and strftime_now) as transformers does.
    return t.render({ messages, add_generation_prompt: addGenerationPrompt, ...specialTokens });
  } catch (e) {
    throw new CxformerError('CXF_INPUT', `the chat template failed: ${(e as Error).message}`);
  }
}

/** The prompt text and whether the tokenizer adds its special tokens to it. */
export function promptText(p: PromptSpec, ctx: PromptContext = {}): { text: string; addSpecialTokens: boolean } {
  if (p.kind === 'plain') return { text: IMAGE_TOKEN, addSpecialTokens: true };
  return { text: renderChat(chatTemplateOf(p), [{ role: 'user', content: userTurn(p, ctx) }], true, p.specialTokens), addSpecialTokens: false };
}

function chatTemplateOf(p: PromptSpec): string {
  if (!p.chatTemplate) throw new CxformerError('CXF_CONFIG', 'the chat prompt needs the LM\'s chat template (tokenizer_config.json "chat_template" or chat_template.jinja); use the plain prompt for an LM without one');
  return p.chatTemplate;
}

/**
 * The target text after the prompt for `report`: chat: what the whole conversation's rendering adds after the
 * prompt's; plain: the report itself (EOS is appended as an id).
 */
export function targetText(p: PromptSpec, report: string, ctx: PromptContext = {}): string {
  if (p.kind === 'plain') return report;
  const user = { role: 'user', content: userTurn(p, ctx) };
  const prompt = renderChat(chatTemplateOf(p), [user], true, p.specialTokens);
  const full = renderChat(chatTemplateOf(p), [user, { role: 'assistant', content: report }], false, p.specialTokens);
  if (!full.startsWith(prompt)) {
    throw new CxformerError('CXF_CONFIG', 'the chat template renders the conversation with the report differently from the prompt alone (the prompt is not a prefix of it), so the report tokens cannot be told apart; use the plain prompt with this LM');
  }
  return full.slice(prompt.length);
}

/** Encodes prompts and targets (see the module comment): one example per record (its report and prompt fields). */
export function encodeExamples(tok: LmTokenizer, p: PromptSpec, records: readonly (PromptContext & { report: string })[], eosId: number): EncodedExample[] {
  const prompts = encodePrompts(tok, p, records);
  const targets = tok.encode(records.map((r) => targetText(p, r.report, r)), false);
  // A cut report keeps its end: EOS, or the template's end of turn (its ids after the report text).
  const tail = p.kind === 'plain' ? 1 : endIds(tok, p).length;
  return targets.map((t, i) => {
    const prompt = prompts[i]!;
    let tgt = p.kind === 'plain' ? [...t, eosId] : t;
    if (tgt.length > p.maxReportTokens) {
      tgt = [...tgt.slice(0, p.maxReportTokens - tail), ...tgt.slice(tgt.length - tail)];
    }
    return { ids: [...prompt, ...tgt], labels: [...prompt.map(() => IGNORE_INDEX), ...tgt] };
  });
}

/** chat: the ids the template writes after the report (its end of turn). */
function endIds(tok: LmTokenizer, p: PromptSpec): number[] {
  const marker = 'x';
  const all = tok.encode([targetText(p, marker)], false)[0]!;
  const bare = tok.encode([marker], false)[0]!;
  return all.slice(bare.length);
}

/**
 * Ids that end a generated report besides the LM's EOS ids: chat: the first special token of the template's end
 * of turn (e.g. `<|im_end|>`); plain: none.
 */
export function stopIds(tok: LmTokenizer, p: PromptSpec): number[] {
  if (p.kind === 'plain') return [];
  const end = endIds(tok, p);
  const special = end.find((id) => {
    const s = tok.idToToken(id);
    return s !== null && /^<.*>$|^\[.*\]$/.test(s);
  });
  return special === undefined ? [] : [special];
}

/** The prompt ids of each image's context (records without fields share one prompt). */
export function encodePrompts(tok: LmTokenizer, p: PromptSpec, contexts: readonly PromptContext[]): number[][] {
  const { addSpecialTokens } = promptText(p);
  return tok.encode(contexts.map((c) => promptText(p, c).text), addSpecialTokens);
}

/** Rows left-padded with `pad` to one length: ids, attention mask (1 = real) and labels (−100 on the padding). */
export function leftPad(rows: readonly EncodedExample[], pad: number): { inputIds: Int32Array; attentionMask: Int32Array; labels: Int32Array; shape: [number, number] } {
  const T = Math.max(...rows.map((r) => r.ids.length));
  const B = rows.length;
  const inputIds = new Int32Array(B * T).fill(pad);
  const attentionMask = new Int32Array(B * T);
  const labels = new Int32Array(B * T).fill(IGNORE_INDEX);
  rows.forEach((r, i) => {
    const off = i * T + T - r.ids.length;
    inputIds.set(r.ids, off);
    labels.set(r.labels, off);
    attentionMask.fill(1, off, off + r.ids.length);
  });
  return { inputIds, attentionMask, labels, shape: [B, T] };
}
