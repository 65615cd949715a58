// run.mjs — runs the browser tests (tests/browser/test_*.mjs, or the files named on the
// command line) one file after another with node's built-in test runner, then says where the
// screenshots are. `make browser` runs it; so can you:
//
//   RAGD_BIN=$PWD/build/ragd node tests/browser/run.mjs [tests/browser/test_ask.mjs ...]
//
// One file at a time: each starts its own servers and browser, and the machine that runs
// `make test` may have two cores. The screenshots of the previous run are removed first.
// Exit status: 0 when every file passed, 1 otherwise, 2 when something needed is missing.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const SHOTS_DIR = path.resolve(process.env.RAGD_SCREENSHOTS || path.join(ROOT, 'build', 'screenshots'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function missing(message) {
  process.stderr.write(`browser tests: ${message}\n`);
  process.exit(2);
}

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 18 || (major === 18 && minor < 19)) missing(`node ${process.versions.node} is too old: 18.19 or later`);
if (!fs.existsSync(path.join(HERE, 'node_modules', 'playwright-core', 'package.json'))) {
  missing('playwright-core is not installed: make browser-deps (npm ci in tests/browser)');
}
if (!fs.existsSync(CHROMIUM)) missing(`${CHROMIUM} not found: scripts/deps.sh browser installs Debian's chromium (or set CHROMIUM)`);

const files = process.argv.length > 2
  ? process.argv.slice(2).map((f) => path.resolve(f))
  : fs.readdirSync(HERE).filter((f) => /^test_.*\.mjs$/.test(f)).sort().map((f) => path.join(HERE, f));

fs.mkdirSync(SHOTS_DIR, { recursive: true });
for (const f of fs.readdirSync(SHOTS_DIR)) if (f.endsWith('.png')) fs.rmSync(path.join(SHOTS_DIR, f));

const failed = [];
const started = Date.now();
for (const file of files) {
  const name = path.relative(ROOT, file);
  process.stdout.write(`== ${name}\n`);
  const result = spawnSync(process.execPath, ['--test', '--test-reporter=spec', file], {
    stdio: 'inherit', env: { ...process.env, RAGD_SCREENSHOTS: SHOTS_DIR },
  });
  if (result.status !== 0) failed.push(name);
}
const seconds = ((Date.now() - started) / 1000).toFixed(0);
const shots = fs.readdirSync(SHOTS_DIR).filter((f) => f.endsWith('.png')).length;
process.stdout.write(`browser tests: ${files.length - failed.length} of ${files.length} files passed in ${seconds} s; ` +
  `${shots} screenshots in ${path.relative(process.cwd(), SHOTS_DIR) || '.'}/\n`);
if (failed.length) {
  process.stdout.write(`browser tests FAILED: ${failed.join(' ')} (a failed test's screenshot is FAILED-<name>.png)\n`);
  process.exit(1);
}
