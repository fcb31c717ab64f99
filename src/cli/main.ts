#!/usr/bin/env node
/**
 * cxformer CLI entry: parse (no LibTorch), then load only the chosen command's module.
 * Exit codes: 0 ok, 1 runtime failure, 2 bad arguments, 130 interrupted.
 */
import { hideBin } from 'yargs/helpers';
import { buildParser, type CommandName } from './parser.js';

/**
 * A reader that went away (`cxformer --help | head -1`): stop quietly, as `cat` does, rather than die on an
 * unhandled EPIPE 'error' event with a stack. The exit status is the one already set (0 when none): the reader
 * got what it asked for. Run folder locks are released by their 'exit' handler.
 */
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

async function main(): Promise<number> {
  const args = hideBin(process.argv);
  let usageError: string | undefined;
  const parser = buildParser(args).fail((msg, err) => {
    if (usageError) return; // report the first problem only
    usageError = err?.message ?? msg;
    if (!usageError) return;
    process.stderr.write(`error: ${usageError}\nRun 'cxformer --help' or 'cxformer <command> --help' for usage.\n`);
  });
  const argv = (await parser.parseAsync()) as Record<string, unknown> & { _: (string | number)[]; help?: boolean };
  if (usageError) return 2;
  if (argv.help) return 0;
  const cmd = String(argv._[0]) as CommandName;
  // A rank of `cxformer launch` stops when its launcher dies.
  if (process.env.CXFORMER_LAUNCHER_PID) (await import('../distributed/launch.js')).exitWithLauncher();
  try {
    // `train` and every `finetune` (full, linear and segmentation) run data parallel when started as several ranks.
    switch (cmd) {
      case 'train':
        return await (await import('./commands/train.js')).run(argv);
      case 'finetune':
        return await (await import('./commands/finetune.js')).run(argv);
      case 'generate':
        return await (await import('./commands/generate.js')).run(argv);
      case 'evaluate':
        return await (await import('./commands/finetune.js')).evaluate(argv);
      case 'launch':
        return await (await import('./commands/launch.js')).run(argv);
      case 'prepare':
        return await (await import('./commands/prepare.js')).run(argv);
      case 'synth':
        return await (await import('./commands/synth.js')).run(argv);
      case 'embed':
        return await (await import('./commands/embed.js')).run(argv);
      case 'info':
        return await (await import('./commands/info.js')).run(argv);
      case 'export':
        return await (await import('./commands/export.js')).run(argv);
      case 'phantom':
        return await (await import('./commands/phantom.js')).run(argv);
      case 'report':
        return await (await import('./commands/report.js')).run(argv);
      case 'label':
        return await (await import('./commands/label.js')).run(argv);
      default:
        process.stderr.write(`error: unknown command '${cmd}'\n`);
        return 2;
    }
  } catch (e) {
    const err = e as Error & { code?: string };
    // An output folder that cannot be created or written, an input that is missing: the path and the cause, exit 2.
    const fsMessage = (await import('./fs-errors.js')).describeFsError(e);
    process.stderr.write(`cxformer ${cmd}: ${fsMessage ?? err.message}\n`);
    if (process.env.CXFORMER_DEBUG) process.stderr.write(`${err.stack}\n`);
    if (fsMessage !== undefined) return 2;
    // Configuration and input errors are the user's to fix: exit 2; anything else 1.
    return err.code && /^(CXF_CONFIG|CXF_ARG|CXF_SAFETENSORS|CXF_WEIGHTS|CXF_IMAGE|CXF_INPUT|CXF_DATA)$/.test(err.code) ? 2 : 1;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`cxformer: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
