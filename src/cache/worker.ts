/**
 * Worker-thread entry of `prepare` (compiled to dist/cache/worker.js; see pool.ts for how it is found).
 * Receives {@link WorkerTask}s, answers {@link WorkerReply}s, transferring the pixel buffer.
 */
import { parentPort } from 'node:worker_threads';

import { type ConvertSettings, processFile, type ItemOutcome } from './convert.js';

/** main → worker */
export interface WorkerTask {
  seq: number;
  path: string;
  settings: ConvertSettings;
}

/** worker → main: the outcome, or `fatal` for an unexpected error (a bug, not a bad file). */
export type WorkerReply = { seq: number; outcome: ItemOutcome } | { seq: number; fatal: string };

const port = parentPort;
if (port) {
  port.on('message', (task: WorkerTask) => {
    processFile(task.path, task.settings).then(
      (outcome) => {
        if (!outcome.ok) {
          port.postMessage({ seq: task.seq, outcome } satisfies WorkerReply);
          return;
        }
        // Transfer the pixels; copy first if the view does not own its whole buffer.
        let bytes = outcome.bytes;
        if (bytes.byteOffset !== 0 || bytes.byteLength !== bytes.buffer.byteLength) bytes = bytes.slice();
        const reply: WorkerReply = { seq: task.seq, outcome: { ...outcome, bytes } };
        port.postMessage(reply, [bytes.buffer as ArrayBuffer]);
      },
      (e: unknown) => {
        port.postMessage({ seq: task.seq, fatal: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies WorkerReply);
      },
    );
  });
}
