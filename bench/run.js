#!/usr/bin/env node
/**
 * `npm run bench`: one load generator (wrk), one fake provider (bench/upstream.js), and every
 * target side by side in one run, interleaved round by round so machine noise hits them alike:
 *
 *   direct   the fake provider itself
 *   sidecar  dist/sidecar.js in quick local mode (metering and metrics on), started as shipped
 *   sidecar-policy, sidecar-redis  the same with every policy on (budgets, rate limits, loop
 *            guard, guardrails with PII, audit log), in-memory store and Redis store
 *   bare     bench/bare-proxy.js: node:http in and out, JSON.parse of the usage, nothing else
 *   nginx    Debian's nginx as a reverse proxy, one worker (the floor for any proxy), if installed
 *   portkey  the Portkey gateway (@portkey-ai/gateway) with its custom host pointing at the fake
 *
 * Reports throughput at 32 connections (p50/p99), the median latency each proxy adds to
 * sequential requests, the time each adds to the first streamed token, and the sidecar's RSS
 * under load and bundle size; checks them against the floors; writes bench/results.json and the
 * table in bench/README.md and README.md.
 *
 * Options: --rounds N (3), --seconds S per throughput run (5), --quick (1 round, 3 s).
 *
 * `--soak` instead holds a steady load on the sidecar with every policy on and the Redis store
 * for a bounded time (--soak-seconds, 600; --soak-rate requests per second, 200; half of them
 * streamed), sampling its RSS, V8 heap and major GC count every 2 s, counting client errors,
 * keeping its audit log (stdout) in a file; then drains it with SIGTERM, counts the llm.request
 * records against the requests sent and verifies the chain with `sidecar.js verify-audit`.
 * Floors: no error, RSS growth after warm-up under 10% (RSS just after the second major GC past
 * the first 60 s against just after the last one: the heap is a sawtooth of about 50 s at this
 * rate, so any other pair of points measures where in a cycle they fall, and the first major GC
 * is when V8 sizes its old space, dropping RSS far below where it settles), one audit record per
 * request. Writes bench/soak.json and the table in bench/README.md between <!-- soak:start -->
 * and <!-- soak:end -->.
 */
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const soakMode = args.includes('--soak');
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const ROUNDS = opt('--rounds', quick ? 1 : 3);
const SECONDS = opt('--seconds', quick ? 3 : 5);
const SEQ_SECONDS = quick ? 2 : 3;
const TTFT_REQUESTS = quick ? 100 : 300;
const CONNECTIONS = 32;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-agents-bench-'));
const children = [];

const FLOORS = {
  sequentialAddedMedianMs: 0.3,
  throughputVsNginx: 0.5,
  throughputVsPortkey: 10,
  policyMemoryVsNginx: 0.4,
  policyRedisVsNginx: 0.3,
  redisRoundTripsPerRequest: 2,
  inputScan10kbMs: 0.2,
  sidecarRssMb: 100,
  bundleKiB: 400,
};

/** Every policy on, with limits no benchmark run reaches: what enforcement costs, not what it refuses. */
function policyConfig(upstreamPort, store) {
  const huge = 1e12;
  return {
    version: 1,
    agent: { name: 'bench', team: 'bench-team' },
    listen: { host: '127.0.0.1', port: 0 },
    providers: [{ name: 'openai', type: 'openai', baseUrl: `http://127.0.0.1:${upstreamPort}/v1` }],
    budgets: [
      { scope: 'agent', unit: 'usd', period: 'day', limit: huge },
      { scope: 'user', unit: 'tokens', period: 'month', limit: huge },
    ],
    rateLimits: [{ scope: 'user', unit: 'requests', perMinute: huge }],
    loopGuard: { maxIterations: huge, maxTokens: huge, maxCostUsd: huge, maxDurationMs: huge, maxRepeats: huge },
    guardrails: { output: { pii: true } },
    store,
  };
}

const REQUEST = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [
    { role: 'system', content: 'You are a concise support assistant.' },
    { role: 'user', content: 'Say hello in one short sentence, please.' },
  ],
});
const STREAM_REQUEST = JSON.stringify({ ...JSON.parse(REQUEST), stream: true });

function which(cmd) {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function start(cmd, argv, env) {
  // stdout is read and dropped, as a log collector would: the sidecar's audit records go there.
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  child.stdout.resume();
  let err = '';
  child.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
  child.lastError = () => err;
  children.push(child);
  return child;
}

async function waitForPort(port, child, name) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (child && child.exitCode !== null) throw new Error(`${name} exited: ${child.lastError()}`);
    if (Date.now() > deadline) throw new Error(`${name} did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function cpuTicks(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return NaN;
  }
}

function rssMb(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

function luaScript(name, target, body) {
  const headers = { 'Content-Type': 'application/json', Authorization: 'Bearer sk-bench', 'x-agent-user': 'user-1', 'x-agent-run-id': 'run-1', ...target.headers };
  const lines = [`wrk.method = "POST"`, `wrk.path = "${target.path}"`, `wrk.body = ${JSON.stringify(body)}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`);
  const file = path.join(tmp, `${name}.lua`);
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

function toMs(value) {
  const m = /^([\d.]+)(us|ms|s)$/.exec(value);
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 'ms' ? 1 : 1000);
}

function wrk(target, connections, seconds, onTick) {
  return new Promise((resolve, reject) => {
    const script = luaScript(target.name, target, REQUEST);
    const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', script, `http://127.0.0.1:${target.port}`]);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const ticker = onTick ? setInterval(onTick, 100) : null;
    child.on('exit', (code) => {
      if (ticker) clearInterval(ticker);
      if (code !== 0) return reject(new Error(`wrk failed for ${target.name}: ${out}`));
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
      const total = Number(/(\d+) requests in/.exec(out)?.[1]);
      const p50 = toMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '');
      const p99 = toMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
      const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
      const socketErrors = /Socket errors: (.*)/.exec(out)?.[1] ?? null;
      resolve({ rps, total, p50, p99, non2xx, socketErrors });
    });
  });
}

/** Sequential streamed requests on one kept-alive connection: time to the first content event. */
async function ttft(target, count) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const samples = [];
  const headers = { 'content-type': 'application/json', authorization: 'Bearer sk-bench', ...target.headers };
  for (let i = 0; i < count; i++) {
    samples.push(
      await new Promise((resolve, reject) => {
        const t0 = process.hrtime.bigint();
        let firstToken = -1;
        const req = http.request({ host: '127.0.0.1', port: target.port, path: target.path, method: 'POST', agent, headers }, (res) => {
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (d) => {
            if (firstToken >= 0) return;
            buf += d;
            if (/"content":"[^"]/.test(buf)) firstToken = Number(process.hrtime.bigint() - t0) / 1e6;
          });
          // The sample is taken at the first token but the stream is read to its end, so the
          // next request does not wait behind this one's tail.
          res.on('end', () => (firstToken >= 0 ? resolve(firstToken) : reject(new Error(`${target.name}: stream without content: ${buf.slice(0, 300)}`))));
        });
        req.on('error', reject);
        req.end(STREAM_REQUEST);
      }),
    );
  }
  agent.destroy();
  return median(samples);
}

function median(xs) {
  const s = [...xs].filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const round = (x, digits = 3) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);

async function main() {
  if (!which('wrk')) {
    console.error('bench: wrk is required (apt-get install -y wrk)');
    process.exit(2);
  }
  const sidecarJs = path.join(root, 'dist', 'sidecar.js');
  if (!fs.existsSync(sidecarJs)) throw new Error('dist/sidecar.js is missing: run npm run build');
  const { SIDECAR_NODE_FLAGS } = require(path.join(root, 'dist', 'lib', 'spec', 'runtime-command.js'));

  const upstreamPort = await freePort();
  start(process.execPath, [path.join(__dirname, 'upstream.js'), String(upstreamPort)]);
  await waitForPort(upstreamPort, null, 'upstream');

  const targets = [{ name: 'direct', port: upstreamPort, path: '/v1/chat/completions', headers: {} }];

  const sidecarPort = await freePort();
  const sidecar = start(process.execPath, [
    ...SIDECAR_NODE_FLAGS,
    sidecarJs,
    '--listen',
    `127.0.0.1:${sidecarPort}`,
    '--openai-base-url',
    `http://127.0.0.1:${upstreamPort}/v1`,
    '--agent',
    'bench',
  ]);
  targets.push({ name: 'sidecar', port: sidecarPort, path: '/v1/chat/completions', headers: {}, pid: () => sidecar.pid });

  // The sidecar with every policy on: in-memory store, and Redis (Debian's redis-server) when installed.
  let benchRedisPort = 0;
  for (const variant of ['policy', 'redis']) {
    let store = { type: 'memory' };
    if (variant === 'redis') {
      if (!which('redis-server')) {
        console.error('bench: redis-server not installed (apt-get install -y redis-server): sidecar-redis is skipped');
        continue;
      }
      const redisPort = await freePort();
      const redis = start('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
      await waitForPort(redisPort, redis, 'redis-server');
      store = { type: 'redis', url: `redis://127.0.0.1:${redisPort}` };
      benchRedisPort = redisPort;
    }
    const port = await freePort();
    const config = policyConfig(upstreamPort, store);
    config.listen.port = port;
    const file = path.join(tmp, `${variant}.json`);
    fs.writeFileSync(file, JSON.stringify(config));
    const child = start(process.execPath, [...SIDECAR_NODE_FLAGS, sidecarJs, '--config', file]);
    targets.push({ name: `sidecar-${variant}`, port, path: '/v1/chat/completions', headers: {}, pid: () => child.pid });
  }

  const barePort = await freePort();
  const bare = start(process.execPath, [path.join(__dirname, 'bare-proxy.js'), String(barePort), String(upstreamPort)]);
  targets.push({ name: 'bare', port: barePort, path: '/v1/chat/completions', headers: {}, pid: () => bare.pid, noStream: true });

  const nginxBin = which('nginx') || (fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : null);
  if (nginxBin) {
    const nginxPort = await freePort();
    const conf = path.join(tmp, 'nginx.conf');
    fs.writeFileSync(
      conf,
      `worker_processes 1;
daemon off;
pid ${tmp}/nginx.pid;
error_log ${tmp}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${tmp}/nginx-body;
  proxy_temp_path ${tmp}/nginx-proxy;
  upstream fake { server 127.0.0.1:${upstreamPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${nginxPort};
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
`,
    );
    const nginx = start(nginxBin, ['-c', conf, '-e', `${tmp}/nginx-error.log`]);
    targets.push({
      name: 'nginx',
      port: nginxPort,
      path: '/v1/chat/completions',
      headers: {},
      pid: () => {
        try {
          return Number(execFileSync('pgrep', ['-P', String(nginx.pid)], { encoding: 'utf8' }).trim().split('\n')[0]);
        } catch {
          return nginx.pid;
        }
      },
    });
  } else {
    console.error('bench: nginx not installed (apt-get install -y nginx-light): its column is skipped');
  }

  const portkeyJs = path.join(root, 'node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.js');
  if (fs.existsSync(portkeyJs)) {
    const portkeyPort = await freePort();
    const portkey = start(process.execPath, [portkeyJs, `--port=${portkeyPort}`, '--headless'], { NODE_ENV: 'production' });
    targets.push({
      name: 'portkey',
      port: portkeyPort,
      path: '/v1/chat/completions',
      headers: { 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `http://127.0.0.1:${upstreamPort}/v1` },
      pid: () => portkey.pid,
    });
  } else {
    console.error('bench: @portkey-ai/gateway not installed (npm ci): its column is skipped');
  }

  for (const t of targets) await waitForPort(t.port, null, t.name);

  // Warm-up: JIT, connection pools.
  for (const t of targets) await wrk(t, CONNECTIONS, 2);
  const redisCalls = () => {
    if (!benchRedisPort) return NaN;
    const stats = execFileSync('redis-cli', ['-p', String(benchRedisPort), 'INFO', 'commandstats'], { encoding: 'utf8' });
    // Client commands only: commands a script runs are counted under their own names, not these.
    return [...stats.matchAll(/cmdstat_(evalsha|eval):calls=(\d+)/g)].reduce((a, m) => a + Number(m[2]), 0);
  };

  const throughput = Object.fromEntries(targets.map((t) => [t.name, []]));
  let sidecarRss = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of targets) {
      const pid = t.pid?.();
      const cpu0 = pid ? cpuTicks(pid) : NaN;
      const calls0 = t.name === 'sidecar-redis' ? redisCalls() : NaN;
      const result = await wrk(t, CONNECTIONS, SECONDS, t.name === 'sidecar' ? () => (sidecarRss = Math.max(sidecarRss, rssMb(pid))) : null);
      const cpu1 = pid ? cpuTicks(pid) : NaN;
      result.cpuUsPerRequest = ((cpu1 - cpu0) * (1e6 / 100)) / result.total;
      if (t.name === 'sidecar-redis') result.redisCallsPerRequest = (redisCalls() - calls0) / result.total;
      throughput[t.name].push(result);
      console.error(`round ${r + 1} ${t.name.padEnd(8)} ${result.rps.toFixed(0).padStart(7)} req/s  p50 ${result.p50.toFixed(3)} ms  p99 ${result.p99.toFixed(3)} ms`);
    }
  }

  const sequential = Object.fromEntries(targets.map((t) => [t.name, []]));
  for (let r = 0; r < ROUNDS; r++) for (const t of targets) sequential[t.name].push((await wrk(t, 1, SEQ_SECONDS)).p50);

  const ttfts = {};
  const notes = {};
  for (const t of targets.filter((x) => !x.noStream)) {
    try {
      ttfts[t.name] = await ttft(t, TTFT_REQUESTS);
    } catch (err) {
      // Portkey 1.15 on Node 20 answers every streamed request with "Something went wrong"
      // (TypeError: immutable in updateHeaders; Portkey-AI/gateway#1389, #1550).
      notes[t.name] = `streaming failed: ${err.message.slice(0, 160)}`;
      console.error(`bench: ${t.name}: ${notes[t.name]}`);
    }
  }

  const summary = {};
  for (const t of targets) {
    const runs = throughput[t.name];
    summary[t.name] = {
      rps: round(median(runs.map((x) => x.rps)), 0),
      p50Ms: round(median(runs.map((x) => x.p50))),
      p99Ms: round(median(runs.map((x) => x.p99))),
      errors: runs.reduce((a, x) => a + x.non2xx, 0),
      redisCallsPerRequest: runs[0].redisCallsPerRequest === undefined ? undefined : round(Math.max(...runs.map((x) => x.redisCallsPerRequest)), 2),
      cpuUsPerRequest: round(median(runs.map((x) => x.cpuUsPerRequest)), 1),
      sequentialP50Ms: round(median(sequential[t.name])),
      addedSequentialMs: t.name === 'direct' ? 0 : round(median(sequential[t.name]) - median(sequential.direct)),
      ttftMs: round(ttfts[t.name]),
      addedTtftMs: ttfts[t.name] === undefined ? null : t.name === 'direct' ? 0 : round(ttfts[t.name] - ttfts.direct),
    };
  }
  const s = summary.sidecar;
  const ratio = (other, of = s) => (summary[other] && of ? round(of.rps / summary[other].rps, 2) : null);
  const bundleKiB = round(fs.statSync(sidecarJs).size / 1024, 1);
  const guardrails = JSON.parse(execFileSync(process.execPath, [path.join(__dirname, 'guardrails.js')], { encoding: 'utf8' }));
  const policy = summary['sidecar-policy'];
  const redisTarget = summary['sidecar-redis'];
  const checks = [
    { check: 'sidecar adds to the sequential median (ms)', value: s.addedSequentialMs, floor: `<= ${FLOORS.sequentialAddedMedianMs}`, pass: s.addedSequentialMs <= FLOORS.sequentialAddedMedianMs },
    { check: 'sidecar / nginx throughput', value: ratio('nginx'), floor: `>= ${FLOORS.throughputVsNginx}`, pass: summary.nginx ? ratio('nginx') >= FLOORS.throughputVsNginx : null },
    { check: 'sidecar / portkey throughput', value: ratio('portkey'), floor: `>= ${FLOORS.throughputVsPortkey}`, pass: summary.portkey ? ratio('portkey') >= FLOORS.throughputVsPortkey : null },
    { check: 'sidecar / bare Node proxy throughput', value: ratio('bare'), floor: '> 1 (aim)', pass: ratio('bare') > 1 },
    { check: 'sidecar, every policy on, memory store / nginx throughput', value: ratio('nginx', policy), floor: `>= ${FLOORS.policyMemoryVsNginx}`, pass: summary.nginx ? ratio('nginx', policy) >= FLOORS.policyMemoryVsNginx : null },
    { check: 'sidecar, every policy on, Redis store / nginx throughput', value: ratio('nginx', redisTarget), floor: `>= ${FLOORS.policyRedisVsNginx}`, pass: summary.nginx && redisTarget ? ratio('nginx', redisTarget) >= FLOORS.policyRedisVsNginx : null },
    { check: 'Redis round trips per request (reserve + settle)', value: redisTarget?.redisCallsPerRequest ?? null, floor: `<= ${FLOORS.redisRoundTripsPerRequest}`, pass: redisTarget ? redisTarget.redisCallsPerRequest <= FLOORS.redisRoundTripsPerRequest : null },
    { check: 'default guardrails scan of a 10 KB prompt, median (ms)', value: guardrails.inputScan10kbMedianMs, floor: `<= ${FLOORS.inputScan10kbMs}`, pass: guardrails.inputScan10kbMedianMs <= FLOORS.inputScan10kbMs },
    { check: 'sidecar RSS under load (MB)', value: round(sidecarRss, 1), floor: `<= ${FLOORS.sidecarRssMb}`, pass: sidecarRss <= FLOORS.sidecarRssMb },
    { check: 'dist/sidecar.js (KiB)', value: bundleKiB, floor: `<= ${FLOORS.bundleKiB}`, pass: bundleKiB <= FLOORS.bundleKiB },
  ];

  const results = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, platform: `${os.platform()} ${os.release()}` },
    settings: { rounds: ROUNDS, secondsPerRun: SECONDS, connections: CONNECTIONS, sequentialSeconds: SEQ_SECONDS, ttftRequests: TTFT_REQUESTS, sidecarNodeFlags: SIDECAR_NODE_FLAGS },
    targets: summary,
    guardrails,
    notes,
    checks,
  };
  fs.writeFileSync(path.join(__dirname, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const table = markdown(results);
  writeSection(path.join(__dirname, 'README.md'), table);
  writeSection(path.join(root, 'README.md'), table);
  process.stdout.write(`${table}\n`);
  const failed = checks.filter((c) => c.pass === false);
  if (failed.length) process.stdout.write(`\nBELOW FLOOR: ${failed.map((c) => c.check).join('; ')}\n`);
}

function markdown(results) {
  const cols = ['direct', 'sidecar', 'sidecar-policy', 'sidecar-redis', 'bare', 'nginx', 'portkey'].filter((n) => results.targets[n]);
  const t = results.targets;
  const fmt = (v, d = 3) => (v === null || v === undefined ? '–' : typeof v === 'number' ? v.toFixed(d) : String(v));
  const rows = [
    ['throughput, 32 connections (req/s)', (n) => fmt(t[n].rps, 0)],
    ['p50 at 32 connections (ms)', (n) => fmt(t[n].p50Ms)],
    ['p99 at 32 connections (ms)', (n) => fmt(t[n].p99Ms)],
    ['CPU per request (µs)', (n) => (n === 'direct' ? '–' : fmt(t[n].cpuUsPerRequest, 1))],
    ['sequential p50 (ms)', (n) => fmt(t[n].sequentialP50Ms)],
    ['added to sequential p50 (ms)', (n) => (n === 'direct' ? '–' : fmt(t[n].addedSequentialMs))],
    ['time to first streamed token (ms)', (n) => fmt(t[n].ttftMs)],
    ['added to first token (ms)', (n) => (n === 'direct' || t[n].addedTtftMs === null ? '–' : fmt(t[n].addedTtftMs))],
  ];
  const lines = [
    `Measured ${results.date.slice(0, 10)} on ${results.machine.cpus} cores (${results.machine.model}), Node ${results.machine.node}; medians of ${results.settings.rounds} interleaved rounds of ${results.settings.secondsPerRun} s; load generator, fake provider and proxy share the machine.`,
    '',
    `| | ${cols.join(' | ')} |`,
    `|---|${cols.map(() => '---:').join('|')}|`,
    ...rows.map(([label, f]) => `| ${label} | ${cols.map(f).join(' | ')} |`),
    '',
    '| check | value | floor | |',
    '|---|---:|---|---|',
    ...results.checks.map((c) => `| ${c.check} | ${fmt(c.value, 2)} | ${c.floor} | ${c.pass === null ? 'not measured' : c.pass ? 'pass' : '**below floor**'} |`),
    ...Object.entries(results.notes).map(([name, note]) => `\n${name}: ${note}`),
  ];
  return lines.join('\n');
}

function writeSection(file, table, marker = 'bench') {
  if (!fs.existsSync(file)) return;
  const text = fs.readFileSync(file, 'utf8');
  const start = `<!-- ${marker}:start -->`;
  const end = `<!-- ${marker}:end -->`;
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) return;
  fs.writeFileSync(file, `${text.slice(0, a + start.length)}\n${table}\n${text.slice(b)}`);
}

// ---- soak --------------------------------------------------------------------------------------

const SOAK_SECONDS = opt('--soak-seconds', 600);
const SOAK_RATE = opt('--soak-rate', 200);
const SOAK_FLOORS = { errors: 0, rssGrowthPct: 10 };
const SOAK_USERS = 20;
const SOAK_RUNS = 50;

function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
}

async function soak() {
  const sidecarJs = path.join(root, 'dist', 'sidecar.js');
  if (!fs.existsSync(sidecarJs)) throw new Error('dist/sidecar.js is missing: run npm run build');
  if (!which('redis-server')) {
    console.error('bench --soak: redis-server is required (apt-get install -y redis-server)');
    process.exit(2);
  }
  const { SIDECAR_NODE_FLAGS } = require(path.join(root, 'dist', 'lib', 'spec', 'runtime-command.js'));
  const warmupSeconds = Math.min(60, Math.max(5, Math.round(SOAK_SECONDS / 5)));
  const windowSeconds = Math.min(10, Math.max(2, Math.round(SOAK_SECONDS / 12)));

  const upstreamPort = await freePort();
  start(process.execPath, [path.join(__dirname, 'upstream.js'), String(upstreamPort)]);
  await waitForPort(upstreamPort, null, 'upstream');
  const redisPort = await freePort();
  const redis = start('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await waitForPort(redisPort, redis, 'redis-server');

  const port = await freePort();
  const adminPort = await freePort();
  const config = policyConfig(upstreamPort, { type: 'redis', url: `redis://127.0.0.1:${redisPort}` });
  config.listen.port = port;
  config.admin = { host: '127.0.0.1', port: adminPort };
  const configFile = path.join(tmp, 'soak.json');
  fs.writeFileSync(configFile, JSON.stringify(config));
  // The audit log (stdout) goes to a file, as a log collector would keep it.
  const auditFile = path.join(tmp, 'soak-audit.jsonl');
  const auditFd = fs.openSync(auditFile, 'w');
  const sidecar = spawn(process.execPath, [...SIDECAR_NODE_FLAGS, sidecarJs, '--config', configFile], { stdio: ['ignore', auditFd, 'pipe'] });
  fs.closeSync(auditFd);
  let sidecarErr = '';
  sidecar.stderr.on('data', (d) => (sidecarErr = (sidecarErr + d).slice(-4000)));
  sidecar.lastError = () => sidecarErr;
  children.push(sidecar);
  await waitForPort(port, sidecar, 'sidecar');
  await waitForPort(adminPort, sidecar, 'sidecar admin');

  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const counts = { sent: 0, ok: 0, errors: 0, streamed: 0, whole: 0 };
  const errorSamples = [];
  const latency = { whole: [], streamed: [] };
  let inFlight = 0;
  const fail = (what) => {
    counts.errors++;
    if (errorSamples.length < 10) errorSamples.push(what.slice(0, 300));
  };
  const one = (i) => {
    const streamed = i % 2 === 1;
    const headers = {
      'content-type': 'application/json',
      authorization: 'Bearer sk-bench',
      'x-agent-user': `user-${i % SOAK_USERS}`,
      'x-agent-run-id': `run-${i % SOAK_RUNS}`,
    };
    counts.sent++;
    counts[streamed ? 'streamed' : 'whole']++;
    inFlight++;
    const t0 = performance.now();
    let done = false;
    const end = (error) => {
      if (done) return;
      done = true;
      inFlight--;
      if (error) fail(error);
      else {
        counts.ok++;
        latency[streamed ? 'streamed' : 'whole'].push(performance.now() - t0);
      }
    };
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('error', (err) => end(`response: ${err.message}`));
      res.on('end', () => {
        // A complete answer: the whole stream to [DONE], or the whole completion.
        const complete = streamed ? body.endsWith('data: [DONE]\n\n') && body.includes('"content":"Hello"') : body.includes('"content":"Hello! How can I help you today?"');
        end(res.statusCode === 200 && complete ? undefined : `${res.statusCode}: ${body.slice(0, 200)}`);
      });
    });
    req.on('error', (err) => end(`request: ${err.message}`));
    req.end(streamed ? STREAM_REQUEST : REQUEST);
  };

  const rss = [];
  const heap = [];
  const scrape = () =>
    new Promise((resolve) => {
      http.get({ host: '127.0.0.1', port: adminPort, path: '/metrics' }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve(text));
      }).on('error', () => resolve(''));
    });
  const heapUsedMb = (text) => Number(/^nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1]) / 1024 / 1024;
  const majorGcs = (text) => Number(/^nodejs_gc_duration_seconds_count\{kind="major"\} (\S+)/m.exec(text)?.[1] ?? NaN);
  /** Samples taken just after a major GC (the count went up since the sample before): the sawtooth's troughs. */
  const troughs = [];
  let gcCount = NaN;
  const cpu0 = cpuTicks(sidecar.pid);
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  await new Promise((resolve) => {
    let issued = 0;
    // Open loop: requests leave at the set rate whatever the answers do.
    const pacer = setInterval(() => {
      const due = Math.min(Math.floor(elapsed() * SOAK_RATE), SOAK_SECONDS * SOAK_RATE);
      while (issued < due) one(issued++);
      if (issued >= SOAK_SECONDS * SOAK_RATE) {
        clearInterval(pacer);
        clearInterval(sampler);
        resolve();
      }
    }, 5);
    const sampler = setInterval(() => {
      const t = round(elapsed(), 1);
      rss.push({ t, mb: round(rssMb(sidecar.pid), 1) });
      // The V8 heap in use, from the sidecar's own metrics: a leak grows it, RSS creep does not.
      const mb = rss.at(-1).mb;
      scrape().then((text) => {
        heap.push({ t, mb: round(heapUsedMb(text), 1) });
        const count = majorGcs(text);
        if (count > gcCount) troughs.push({ t, rssMb: mb, heapMb: round(heapUsedMb(text), 1) });
        gcCount = count;
      });
      if (rss.length % 5 === 0) console.error(`soak ${elapsed().toFixed(0)} s: ${counts.sent} sent, ${counts.errors} errors, ${inFlight} in flight, RSS ${rss.at(-1).mb} MB, heap ${heap.at(-1)?.mb} MB`);
    }, 2_000);
  });
  const drainDeadline = Date.now() + 30_000;
  while (inFlight > 0 && Date.now() < drainDeadline) await new Promise((r) => setTimeout(r, 20));
  const cpuSeconds = (cpuTicks(sidecar.pid) - cpu0) / 100;
  const metrics = await scrape();
  agent.destroy();
  const served = [...metrics.matchAll(/^llm_requests_total\{[^}]*code="200"[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);

  // Drain and stop: the last records and the stop record are written before the exit.
  sidecar.kill('SIGTERM');
  const exitCode = await new Promise((resolve) => (sidecar.exitCode !== null ? resolve(sidecar.exitCode) : sidecar.once('exit', (code) => resolve(code))));
  const lines = fs.readFileSync(auditFile, 'utf8').split('\n').filter(Boolean);
  const kinds = {};
  for (const line of lines) {
    const kind = JSON.parse(line).kind;
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  const verify = spawnSync(process.execPath, [sidecarJs, 'verify-audit', auditFile], { encoding: 'utf8' });

  const inWindow = (from, to, samples = rss) => samples.filter((s) => s.t >= from && s.t < to).map((s) => s.mb);
  // Just after the second major GC past the first minute, and just after the last one. The first
  // is part of the warm-up: it is where V8 sizes its old space (measured: RSS drops by 14 MB and
  // climbs back within the next cycle), so a baseline taken there is a low no later cycle returns
  // to. Without two GCs after it (a run too short for the rate), the medians of a window after
  // the warm-up and of the last.
  const settled = troughs.filter((x) => x.t >= warmupSeconds).slice(1);
  const byGc = settled.length >= 2;
  const baseline = byGc ? settled[0].rssMb : median(inWindow(warmupSeconds, warmupSeconds + windowSeconds));
  const final = byGc ? settled.at(-1).rssMb : median(inWindow(SOAK_SECONDS - windowSeconds, Infinity));
  const heapBaseline = median(inWindow(warmupSeconds, warmupSeconds + windowSeconds, heap));
  const heapFinal = median(inWindow(SOAK_SECONDS - windowSeconds, Infinity, heap));
  const growthPct = ((final - baseline) / baseline) * 100;
  const checks = [
    { check: 'client errors', value: counts.errors, floor: `== ${SOAK_FLOORS.errors}`, pass: counts.errors === SOAK_FLOORS.errors },
    { check: `RSS growth after ${warmupSeconds} s warm-up (%)`, value: round(growthPct, 2), floor: `< ${SOAK_FLOORS.rssGrowthPct}`, pass: growthPct < SOAK_FLOORS.rssGrowthPct },
    { check: 'llm.request audit records / requests sent', value: `${kinds['llm.request'] ?? 0} / ${counts.sent}`, floor: 'equal', pass: kinds['llm.request'] === counts.sent },
    { check: 'audit chain (verify-audit)', value: verify.status === 0 ? 'intact' : `broken: ${verify.stderr.trim()}`, floor: 'intact', pass: verify.status === 0 },
    { check: 'sidecar exit after SIGTERM', value: exitCode, floor: '0', pass: exitCode === 0 },
  ];
  const results = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, platform: `${os.platform()} ${os.release()}`, loadavg: os.loadavg().map((x) => round(x, 2)) },
    settings: {
      seconds: SOAK_SECONDS,
      ratePerSecond: SOAK_RATE,
      warmupSeconds,
      windowSeconds,
      mix: 'half streamed, half whole',
      users: SOAK_USERS,
      runs: SOAK_RUNS,
      store: 'redis',
      policies: 'budgets (agent usd/day, user tokens/month), user request rate, loop guard (every limit), guardrails with PII, audit log to a file',
      sidecarNodeFlags: SIDECAR_NODE_FLAGS,
    },
    requests: { ...counts, servedPerMetrics: served },
    errorSamples,
    latencyMs: {
      whole: { p50: round(percentile(latency.whole, 50)), p99: round(percentile(latency.whole, 99)) },
      streamed: { p50: round(percentile(latency.streamed, 50)), p99: round(percentile(latency.streamed, 99)) },
    },
    sidecar: {
      cpuSeconds: round(cpuSeconds, 1),
      cpuUsPerRequest: round((cpuSeconds * 1e6) / counts.sent, 1),
      rssMb: {
        compared: byGc ? `just after the major GCs at ${settled[0].t} s and ${settled.at(-1).t} s` : `medians of ${windowSeconds} s windows (fewer than two major GCs after the warm-up)`,
        baseline: round(baseline, 1),
        final: round(final, 1),
        max: round(Math.max(...rss.map((s) => s.mb)), 1),
        growthPct: round(growthPct, 2),
        samples: rss,
      },
      majorGcs: troughs,
      heapUsedMb: { baseline: round(heapBaseline, 1), final: round(heapFinal, 1), max: round(Math.max(...heap.map((s) => s.mb)), 1), samples: heap },
    },
    audit: { records: lines.length, kinds, verify: (verify.stdout || verify.stderr).trim().replace(auditFile, 'soak-audit.jsonl') },
    checks,
  };
  fs.writeFileSync(path.join(__dirname, 'soak.json'), `${JSON.stringify(results, null, 2)}\n`);
  const table = soakMarkdown(results);
  writeSection(path.join(__dirname, 'README.md'), table, 'soak');
  process.stdout.write(`${table}\n`);
  const failed = checks.filter((c) => !c.pass);
  if (failed.length) {
    process.stdout.write(`\nBELOW FLOOR: ${failed.map((c) => c.check).join('; ')}\n`);
    process.exitCode = 1;
  }
}

function soakMarkdown(r) {
  const s = r.settings;
  const rows = [
    ['requests sent (streamed / whole)', `${r.requests.sent} (${r.requests.streamed} / ${r.requests.whole})`],
    ['answered complete', r.requests.ok],
    ['p50 / p99 latency, whole (ms)', `${r.latencyMs.whole.p50} / ${r.latencyMs.whole.p99}`],
    ['p50 / p99 latency, streamed to [DONE] (ms)', `${r.latencyMs.streamed.p50} / ${r.latencyMs.streamed.p99}`],
    ['sidecar RSS after warm-up / at the end / max (MB)', `${r.sidecar.rssMb.baseline} / ${r.sidecar.rssMb.final} / ${r.sidecar.rssMb.max}`],
    ['sidecar RSS / V8 heap in use just after each major GC (MB)', r.sidecar.majorGcs.map((g) => `${g.rssMb} / ${g.heapMb} (${g.t} s)`).join(', ') || '–'],
    ['V8 heap in use, max (MB)', r.sidecar.heapUsedMb.max],
    ['sidecar CPU per request (µs)', r.sidecar.cpuUsPerRequest],
    ['audit records (llm.request / all)', `${r.audit.kinds['llm.request'] ?? 0} / ${r.audit.records}`],
  ];
  return [
    `Measured ${r.date.slice(0, 10)} on ${r.machine.cpus} cores (${r.machine.model}, load average ${r.machine.loadavg.join(' ')} at the end, shared with other work), Node ${r.machine.node}: ${s.seconds} s at ${s.ratePerSecond} requests/s (${s.mix}), ${s.users} users and ${s.runs} runs, every policy on, Redis store; ${s.warmupSeconds} s warm-up; RSS compared ${r.sidecar.rssMb.compared}.`,
    '',
    '| | |',
    '|---|---:|',
    ...rows.map(([k, v]) => `| ${k} | ${v} |`),
    '',
    '| check | value | floor | |',
    '|---|---:|---|---|',
    ...r.checks.map((c) => `| ${c.check} | ${c.value} | ${c.floor} | ${c.pass ? 'pass' : '**below floor**'} |`),
    ...(r.errorSamples.length ? ['', `First errors: ${r.errorSamples.map((e) => `\`${e.replace(/`/g, "'")}\``).join('; ')}`] : []),
  ].join('\n');
}

(soakMode ? soak() : main())
  .catch((err) => {
    console.error(err.stack || err.message);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    setTimeout(() => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      fs.rmSync(tmp, { recursive: true, force: true });
    }, 500);
  });
