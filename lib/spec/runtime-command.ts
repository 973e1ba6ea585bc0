/**
 * How the runtime is started wherever it ships (Kubernetes, the Dockerfile, `npm start`, the
 * benchmark), so they all run it the same way.
 */

/**
 * Node.js flags for the runtime. A 4 MiB young generation keeps the sidecar's RSS near 75 MB
 * under full load instead of near 100 MB, at no measured cost in throughput (bench/README.md).
 */
export const SIDECAR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];
