// Preloaded into a CLI child process (node --require): on exit, reports on fd 2 whether LibTorch was mapped.
const { readFileSync } = require('node:fs');
process.on('exit', () => {
  const maps = readFileSync('/proc/self/maps', 'utf8');
  process.stderr.write(`\n[probe] libtorch_loaded=${maps.includes('libtorch_cpu.so')}\n`);
});
