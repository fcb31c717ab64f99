/**
 * The LLaVA recipe's prompts (src/llava/prompt.ts) without LibTorch: chat templates rendered as transformers'
 * `apply_chat_template` renders them (ChatML as Qwen2.5-Instruct ships it, and a Llama-3-style template reading
 * `bos_token`), the target of a report being exactly what the whole conversation adds after the prompt, the
 * indication field, the template files of an LM folder, left padding, and the refusals.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { IGNORE_INDEX } from '../../src/llava/native.js';
import { DEFAULT_INSTRUCTION, IMAGE_TOKEN, leftPad, type PromptSpec, promptText, readChatTemplate, renderChat, targetText, userTurn } from '../../src/llava/prompt.js';

/** Qwen2.5-Instruct's template, shortened to its no-tools branch (the system default kept). */
const CHATML =
  "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}" +
  "{%- for message in messages %}{%- if message.role != 'system' %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/** Llama-3.x-Instruct's shape: BOS from the special tokens, headers, <|eot_id|>. */
const LLAMA3 =
  "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";

const spec = (chatTemplate: string, specialTokens: Record<string, string> = {}): PromptSpec => ({ kind: 'chat', instruction: DEFAULT_INSTRUCTION, chatTemplate, specialTokens, maxReportTokens: 64 });

describe('LLaVA prompts', () => {
  it('ChatML: the prompt ends with the assistant header; the target is the report and <|im_end|>\\n', () => {
    const p = promptText(spec(CHATML));
    expect(p).toEqual({
      text: `<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n${IMAGE_TOKEN}\n${DEFAULT_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n`,
      addSpecialTokens: false,
    });
    expect(targetText(spec(CHATML), 'The heart is normal.')).toBe('The heart is normal.<|im_end|>\n');
  });

  it('a Llama-3-style template reads bos_token and trims the turn', () => {
    const s = spec(LLAMA3, { bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' });
    expect(promptText(s).text).toBe(`<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n${IMAGE_TOKEN}\n${DEFAULT_INSTRUCTION}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`);
    expect(targetText(s, ' No effusion. ')).toBe('No effusion.<|eot_id|>');
  });

  it('the indication field: added to the user turn when the spec asks for it and the record has one', () => {
    const s = { ...spec(CHATML), fields: ['indication' as const] };
    expect(userTurn(s, { indication: 'Cough and fever.' })).toBe(`${IMAGE_TOKEN}\n${DEFAULT_INSTRUCTION}\nIndication: Cough and fever.`);
    expect(userTurn(s, {})).toBe(`${IMAGE_TOKEN}\n${DEFAULT_INSTRUCTION}`);
    expect(userTurn(spec(CHATML), { indication: 'Cough and fever.' })).toBe(`${IMAGE_TOKEN}\n${DEFAULT_INSTRUCTION}`);
    expect(promptText(s, { indication: 'Cough.' }).text).toContain(`<|im_start|>user\n${IMAGE_TOKEN}\n${DEFAULT_INSTRUCTION}\nIndication: Cough.<|im_end|>\n<|im_start|>assistant\n`);
    expect(targetText(s, 'Clear lungs.', { indication: 'Cough.' })).toBe('Clear lungs.<|im_end|>\n');
  });

  it('plain: the image token alone, with the special tokens; the target is the report itself', () => {
    const s: PromptSpec = { kind: 'plain', instruction: '', maxReportTokens: 8 };
    expect(promptText(s)).toEqual({ text: IMAGE_TOKEN, addSpecialTokens: true });
    expect(targetText(s, 'Clear lungs.')).toBe('Clear lungs.');
  });

  it('refuses a chat prompt without a template, a template that does not parse, and one whose prompt is no prefix', () => {
    expect(() => promptText({ kind: 'chat', instruction: 'x', maxReportTokens: 8 })).toThrow(/needs the LM's chat template .* plain prompt/);
    expect(() => renderChat('{% for m in messages %}', [], true)).toThrow(/chat template does not parse/);
    // A template that writes the generation prompt differently from the assistant's turn.
    const odd = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}";
    expect(() => targetText(spec(odd), 'r')).toThrow(/not a prefix/);
    expect(() => renderChat("{{ raise_exception('no system role') }}", [], false)).toThrow(/chat template failed: .*no system role/);
  });

  it('reads the template and special tokens of an LM folder (tokenizer_config.json, then chat_template.jinja)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cxf-chat-'));
    expect(await readChatTemplate(dir)).toEqual({ template: null, source: null, specialTokens: {} });
    writeFileSync(path.join(dir, 'chat_template.jinja'), LLAMA3);
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: { content: '<s>', special: true }, eos_token: '</s>', pad_token: null }));
    expect(await readChatTemplate(dir)).toEqual({ template: LLAMA3, source: path.join(dir, 'chat_template.jinja'), specialTokens: { bos_token: '<s>', eos_token: '</s>' } });
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: CHATML }] }));
    expect(await readChatTemplate(dir)).toMatchObject({ template: CHATML, source: path.join(dir, 'tokenizer_config.json') });
    writeFileSync(path.join(dir, 'tokenizer_config.json'), '{bad');
    await expect(readChatTemplate(dir)).rejects.toThrow(/tokenizer_config.json: not valid JSON/);
  });

  it('left-pads ids, mask and labels', () => {
    const b = leftPad([{ ids: [5, 6, 7], labels: [IGNORE_INDEX, 6, 7] }, { ids: [9], labels: [9] }], 0);
    expect(b.shape).toEqual([2, 3]);
    expect([...b.inputIds]).toEqual([5, 6, 7, 0, 0, 9]);
    expect([...b.attentionMask]).toEqual([1, 1, 1, 0, 0, 1]);
    expect([...b.labels]).toEqual([IGNORE_INDEX, 6, 7, IGNORE_INDEX, IGNORE_INDEX, 9]);
  });
});
