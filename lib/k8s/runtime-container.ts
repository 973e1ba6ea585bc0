/**
 * The runtime container (the agent's sidecar, or the gateway itself) and the files it reads:
 * its config and bundle from ConfigMaps, secrets from Secret volumes only it mounts.
 */
import * as k8s from 'cdk8s-plus-28/lib/imports/k8s';
import { SIDECAR_NODE_FLAGS } from '../spec';
import type { BoundSecret } from './external-secrets';
import { containerSecurityContext } from './pod';
import type { SidecarDelivery } from './sidecar-delivery';

/** Where agents send LLM and tool calls (loopback in sidecar mode). */
export const RUNTIME_PROXY_PORT = 8787;
/** Probes, scrapes and approvers: /healthz, /readyz, /metrics, /approvals. */
export const RUNTIME_ADMIN_PORT = 8788;
/** The admin port's name; ServiceMonitors and PodMonitors select it. */
export const ADMIN_PORT_NAME = 'metrics';
export const RUNTIME_CONFIG_DIR = '/etc/cdk-agents/config';
export const RUNTIME_CONFIG_KEY = 'sidecar.json';
export const RUNTIME_BUNDLE_DIR = '/opt/cdk-agents';
export const RUNTIME_BUNDLE_KEY = 'sidecar.js';
/** Secret volumes of the runtime live under this directory. */
export const RUNTIME_SECRETS_DIR = '/var/run/cdk-agents';
/** The `node` user of the official image. */
export const RUNTIME_USER = 1000;
/** Time to add to the runtime's drain for the kubelet to stop the pod after it. */
export const SHUTDOWN_MARGIN_SECONDS = 10;

export interface RuntimeContainerOptions {
  readonly name: string;
  readonly delivery: SidecarDelivery;
  readonly resources: k8s.ResourceRequirements;
  /** Volume names of the config ConfigMap, the bundle ConfigMap and /tmp. */
  readonly configVolume: string;
  readonly bundleVolume: string;
  readonly tmpVolume: string;
  readonly secretMounts: k8s.VolumeMount[];
  /** Also expose the proxy port (gateway mode: callers come from other pods). */
  readonly exposeProxy: boolean;
  readonly lifecycle?: k8s.Lifecycle;
}

export function runtimeContainer(o: RuntimeContainerOptions): k8s.Container {
  const configArgs = ['--config', `${RUNTIME_CONFIG_DIR}/${RUNTIME_CONFIG_KEY}`];
  const mounts: k8s.VolumeMount[] = [{ name: o.configVolume, mountPath: RUNTIME_CONFIG_DIR, readOnly: true }];
  if (o.delivery.bundled) mounts.push({ name: o.bundleVolume, mountPath: RUNTIME_BUNDLE_DIR, readOnly: true });
  mounts.push({ name: o.tmpVolume, mountPath: '/tmp' }, ...o.secretMounts);
  const ports: k8s.ContainerPort[] = [];
  if (o.exposeProxy) ports.push({ name: 'http', containerPort: RUNTIME_PROXY_PORT, protocol: 'TCP' });
  ports.push({ name: ADMIN_PORT_NAME, containerPort: RUNTIME_ADMIN_PORT, protocol: 'TCP' });
  return {
    name: o.name,
    image: o.delivery.image,
    imagePullPolicy: 'IfNotPresent',
    // A prebuilt image has the flags in its ENTRYPOINT (Dockerfile); the plain Node image needs them here.
    command: o.delivery.bundled ? ['node', ...SIDECAR_NODE_FLAGS, `${RUNTIME_BUNDLE_DIR}/${RUNTIME_BUNDLE_KEY}`] : undefined,
    args: configArgs,
    ports,
    resources: o.resources,
    securityContext: containerSecurityContext(RUNTIME_USER, RUNTIME_USER),
    livenessProbe: httpProbe('/healthz', 10, 3),
    readinessProbe: httpProbe('/readyz', 5, 2),
    lifecycle: o.lifecycle,
    volumeMounts: mounts,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

function httpProbe(path: string, periodSeconds: number, failureThreshold: number): k8s.Probe {
  return {
    httpGet: { path, port: k8s.IntOrString.fromString(ADMIN_PORT_NAME) },
    periodSeconds,
    timeoutSeconds: 2,
    failureThreshold,
  };
}

/**
 * Holds the next container's start until the runtime answers /readyz (the kubelet starts
 * containers in order and waits for each postStart hook), so the agent's first LLM call never
 * races the sidecar. Gives up after 60 s: the kubelet then restarts the container.
 */
export function waitUntilReady(): k8s.Lifecycle {
  const script =
    `const h=require('http'),t=Date.now();(function p(){h.get('http://127.0.0.1:${RUNTIME_ADMIN_PORT}/readyz',` +
    `r=>{r.resume();r.statusCode===200?process.exit(0):retry()}).on('error',retry)})();` +
    `function retry(){Date.now()-t>60000?process.exit(1):setTimeout(p,100)}`;
  return { postStart: { exec: { command: ['node', '-e', script] } } };
}

/**
 * Lets Service endpoints and kube-proxy forget a terminating gateway pod before it stops
 * accepting connections (Kubernetes 1.28 has no sleep action; node is in the image).
 */
export function delayShutdown(seconds: number): k8s.Lifecycle {
  return { preStop: { exec: { command: ['node', '-e', `setTimeout(()=>{},${seconds * 1000})`] } } };
}

/**
 * Secret files of one container: one volume per Secret use, mounted whole (never by subPath,
 * which would freeze the file: the runtime re-reads rotated keys every minute), mode 0440.
 */
export class SecretMounts {
  private readonly byVolume = new Map<string, { secretName: string; dir: string; items: Map<string, string> }>();

  /** Mounts `secret` as `dir/file` through volume `volume`; returns the file's path. */
  add(volume: string, dir: string, file: string, secret: BoundSecret): string {
    let entry = this.byVolume.get(volume);
    if (!entry) {
      entry = { secretName: secret.secretName, dir, items: new Map() };
      this.byVolume.set(volume, entry);
    } else if (entry.secretName !== secret.secretName) {
      throw new Error(`volume '${volume}' already mounts Secret '${entry.secretName}', not '${secret.secretName}'`);
    }
    entry.items.set(file, secret.key);
    return `${dir}/${file}`;
  }

  volumes(): k8s.Volume[] {
    return [...this.byVolume].map(([name, e]) => ({
      name,
      secret: {
        secretName: e.secretName,
        defaultMode: 0o440,
        items: [...e.items].map(([path, key]) => ({ key, path })),
      },
    }));
  }

  mounts(): k8s.VolumeMount[] {
    return [...this.byVolume].map(([name, e]) => ({ name, mountPath: e.dir, readOnly: true }));
  }
}
