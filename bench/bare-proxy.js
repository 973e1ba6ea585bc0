#!/usr/bin/env node
/**
 * The reference floor for a Node.js proxy: node:http server, node:http keep-alive client, and
 * a JSON.parse of the answer to read its usage. Nothing else. The sidecar is measured against
 * it in the same run to show what its metering, metrics and failover cost, or save.
 *
 *   node bench/bare-proxy.js PORT UPSTREAM_PORT
 */
const http = require('node:http');

const [port, upstreamPort] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
let tokens = 0;

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      JSON.parse(body);
      const up = http.request(
        { host: '127.0.0.1', port: upstreamPort, path: req.url, method: req.method, agent, headers: { 'content-type': 'application/json', 'content-length': body.length } },
        (r) => {
          const out = [];
          r.on('data', (c) => out.push(c));
          r.on('end', () => {
            const answer = Buffer.concat(out);
            tokens += JSON.parse(answer).usage.total_tokens;
            res.writeHead(r.statusCode, { 'content-type': r.headers['content-type'], 'content-length': answer.length });
            res.end(answer);
          });
        },
      );
      up.end(body);
    });
  })
  .listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(tokens >= 0 ? 0 : 1));
